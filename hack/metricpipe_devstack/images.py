"""metricpipe's container images: what goes into each, content keys, the archive index, and the
import into containerd.

`make images` (images_build.py) builds the operator and consumer images from the repository's
Dockerfiles on bases made from Debian's packages, and a pause image from Kubernetes' own
pause.c. Each is keyed by its content (Dockerfile, every file it copies, its bases' keys, build
arguments), saved as a docker-archive `<images_dir>/<name>-<key>.tar`, and named in
`<images_dir>/index.json`. The node imports those archives into containerd's `k8s.io`
namespace and labels each image with its key, so an unchanged image is never imported twice.

Everything but the last section is pure: tests/unit/test_image_keys.py holds its tables.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import StackError
from .settings import StackSettings

KEY_LABEL = "io.metricpipe.image-key"
KEY_LENGTH = 16  # hex digits of sha256 in tags and archive names: 64 bits
OPERATOR_REF = "ghcr.io/metricpipe/operator:0.1.0"
CONSUMER_REF = "ghcr.io/metricpipe/consumer:0.1.0"
EXPORTER_REF = "ghcr.io/metricpipe/exporter:0.1.0"
PAUSE_REF = "localhost/metricpipe/pause:3.10"
# The build context directory that holds Spark's Kafka connector jars (consumers/Dockerfile).
JARS_CONTEXT_DIR = "spark-jars"

# Bases: a Debian bookworm minbase root filesystem made by mmdebstrap (the same release as the
# production base python:3.11.14-slim-bookworm), documentation and locales left out.
DEBIAN_SUITE = "bookworm"
DEBIAN_SOURCES = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
PYTHON_PACKAGES = ("python3.11", "python3-venv", "python-is-python3", "ca-certificates")
BASE_RECIPE_VERSION = "1"  # bump to rebuild the bases when the recipe's code changes


@dataclass(frozen=True)
class BaseRecipe:
    name: str
    packages: tuple[str, ...]

    def ref(self, key: str) -> str:
        return f"localhost/metricpipe/{self.name}:{key}"


BASES = (
    BaseRecipe("base-python", PYTHON_PACKAGES),
    BaseRecipe("base-jre", (*PYTHON_PACKAGES, "openjdk-17-jre-headless")),
    BaseRecipe("base-gcc", ("gcc", "libc6-dev")),  # compiles the consumer's native row maker
)


@dataclass(frozen=True)
class ImageRecipe:
    """name: the index key; bases: Dockerfile build argument -> base name."""

    name: str
    ref: str
    dockerfile: str
    bases: tuple[tuple[str, str], ...]
    build_args: tuple[tuple[str, str], ...] = ()


IMAGES = (
    ImageRecipe("operator", OPERATOR_REF, "operator/Dockerfile", (("BASE_IMAGE", "base-python"),)),
    ImageRecipe(
        "consumer",
        CONSUMER_REF,
        "consumers/Dockerfile",
        (("BASE_IMAGE", "base-python"), ("RUNTIME_BASE", "base-jre"), ("BUILD_BASE", "base-gcc")),
        (("JARS", "jars-context"),),
    ),
    ImageRecipe("exporter", EXPORTER_REF, "exporters/Dockerfile", (("BASE_IMAGE", "base-python"),)),
)
PAUSE_DOCKERFILE = """\
# Kubernetes' pause program (build/pause/linux/pause.c), compiled static: nothing else inside.
FROM scratch
COPY pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]
"""


@dataclass(frozen=True)
class IndexEntry:
    ref: str
    key: str
    archive: str


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _key_of(document: object) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return digest(canonical)[:KEY_LENGTH]


def build_base_key(recipe: BaseRecipe, sources: Iterable[str] = DEBIAN_SOURCES) -> str:
    """The key of a base: its recipe (suite, packages, sources). The mirror's package versions
    are not part of it: a base is rebuilt when the recipe changes, or by deleting it."""
    return _key_of(
        {
            "recipe": BASE_RECIPE_VERSION,
            "suite": DEBIAN_SUITE,
            "packages": sorted(recipe.packages),
            "sources": list(sources),
        }
    )


def build_image_key(
    dockerfile: bytes,
    files: Mapping[str, str],
    base_keys: Mapping[str, str],
    build_args: Mapping[str, str],
) -> str:
    """The key of an image: sha256 over the Dockerfile, every context file (path -> sha256 of
    its content; lock files and jars included), the keys of the bases it is built on (by build
    argument) and the other build arguments."""
    return _key_of(
        {
            "dockerfile": digest(dockerfile),
            "files": dict(files),
            "bases": dict(base_keys),
            "args": dict(build_args),
        }
    )


def build_pause_key(pause_c: bytes, compiler: str, dockerfile: str = PAUSE_DOCKERFILE) -> str:
    """The key of the pause image: its source, the compiler's version line, its Dockerfile."""
    return _key_of(
        {"pause.c": digest(pause_c), "gcc": compiler, "dockerfile": digest(dockerfile.encode())}
    )


