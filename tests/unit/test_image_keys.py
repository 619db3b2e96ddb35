"""`make images` decides purely: what each image's build context holds, its content key, what
to rebuild, which archives to prune, and what containerd still lacks."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from metricpipe_devstack.images import (
    BASES,
    IMAGES,
    KEY_LABEL,
    ImageRecipe,
    IndexEntry,
    build_base_key,
    build_context_sources,
    build_image_key,
    build_pause_key,
    parse_ctr_images,
    parse_index,
    plan_builds,
    plan_imports,
    plan_prune,
    render_index,
    select_context_files,
)

REPO = Path(__file__).resolve().parents[2]
SHA = {"a.py": "1" * 64, "b.lock": "2" * 64}
BASES_ARGS = {"BASE_IMAGE": "base111"}


def key(**change: object) -> str:
    inputs: dict[str, object] = {
        "dockerfile": b"FROM x\n",
        "files": SHA,
        "base_keys": BASES_ARGS,
        "build_args": {},
    }
    inputs |= change
    return build_image_key(**inputs)  # type: ignore[arg-type]


def test_the_image_key_changes_with_every_input_and_nothing_else() -> None:
    same = key()
    assert key() == same
    assert key(files=dict(reversed(SHA.items()))) == same  # order does not matter
    changed = [
        key(dockerfile=b"FROM y\n"),
        key(files={**SHA, "a.py": "3" * 64}),  # a source's content
        key(files={**SHA, "c.py": "4" * 64}),  # a new file
        key(files={"a.py": SHA["a.py"]}),  # a file gone
        key(base_keys={"BASE_IMAGE": "base222"}),  # a rebuilt base
        key(build_args={"JARS": "jars-context"}),
    ]
    assert same not in changed
    assert len(set(changed)) == len(changed)
    assert len(same) == 16
    assert all(c in "0123456789abcdef" for c in same)


def test_the_base_key_follows_its_packages() -> None:
    python, jre, gcc = BASES
    assert build_base_key(python) == build_base_key(python)
    assert build_base_key(python) != build_base_key(jre)
    assert build_base_key(python) != build_base_key(python, sources=("deb http://x bookworm main",))
    assert "openjdk-17-jre-headless" in jre.packages
    assert set(python.packages) <= set(jre.packages)  # the JRE base is the Python base + JRE
    assert "gcc" in gcc.packages
    assert build_base_key(gcc) not in {build_base_key(python), build_base_key(jre)}


def test_the_pause_key_follows_source_and_compiler() -> None:
    base = build_pause_key(b"int main(){}", "gcc (Debian 12.2.0-14) 12.2.0")
    assert base == build_pause_key(b"int main(){}", "gcc (Debian 12.2.0-14) 12.2.0")
    assert base != build_pause_key(b"int main(){ }", "gcc (Debian 12.2.0-14) 12.2.0")
    assert base != build_pause_key(b"int main(){}", "gcc (Debian 12.2.0-15) 12.2.0")


@pytest.mark.parametrize(
    ("dockerfile", "expected"),
    [
        ("FROM x\nCOPY a b /dst/\n", ["a", "b"]),
        ("FROM x\nCOPY --from=build /opt /opt\nCOPY c/ /c/\n", ["c/"]),
        ("FROM x\nCOPY --chown=1:1 d \\\n  e /dst/\n", ["d", "e"]),
        ("FROM x\ncopy f /f\nCOPY f /g\nRUN cp x y\n", ["f"]),
        ("FROM x\n# COPY secret /s\n", []),
    ],
)
def test_context_sources_are_what_copy_reads(dockerfile: str, expected: list[str]) -> None:
    assert build_context_sources(dockerfile) == expected


def test_context_files_follow_the_sources() -> None:
    tracked = ["op/pkg/a.py", "op/pkg/sub/b.py", "op/pkg2/c.py", "op/Dockerfile", "x.lock"]
    assert select_context_files(["op/pkg/", "x.lock"], tracked) == [
        "op/pkg/a.py",
        "op/pkg/sub/b.py",
        "x.lock",
    ]
    assert select_context_files(["op/pkg"], tracked) == ["op/pkg/a.py", "op/pkg/sub/b.py"]
    assert select_context_files(["missing/"], tracked) == []


PACKAGES_IN = {  # the layering hack/import_graph.py checks: no package an image does not run
    "operator": {"metricpipe_contract", "metricpipe_operator"},
    "consumer": {"metricpipe_contract", "metricpipe_consumers"},
    "exporter": {"metricpipe_contract", "metricpipe_consumers", "metricpipe_exporters"},
}


@pytest.mark.parametrize("recipe", IMAGES, ids=lambda r: r.name)
def test_the_real_contexts_hold_the_product_and_no_dev_tooling(recipe: ImageRecipe) -> None:
    """What the real Dockerfiles send to the build, from the tracked files of this checkout."""
    dockerfile = (REPO / recipe.dockerfile).read_text()
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    files = select_context_files(build_context_sources(dockerfile), tracked)
    shipped = {f.split("/")[1] for f in files if f.endswith("/__init__.py") and f.count("/") == 2}
    assert shipped == PACKAGES_IN[recipe.name], shipped  # what each image's code imports
    dev = [f for f in files if f.startswith("hack/") and not f.startswith("hack/images/")]
    assert dev == [] or all(f.endswith(".pom.xml") for f in dev), dev
    assert not [f for f in files if "metricpipe_devstack" in f or "metricpipe_demo" in f]
    assert not [f for f in files if f.startswith(("tests/", ".stack", ".venv"))]


IDX = {
    "operator": IndexEntry("ghcr.io/metricpipe/operator:0.1.0", "k1", "/c/operator-k1.tar"),
    "pause": IndexEntry("localhost/metricpipe/pause:3.10", "p1", "/c/pause-p1.tar"),
}


@pytest.mark.parametrize(
    ("wanted", "present", "expected"),
    [
        ({"operator": "k1"}, ["/c/operator-k1.tar"], []),  # unchanged: nothing to do
        ({"operator": "k2"}, ["/c/operator-k1.tar"], ["operator"]),  # content changed
        ({"operator": "k1"}, [], ["operator"]),  # archive deleted
        ({"consumer": "c1"}, ["/c/operator-k1.tar"], ["consumer"]),  # never built
        ({"operator": "k1", "pause": "p1"}, ["/c/operator-k1.tar"], ["pause"]),
    ],
)
def test_plan_builds(wanted: dict[str, str], present: list[str], expected: list[str]) -> None:
    assert plan_builds(wanted, IDX, present) == expected


def test_plan_prune_keeps_the_current_archive_and_other_images() -> None:
    files = [
        "operator-0123456789abcdef.tar",
        "operator-fedcba9876543210.tar",
        "operator-fedcba9876543210.tar.partial",
        "consumer-0123456789abcdef.tar",
        "index.json",
        "operator-notakey.tar",
    ]
    keep = "operator-0123456789abcdef.tar"
    assert plan_prune("operator", keep, files) == ["operator-fedcba9876543210.tar"]
    assert plan_prune("pause", "pause-0000000000000000.tar", files) == []


def test_the_index_round_trips() -> None:
    assert parse_index(render_index(IDX)) == IDX
    assert '"archive": "/c/pause-p1.tar"' in render_index(IDX)


# what ctr 1.6 prints (columns padded with spaces; labels "k=v,k=v" or "-")
CTR_LS = (
    "REF                               TYPE                                                 "
    "DIGEST       SIZE      PLATFORMS   LABELS \n"
    "ghcr.io/metricpipe/operator:0.1.0 application/vnd.docker.distribution.manifest.v2+json "
    "sha256:499a 373.4 MiB linux/amd64 io.metricpipe.image-key=k1,other=x \n"
    "localhost/metricpipe/pause:3.10   application/vnd.docker.distribution.manifest.v2+json "
    "sha256:d6a2 756.2 KiB linux/amd64 - \n"
)


def test_parse_ctr_images() -> None:
    held = parse_ctr_images(CTR_LS)
    assert held == {
        "ghcr.io/metricpipe/operator:0.1.0": {KEY_LABEL: "k1", "other": "x"},
        "localhost/metricpipe/pause:3.10": {},
    }
    assert parse_ctr_images("REF TYPE DIGEST SIZE PLATFORMS LABELS\n") == {}


@pytest.mark.parametrize(
    ("held", "expected"),
    [
        ({}, ["operator", "pause"]),  # a fresh containerd
        (parse_ctr_images(CTR_LS), ["pause"]),  # pause held but never labelled by us
        (
            {
                "ghcr.io/metricpipe/operator:0.1.0": {KEY_LABEL: "k0"},  # an older build
                "localhost/metricpipe/pause:3.10": {KEY_LABEL: "p1"},
            },
            ["operator"],
        ),
        (
            {
                "ghcr.io/metricpipe/operator:0.1.0": {KEY_LABEL: "k1"},
                "localhost/metricpipe/pause:3.10": {KEY_LABEL: "p1"},
            },
            [],
        ),
    ],
)
def test_plan_imports(held: dict[str, dict[str, str]], expected: list[str]) -> None:
    assert plan_imports(IDX, held) == expected
