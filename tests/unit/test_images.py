"""The Dockerfiles, read for the essentials: multi-stage, pinned production bases behind
BASE_IMAGE-style build arguments, pinned packages, a numeric non-root user, no secrets, no dev
tooling, and lock files that pin every Python dependency of pyproject.toml with hashes.
(`make images` builds them for real; tests/unit/test_image_keys.py covers its keys.)"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from metricpipe_devstack.images import JARS_CONTEXT_DIR
from metricpipe_devstack.settings import read_versions

REPO = Path(__file__).resolve().parents[2]
BUILD_INPUTS = (".lock", ".pom.xml")  # files of hack/ a build reads (not packages)
IMAGES = {  # Dockerfile -> (lock file, extras it installs, module the manifests run)
    "operator/Dockerfile": ("hack/images/operator.lock", (), "metricpipe_operator"),
    "consumers/Dockerfile": ("hack/images/consumer.lock", ("consumer",), "metricpipe_consumers"),
    "exporters/Dockerfile": ("hack/images/exporter.lock", ("exporter",), "metricpipe_exporters"),
}
SECRET_WORDS = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE|CREDENTIAL", re.I)
SECRET_VALUES = re.compile(
    r"AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY-----|ghp_[0-9A-Za-z]{20}"
)


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line[:-1]}" if line.endswith("\\") else f"{pending} {line}"
        if not line.endswith("\\"):
            keyword, _, arguments = pending.strip().partition(" ")
            instructions.append(Instruction(keyword.upper(), " ".join(arguments.split())))
            pending = ""
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def pinned_image(reference: str) -> bool:
    """A digest, or a tag naming a patch release (x.y.z) — never `latest` or a bare major."""
    if "@sha256:" in reference:
        return True
    _, _, tag = reference.rpartition(":")
    return bool(re.match(r"\d+\.\d+\.\d+", tag)) and "latest" not in tag


def read_lock(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes)."""
    locked: dict[str, tuple[str, int]] = {}
    name = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if match := re.match(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)", line):
            name = canonicalize_name(match.group(1))
            locked[name] = (match.group(2), 0)
        elif stripped.startswith("--hash=sha256:") and name:
            version, hashes = locked[name]
            locked[name] = (version, hashes + 1)
        elif stripped and not stripped.startswith("#"):
            pytest.fail(f"{path}: unexpected line {line!r}")
    return locked