def build_context_sources(dockerfile: str) -> list[str]:
    """The build-context paths a Dockerfile COPYs (not `COPY --from`), as written, in order."""
    joined = re.sub(r"\\\n", " ", dockerfile)
    sources: list[str] = []
    for line in joined.splitlines():
        words = line.split()
        if not words or words[0].upper() not in {"COPY", "ADD"}:
            continue
        arguments = words[1:]
        if any(a.startswith("--from") for a in arguments):
            continue
        paths = [a for a in arguments if not a.startswith("--")][:-1]
        sources += [p for p in paths if p not in sources]
    return sources


def select_context_files(sources: Iterable[str], tracked: Iterable[str]) -> list[str]:
    """The tracked files (git ls-files) a list of COPY sources covers: a file by its path, a
    directory (with or without its trailing slash) by everything under it."""
    prefixes = [s.rstrip("/") for s in sources]
    return sorted(
        path for path in tracked if any(path == p or path.startswith(f"{p}/") for p in prefixes)
    )


def build_archive_path(images_dir: Path, name: str, key: str) -> Path:
    return images_dir / f"{name}-{key}.tar"


def plan_builds(
    wanted: Mapping[str, str], index: Mapping[str, IndexEntry], present: Iterable[str]
) -> list[str]:
    """Names whose index entry is missing, has another key, or whose archive is gone."""
    archives = set(present)
    return [
        name
        for name, key in wanted.items()
        if name not in index or index[name].key != key or index[name].archive not in archives
    ]


def plan_prune(name: str, keep: str, files: Iterable[str]) -> list[str]:
    """Older archives of one image (`<name>-<16 hex>.tar`) other than the one to keep."""
    pattern = re.compile(rf"{re.escape(name)}-[0-9a-f]{{{KEY_LENGTH}}}\.tar")
    return sorted(f for f in files if pattern.fullmatch(f) and f != keep)


def parse_index(text: str) -> dict[str, IndexEntry]:
    raw = json.loads(text)
    return {
        name: IndexEntry(str(e["ref"]), str(e["key"]), str(e["archive"])) for name, e in raw.items()
    }


def render_index(index: Mapping[str, IndexEntry]) -> str:
    document = {
        name: {"ref": e.ref, "key": e.key, "archive": e.archive} for name, e in index.items()
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def parse_ctr_images(listing: str) -> dict[str, dict[str, str]]:
    """`ctr images ls` (REF TYPE DIGEST SIZE PLATFORMS LABELS) -> ref -> labels."""
    held: dict[str, dict[str, str]] = {}
    for line in listing.splitlines()[1:]:
        words = line.split()
        if len(words) < 2:
            continue
        labels = words[-1]
        pairs = [] if labels == "-" else [p.partition("=") for p in labels.split(",")]
        held[words[0]] = {k: v for k, _, v in pairs}
    return held


def plan_imports(
    index: Mapping[str, IndexEntry], held: Mapping[str, Mapping[str, str]]
) -> list[str]:
    """Names of the index whose image containerd lacks, or holds with another key."""
    return [
        name for name, entry in index.items() if held.get(entry.ref, {}).get(KEY_LABEL) != entry.key
    ]


# -- I/O: the import into containerd ---------------------------------------------------------


def read_index(settings: StackSettings) -> dict[str, IndexEntry]:
    path = settings.images_dir / "index.json"
    if not path.exists():
        raise StackError("images", f"no image index at {path}: run `make images`")
    return parse_index(path.read_text())


def import_images(
    settings: StackSettings, containerd_socket: Path, echo: Callable[[str], None]
) -> list[str]:
    """Import every image of index.json that containerd's `k8s.io` namespace does not hold
    with the same content key; returns the refs imported."""
    index = read_index(settings)
    missing = [e.archive for e in index.values() if not Path(e.archive).exists()]
    if missing:
        raise StackError("images", f"archives missing: {', '.join(missing)}: run `make images`")
    ctr = ["ctr", "--address", str(containerd_socket), "-n", "k8s.io"]
    held = parse_ctr_images(_run([*ctr, "images", "ls"], "list containerd's images"))
    imported: list[str] = []
    for name in plan_imports(index, held):
        entry = index[name]
        echo(f"images: importing {entry.ref} ({Path(entry.archive).name}) into containerd")
        _run([*ctr, "images", "import", entry.archive], f"import {entry.archive}")
        _run([*ctr, "images", "label", entry.ref, f"{KEY_LABEL}={entry.key}"], "label")
        imported.append(entry.ref)
    held = parse_ctr_images(_run([*ctr, "images", "ls"], "list containerd's images"))
    absent = [index[n].ref for n in plan_imports(index, held)]
    if absent:
        raise StackError(
            "images",
            f"containerd does not hold {', '.join(absent)} after the import: does each archive "
            "carry its ref as tag? Rebuild with `make images`",
        )
    return imported


def _run(argv: list[str], what: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError("images", f"{what} failed ({' '.join(argv)}): {result.stderr.strip()}")
    return result.stdout
