"""`make images`: build metricpipe's images without any registry, cached by content.

1. Bases from Debian's packages: `mmdebstrap --variant=minbase` (images.BASES) imported into a
   buildah/podman storage under the cache, tagged `localhost/metricpipe/<base>:<key>`.
2. The operator and consumer images from the repository's Dockerfiles: a build context is
   assembled from the git-tracked files each Dockerfile COPYs (plus Spark's Kafka connector jars
   for the consumer), then `buildah bud --pull-never --network host --isolation chroot` with the
   local bases as build arguments. PyPI and Debian are reachable only from the host's network
   namespace, hence `--network host`; `--isolation chroot` needs no cgroup or rlimit set-up.
3. The pause image: Kubernetes' own build/pause/linux/pause.c from the Go module cache,
   compiled with `gcc -Os -static`, `FROM scratch`.
Each image is saved as a docker-archive named by its key and listed in index.json; an image
whose key did not change is not rebuilt. Run as root (mmdebstrap and buildah's storage).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .errors import StackError
from .images import (
    BASES,
    DEBIAN_SOURCES,
    DEBIAN_SUITE,
    IMAGES,
    JARS_CONTEXT_DIR,
    KEY_LENGTH,
    PAUSE_DOCKERFILE,
    PAUSE_REF,
    BaseRecipe,
    ImageRecipe,
    IndexEntry,
    build_archive_path,
    build_base_key,
    build_context_sources,
    build_image_key,
    build_pause_key,
    digest,
    parse_index,
    plan_builds,
    plan_prune,
    render_index,
    select_context_files,
)
from .settings import REPO_ROOT, StackSettings

Echo = Callable[[str], None]
PROGRESS_PREFIXES = ("I: ", "STEP ", "Collecting ", "Successfully installed", "COMMIT")


class ImageBuilder:
    def __init__(self, settings: StackSettings, echo: Echo) -> None:
        self.settings = settings
        self.echo = echo
        self.work = settings.images_dir / "work"
        self.logs = settings.images_dir / "logs"
        self.storage = [
            "--root",
            str(settings.cache_dir / "containers" / "storage"),
            "--runroot",
            "/run/metricpipe-buildah",
            "--storage-driver",
            "overlay",
        ]

    # -- steps ---------------------------------------------------------------------------------
    def build_all(self) -> dict[str, IndexEntry]:
        if os.geteuid() != 0:
            raise StackError("images", "building images needs root (mmdebstrap, buildah)")
        for tool in ("mmdebstrap", "buildah", "podman", "gcc", "go", "git"):
            if shutil.which(tool) is None:
                raise StackError("images", f"{tool} not found: run `make prereqs` as root")
        self.work.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        base_keys = {recipe.name: self.ensure_base(recipe) for recipe in BASES}
        tracked = self._git_files()
        jars = self._jars()
        index_path = self.settings.images_dir / "index.json"
        index = parse_index(index_path.read_text()) if index_path.exists() else {}
        for recipe in IMAGES:
            key, files = self._image_inputs(recipe, base_keys, tracked, jars)
            build = functools.partial(
                self._build_image, recipe=recipe, files=files, jars=jars, base_keys=base_keys
            )
            index[recipe.name] = self._ensure_archive(recipe.name, recipe.ref, key, index, build)
            index_path.write_text(render_index(index))
        pause_c = self._pause_source()
        gcc = self._output(["gcc", "--version"]).splitlines()[0]
        pause_key = build_pause_key(pause_c.read_bytes(), gcc)
        index["pause"] = self._ensure_archive(
            "pause", PAUSE_REF, pause_key, index, lambda ctx: self._build_pause(ctx, pause_c)
        )
        index_path.write_text(render_index(index))
        return index

    def ensure_base(self, recipe: BaseRecipe) -> str:
        key = build_base_key(recipe)
        ref = recipe.ref(key)
        if self._podman_quiet(["image", "exists", ref]):
            self.echo(f"images: {ref} cached")
            return key
        started = time.monotonic()
        self.echo(f"images: making {ref} with mmdebstrap ({', '.join(recipe.packages)})")
        tarball = self.work / f"{recipe.name}.tar"
        self._run_logged(
            [
                "mmdebstrap", "--variant=minbase", f"--include={','.join(recipe.packages)}",
                "--aptopt=Apt::Install-Recommends \"false\"",
                *(f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("doc", "man", "locale")),
                # the JRE's postinst links its man page; dpkg needs the directory to exist
                "--setup-hook=mkdir -p \"$1/usr/share/man/man1\"",
                DEBIAN_SUITE, str(tarball), *DEBIAN_SOURCES,
            ],
            self.logs / f"{recipe.name}.log",
        )  # fmt: skip
        path_env = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        self._podman(["import", "--change", f"ENV {path_env}", str(tarball), ref])
        tarball.unlink()
        old = self._podman(["images", "--format", "{{.Repository}}:{{.Tag}}"]).split()
        stale = [r for r in old if r.startswith(ref.rsplit(":", 1)[0] + ":") and r != ref]
        if stale:
            self._podman(["rmi", *stale])
        self.echo(f"images: {ref} made in {time.monotonic() - started:.0f} s")
        return key

    def _ensure_archive(
        self,
        name: str,
        ref: str,
        key: str,
        index: dict[str, IndexEntry],
        build: Callable[[Path], None],
    ) -> IndexEntry:
        images_dir = self.settings.images_dir
        archive = build_archive_path(images_dir, name, key)
        present = [str(p) for p in images_dir.glob("*.tar")]
        if not plan_builds({name: key}, index, present):
            self.echo(f"images: {ref} unchanged (key {key})")
            return index[name]
        started = time.monotonic()
        self.echo(f"images: building {ref} (key {key})")
        context = self.work / f"context-{name}"
        shutil.rmtree(context, ignore_errors=True)
        context.mkdir(parents=True)
        build(context)
        partial = archive.with_suffix(".tar.partial")
        partial.unlink(missing_ok=True)
        self._podman(["save", "--format", "docker-archive", "-o", str(partial), ref])
        partial.rename(archive)
        shutil.rmtree(context)
        for stale in plan_prune(name, archive.name, (p.name for p in images_dir.iterdir())):
            (images_dir / stale).unlink()
        size = archive.stat().st_size / 2**20
        self.echo(f"images: {ref} built in {time.monotonic() - started:.0f} s ({size:.0f} MiB)")
        return IndexEntry(ref, key, str(archive))

    def _image_inputs(
        self,
        recipe: ImageRecipe,
        base_keys: dict[str, str],
        tracked: list[str],
        jars: list[Path],
    ) -> tuple[str, list[str]]:
        text = (REPO_ROOT / recipe.dockerfile).read_text()
        sources = build_context_sources(text)
        files = select_context_files(sources, tracked)
        digests = {f: digest((REPO_ROOT / f).read_bytes()) for f in files}
        if f"{JARS_CONTEXT_DIR}/" in sources or JARS_CONTEXT_DIR in sources:
            digests |= {f"{JARS_CONTEXT_DIR}/{j.name}": digest(j.read_bytes()) for j in jars}
        bases = {arg: base_keys[base] for arg, base in recipe.bases}
        key = build_image_key(text.encode(), digests, bases, dict(recipe.build_args))
        return key, files

    def _build_image(
        self,
        context: Path,
        recipe: ImageRecipe,
        files: list[str],
        jars: list[Path],
        base_keys: dict[str, str],
    ) -> None:
        for name in [*files, recipe.dockerfile]:
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, context / name)
        (context / JARS_CONTEXT_DIR).mkdir()
        for jar in jars:
            shutil.copy2(jar, context / JARS_CONTEXT_DIR / jar.name)
        base_refs = {base.name: base.ref(base_keys[base.name]) for base in BASES}
        args = [
            *(f"{arg}={base_refs[base]}" for arg, base in recipe.bases),
            *(f"{arg}={value}" for arg, value in recipe.build_args),
        ]
        ca_bundle = os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
        mount = (
            "/etc/ssl/certs/ca-certificates.crt"  # the bases' own bundle, overlaid while building
        )
        self._bud(context, recipe.dockerfile, recipe.ref, recipe.name, [
            *(a for arg in args for a in ("--build-arg", arg)),
            "--volume", f"{ca_bundle}:{mount}:ro", "--build-arg", f"PIP_CERT={mount}",
        ])  # fmt: skip

    def _build_pause(self, context: Path, pause_c: Path) -> None:
        log = self.logs / "pause.log"
        version = self.settings.versions["KUBE_VERSION"]
        self._run_logged(
            ["gcc", "-Os", "-Wall", "-Werror", "-static", f"-DVERSION={version}-metricpipe",
             "-o", str(context / "pause"), str(pause_c)],
            log,
        )  # fmt: skip
        (context / "Dockerfile").write_text(PAUSE_DOCKERFILE)
        self._bud(context, "Dockerfile", PAUSE_REF, "pause", [])

    def _bud(self, context: Path, dockerfile: str, ref: str, name: str, extra: list[str]) -> None:
        self._run_logged(
            ["buildah", *self.storage, "bud", "--pull-never", "--layers", "--network", "host",
             "--isolation", "chroot", "-f", str(context / dockerfile), "-t", ref, *extra,
             str(context)],
            self.logs / f"{name}.log",
        )  # fmt: skip
        # buildah 1.28 keeps (and keeps mounted) a working container for a stage that only
        # names another (`FROM ${JARS} AS jars`): remove every working container of this
        # storage, which only these builds use, so no mount outlives the build
        self._run_logged(["buildah", *self.storage, "rm", "--all"], self.logs / f"{name}-rm.log")

    # -- inputs --------------------------------------------------------------------------------
    def _git_files(self) -> list[str]:
        """The checkout's files as git sees them: tracked or new, never ignored (.venv, caches),
        and present (a deletion not yet committed is gone)."""
        listing = self._output(
            ["git", "-C", str(REPO_ROOT), "ls-files", "--cached", "--others", "--exclude-standard"]
        )
        return [f for f in dict.fromkeys(listing.splitlines()) if (REPO_ROOT / f).is_file()]

    def _jars(self) -> list[Path]:
        jars = sorted(self.settings.spark_kafka_jars.glob("*.jar"))
        if not any("spark-sql-kafka" in j.name for j in jars):
            raise StackError(
                "images",
                f"Spark's Kafka connector jars missing in {self.settings.spark_kafka_jars}: "
                "run `bash hack/fetch-deps.sh spark-kafka` (make images does)",
            )
        return jars

    def _pause_source(self) -> Path:
        module = f"k8s.io/kubernetes@{self.settings.versions['KUBE_VERSION']}"
        info = json.loads(self._output(["go", "mod", "download", "-json", module], cwd="/"))
        source = Path(info["Dir"]) / "build" / "pause" / "linux" / "pause.c"
        if not source.exists():
            raise StackError("images", f"{source} missing from the module cache ({module})")
        return source

    # -- processes -----------------------------------------------------------------------------
    def _run_logged(self, argv: list[str], log: Path) -> None:
        """Run with stdout+stderr into `log`, echoing its progress lines."""
        with log.open("w") as out:
            process = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            assert process.stdout is not None
            for line in process.stdout:
                out.write(line)
                stripped = line.strip()
                if any(p in stripped[:40] for p in PROGRESS_PREFIXES):
                    self.echo(f"    {stripped[:140]}")
            code = process.wait()
        if code != 0:
            raise StackError("images", f"{argv[0]} failed with exit code {code}", log)

    def _podman(self, args: list[str]) -> str:
        return self._output(["podman", *self.storage, *args])

    def _podman_quiet(self, args: list[str]) -> bool:
        argv = ["podman", *self.storage, *args]
        return subprocess.run(argv, capture_output=True).returncode == 0

    def _output(self, argv: list[str], cwd: str | None = None) -> str:
        result = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
        if result.returncode != 0:
            raise StackError("images", f"{' '.join(argv[:4])} ...: {result.stderr.strip()}")
        return result.stdout


def main() -> int:
    started = time.monotonic()
    settings = StackSettings()
    try:
        index = ImageBuilder(settings, lambda line: print(line, flush=True)).build_all()
    except StackError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    for name, entry in index.items():
        print(f"  {name:9s} {entry.ref:40s} {entry.key[:KEY_LENGTH]}  {entry.archive}")
    print(f"images: done in {time.monotonic() - started:.0f} s; index {settings.images_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