def project_requirements(extras: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = [*project["dependencies"]]
    for extra in extras:
        names += project["optional-dependencies"][extra]
    return [Requirement(r) for r in names]


@pytest.fixture(params=sorted(IMAGES))
def dockerfile(request: pytest.FixtureRequest) -> tuple[str, list[Instruction]]:
    name: str = request.param
    return name, parse_dockerfile((REPO / name).read_text())


def arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    """Build arguments declared before the first FROM, with their defaults."""
    defaults: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "FROM":
            break
        if instruction.keyword == "ARG":
            name, _, value = instruction.arguments.partition("=")
            defaults[name] = value
    return defaults


def resolved_froms(instructions: list[Instruction]) -> list[tuple[str, str]]:
    """(base as written, base with the default build arguments) of every stage."""
    defaults = arg_defaults(instructions)
    froms = [i.arguments.split()[0] for i in instructions if i.keyword == "FROM"]
    return [
        (f, re.sub(r"\$\{(\w+)\}", lambda m: defaults.get(m.group(1), m.group(0)), f))
        for f in froms
    ]


def stage_names(instructions: list[Instruction]) -> list[str]:
    return [
        i.arguments.split()[-1]
        for i in instructions
        if i.keyword == "FROM" and " AS " in f" {i.arguments.upper()} "
    ]


def test_images_are_multi_stage_from_pinned_bases(
    dockerfile: tuple[str, list[Instruction]],
) -> None:
    name, instructions = dockerfile
    froms = resolved_froms(instructions)
    assert len(froms) >= 2, f"{name}: build and runtime stages expected"
    names = stage_names(instructions)
    unpinned = [
        written
        for written, base in froms
        if base not in names and base != "scratch" and not pinned_image(base)
    ]
    assert not unpinned, f"{name}: base images without a patch version or digest: {unpinned}"


def test_the_local_build_can_swap_every_base(dockerfile: tuple[str, list[Instruction]]) -> None:
    """`make images` passes bases made from Debian's packages: every stage that runs pip or
    apt starts from a build argument, the production default is the pinned Python image, and
    the runtime stage is never the `jre` stage's apt-get when RUNTIME_BASE names a base."""
    name, instructions = dockerfile
    assert arg_defaults(instructions).get("BASE_IMAGE") == "python:3.11.14-slim-bookworm", name
    for stage in stages(instructions):
        runs = " ".join(i.arguments for i in stage if i.keyword == "RUN")
        base = stage[0].arguments.split()[0]
        if "pip install" in runs or "apt-get" in runs or "python" in runs:
            assert base.startswith("${"), f"{name}: {stage[0]} is not swappable"
    final = stage[0].arguments.split()[0]
    if "openjdk" in (REPO / name).read_text():
        assert final == "${RUNTIME_BASE}", f"{name}: the runtime stage installs the JRE itself"
        assert arg_defaults(instructions)["RUNTIME_BASE"] in stage_names(instructions)


def test_no_dev_tooling_in_the_images(dockerfile: tuple[str, list[Instruction]]) -> None:
    """hack/ (dev stack, demo, devstack console script) never enters an image:
    only the lock files are copied from it, and the project is not pip-installed (pyproject's
    package discovery and console script cover hack/)."""
    name, instructions = dockerfile
    for instruction in instructions:
        if instruction.keyword == "COPY" and not instruction.arguments.startswith("--from"):
            sources = instruction.arguments.split()[:-1]
            dev = [s for s in sources if s.startswith("hack") and not s.endswith(BUILD_INPUTS)]
            assert not dev, f"{name}: copies dev tooling {dev}"
            assert "." not in sources, f"{name}: copies the whole context"
        if instruction.keyword == "RUN":
            assert not re.search(r"pip install [^&]*(/src|\.)\s*($|&)", instruction.arguments), (
                f"{name}: installs the project with pip (brings hack/ along): {instruction}"
            )


def test_the_runtime_stage_runs_as_a_numeric_non_root_user(
    dockerfile: tuple[str, list[Instruction]],
) -> None:
    name, instructions = dockerfile
    final = stages(instructions)[-1]
    users = [i.arguments for i in final if i.keyword == "USER"]
    assert users, f"{name}: the runtime stage sets no USER (it would run as root)"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), f"{name}: USER {users[-1]} (numeric, so runAsNonRoot can check it)"
    assert int(uid) > 0, f"{name}: USER {users[-1]} is root"
    after_user = final[[i.keyword for i in final].index("USER") :]
    assert not [i for i in after_user if i.keyword == "RUN"], f"{name}: RUN after USER"


def test_no_secrets_in_the_images(dockerfile: tuple[str, list[Instruction]]) -> None:
    name, instructions = dockerfile
    for instruction in instructions:
        if instruction.keyword in {"ENV", "ARG", "LABEL"}:
            assert not SECRET_WORDS.search(instruction.arguments), f"{name}: {instruction}"
        if instruction.keyword in {"COPY", "ADD"}:
            sources = instruction.arguments.split()[:-1]
            bad = [s for s in sources if re.search(r"\.env$|\.pem$|\.key$|kubeconfig", s)]
            assert not bad, f"{name}: copies secret-like files {bad}"
            assert instruction.keyword == "COPY", f"{name}: ADD fetches unpinned content"
    assert not SECRET_VALUES.search((REPO / name).read_text()), f"{name}: a credential literal"
    ignored = (REPO / ".dockerignore").read_text().split()
    for pattern in (".venv", ".stack", "**/.git", "**/.env", "**/*.pem", "**/*.key"):
        assert pattern in ignored, f".dockerignore must exclude {pattern}"


def test_packages_are_installed_only_from_pinned_sources(
    dockerfile: tuple[str, list[Instruction]],
) -> None:
    name, instructions = dockerfile
    runs = [i.arguments for i in instructions if i.keyword == "RUN"]
    for run in runs:
        for command in re.split(r"&&|;", run):
            if "pip install" in command:
                hashed = "--require-hashes" in command and " -r " in command
                project_only = "--no-deps" in command
                assert hashed or project_only, f"{name}: unpinned pip install: {command.strip()}"
            if "apt-get install" in command:
                packages = [w for w in command.split()[2:] if not w.startswith("-")]
                assert all("=" in p for p in packages if p != "install"), f"{name}: {command}"
                assert "--no-install-recommends" in command, f"{name}: {command}"
    copied = [  # from the build context (COPY --from=<stage> reads another stage)
        i.arguments.split()[:-1]
        for i in instructions
        if i.keyword == "COPY" and not i.arguments.startswith("--from")
    ]
    for sources in copied:
        for source in sources:
            if source.startswith("--") or source == f"{JARS_CONTEXT_DIR}/":
                continue  # the connector jars: make images (or a release build) puts them there
            assert (REPO / source).exists(), f"{name}: COPY {source}: not in the repository"


@pytest.mark.parametrize("dockerfile_name", sorted(IMAGES))
def test_the_lock_pins_every_dependency_with_hashes(dockerfile_name: str) -> None:
    lock_name, extras, _ = IMAGES[dockerfile_name]
    assert lock_name in (REPO / dockerfile_name).read_text(), f"{dockerfile_name} uses {lock_name}"
    locked = read_lock(REPO / lock_name)
    assert locked, f"{lock_name} is empty"
    unhashed = [n for n, (_, hashes) in locked.items() if hashes == 0]
    assert not unhashed, f"{lock_name}: no hash for {unhashed}"
    for requirement in project_requirements(extras):
        key = canonicalize_name(requirement.name)
        assert key in locked, f"{lock_name} lacks {requirement.name}: run `make locks`"
        version = locked[key][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock_name}: {requirement.name}=={version} is outside pyproject's "
            f"{requirement.specifier}: run `make locks`"
        )


def container_commands() -> list[list[str]]:
    """The commands metricpipe runs: the manifests' Deployments and the consumer builder's."""
    commands = [
        c.get("command", [])
        for path in (REPO / "manifests" / "base").glob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") == "Deployment"
        for c in doc["spec"]["template"]["spec"]["containers"]
    ]
    builder = (REPO / "operator/metricpipe_operator/reconcile/consumer.py").read_text()
    commands += [["python", "-m", m] for m in re.findall(r'"-m", "(metricpipe_\w+)"', builder)]
    return commands


@pytest.mark.parametrize("dockerfile_name", sorted(IMAGES))
def test_the_entrypoint_is_what_metricpipe_runs(dockerfile_name: str) -> None:
    _, _, module = IMAGES[dockerfile_name]
    final = stages(parse_dockerfile((REPO / dockerfile_name).read_text()))[-1]
    entrypoints = [i.arguments for i in final if i.keyword == "ENTRYPOINT"]
    assert entrypoints, f"{dockerfile_name}: no ENTRYPOINT"
    assert module in entrypoints[-1], f"{dockerfile_name}: {entrypoints[-1]}"
    assert ["python", "-m", module] in container_commands()


def test_the_checks_catch_what_they_look_for() -> None:
    """The parser and rules reject the mistakes they exist for."""
    bad = parse_dockerfile(
        "FROM python:3.11-slim\nENV DB_PASSWORD=x\nRUN pip install kopf \\\n && true\n"
    )
    assert not pinned_image(bad[0].arguments)
    assert SECRET_WORDS.search(bad[1].arguments)
    assert bad[2] == Instruction("RUN", "pip install kopf && true")
    assert not pinned_image("python:latest")
    assert pinned_image("python:3.11.14-slim-bookworm")
    assert pinned_image("python@sha256:" + "0" * 64)


def test_the_consumer_image_carries_the_connector_of_its_spark() -> None:
    """The jars land in /opt/metricpipe/jars/, resolved for the pinned Spark version."""
    text = (REPO / "consumers/Dockerfile").read_text()
    assert "/opt/metricpipe/jars/" in text
    assert f"ARG SPARK_VERSION={read_versions()['SPARK_VERSION']}" in text
    assert "hack/maven/spark-kafka.pom.xml" in text
