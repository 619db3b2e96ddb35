"""The demo's log archive, on the cluster and at the end: the LogArchive of the Apache log
applied beside the pipelines (its earlier run's files removed first), its status while the
replay runs, and at the end the demo's own count of its records on HDFS against the lines
replayed, then one question through the edge with `kubectl metricpipe peek` as a developer
with the example Role asks it."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from metricpipe_contract.archive import DEFAULT_ROOT, build_archive_dir
from metricpipe_devstack.env import StackEnv
from metricpipe_devstack.logmark import LogMark
from metricpipe_devstack.settings import StackSettings

from .archive import (
    ARCHIVE,
    ARCHIVE_EXAMPLE,
    ARCHIVER_HDFS_USER,
    LineTally,
    build_demo_archive,
    describe_archive_check,
    describe_peek,
    describe_requests,
)
from .archive_hdfs import ArchiveCount, ArchiveHdfs
from .cluster import ARCHIVES, Cluster, run_kubectl
from .peek import PEEK_IDENTITY, PeekApi, load_reader_role, run_plugin, write_kubeconfig
from .pipelines import load_example
from .retime import format_rfc3339
from .settings import DemoSettings

READER = "log-reader"  # the developer's ServiceAccount in the demo's namespace
SHOWN_CHARACTERS = 160


class DemoArchive:
    def __init__(self, cluster: Cluster, env: StackEnv, settings: DemoSettings, *,
                 examples: Path, run_dir: Path, say: Callable[[str], None]) -> None:  # fmt: skip
        if not env.webhdfs_url or not env.edge_url:
            raise RuntimeError(
                ".stack/env has no METRICPIPE_WEBHDFS_URL or METRICPIPE_EDGE_URL: the stack "
                "predates HDFS and the edge; restart it (make stack-down stack-up)"
            )
        self.cluster, self.env, self.settings, self.say = cluster, env, settings, say
        self.examples, self.run_dir = examples, run_dir
        self.hdfs = ArchiveHdfs(env.webhdfs_url)
        self.directory = build_archive_dir(DEFAULT_ROOT, settings.namespace, ARCHIVE)

    # -- set-up --------------------------------------------------------------------------------
    def apply(self) -> None:
        """A clean start: an earlier run's LogArchive goes first (its archivers would write on),
        then its files (a new topic's offsets start at 0 again, and the archivers refuse a
        directory that recorded another topic); the archives' root is the archivers' own."""
        if self.cluster.delete_object(ARCHIVES, ARCHIVE):
            self.say(f"   removed the LogArchive {ARCHIVE} of an earlier demo run")
        self.hdfs.ensure_root(DEFAULT_ROOT, ARCHIVER_HDFS_USER)
        if self.hdfs.remove(self.directory):
            self.say(f"   removed {self.directory} of an earlier demo run from HDFS")
        body = build_demo_archive(load_example(self.examples, ARCHIVE_EXAMPLE), self.settings)
        self.cluster.apply_object(ARCHIVES, body)
        spec = body["spec"]
        self.say(f"   applied LogArchive {ARCHIVE}: every line of tag {spec['source']['tag']} → "
                 f"zstd Parquet per hour in {self.directory} on HDFS (files rolled every "
                 f"{spec['roll']['maxAge']})")  # fmt: skip

    def ready_topic(self) -> str | None:
        """The archive topic once the archive is Ready (topic, route, archivers), else None."""
        status = (self.cluster.get_object(ARCHIVES, ARCHIVE) or {}).get("status") or {}
        ready = any(c["type"] == "Ready" and c["status"] == "True"
                    for c in status.get("conditions") or [])  # fmt: skip
        return str(status["topic"]) if ready and status.get("topic") else None

    def status_line(self) -> str:
        """The columns of `kubectl get la` (status bytes and files are the operator's, read
        from HDFS every minute)."""
        status = (self.cluster.get_object(ARCHIVES, ARCHIVE) or {}).get("status") or {}
        ready = next((c["status"] for c in status.get("conditions") or []
                      if c["type"] == "Ready"), "<none>")  # fmt: skip
        files, size = status.get("files", "<none>"), status.get("bytes", "<none>")
        return (f"kubectl get la: {ARCHIVE} READY {ready} BYTES {size} FILES {files} "
                f"archivers ready {status.get('readyReplicas', 0)}")  # fmt: skip

    # -- the end -------------------------------------------------------------------------------
    def wait_archived(self, sent: int, timeout: float) -> ArchiveCount:
        """Until the files hold every line sent to the archive topic (the last roll is at most
        roll.maxAge away), or the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            count = self.hdfs.count(self.directory)
            if count.distinct >= sent or time.monotonic() > deadline:
                return count
            self.say(f"   waiting for the archivers: {count.distinct:,} of {sent:,} records on "
                     f"HDFS in {count.files} files")  # fmt: skip
            time.sleep(5)

    def show(self, topic: str, sent: int, tally: LineTally, since: datetime) -> list[str]:
        """The archive's count against the replay, `kubectl get la`, and the peek through the
        edge; the lines for the summary."""
        count = self.wait_archived(sent, self.settings.archive_wait_seconds)
        check = describe_archive_check(count, sent)
        self.say(f"   {check}")
        self.say(f"   (read by the demo itself: every Parquet file's Kafka coordinates under "
                 f"{self.directory}; topic {topic})")  # fmt: skip
        self.say("   $ kubectl get la -n " + self.settings.namespace)
        for line in run_kubectl(self.env.kubectl, self.env.kubeconfig, "get", "la", "-n",
                                self.settings.namespace):  # fmt: skip
            self.say(f"   {line}")
        return [check, self.peek(tally, since, len(count.hours))]

    def peek(self, tally: LineTally, since: datetime, hours: int) -> str:
        """The developer's question, as `kubectl metricpipe peek` through the edge: the hours
        of the replay's time range, then the newest lines answered `peek_status`."""
        s = self.settings
        started = time.monotonic()
        role = load_reader_role(self.examples / "rbac" / "peek-log-reader.yaml")
        self.cluster.ensure_log_reader(READER, role)
        self.say(f"   ServiceAccount {READER} in {s.namespace} with the Role of "
                 "manifests/examples/rbac/peek-log-reader.yaml (get logarchives/logs)")  # fmt: skip
        token = run_kubectl(self.env.kubectl, self.env.kubeconfig, "create", "token", READER,
                            "-n", s.namespace, "--duration=10m")[0]  # fmt: skip
        api = self.start_api()
        mark = LogMark.take((api.log_path, *self.env.edge_access_logs))
        until = ["--until", format_rfc3339(datetime.now(UTC))]
        question = ["--since", format_rfc3339(datetime.fromtimestamp(tally.since, UTC)), *until]
        field = f"status={s.peek_status}"
        try:
            self.ask(["--since", format_rfc3339(since), *until, "--hours"], token)
            self.say(f"   the newest lines answered {s.peek_status} since the burst's end "
                     f"(source hour {s.burst_start_hours + s.burst_hours:g} on; the burst "
                     "repeats each of its lines, and the archive keeps every copy):")  # fmt: skip
            shown = len(self.ask([*question, "--field", field, "--limit", str(s.peek_limit)],
                                 token))  # fmt: skip
        finally:
            self.say(f"   peek API: {api.stop()} (its log: {api.log_path})")
        for line in describe_requests(mark.json_records()):
            self.say(f"   {line}")
        summary = describe_peek(shown, s.peek_limit, tally, field, hours)
        self.say(f"   {summary}; {time.monotonic() - started:.1f} s with the API's start")
        return summary

    def ask(self, query: list[str], token: str) -> list[str]:
        """One `kubectl metricpipe peek` as a developer types it (after `source .stack/env`);
        the lines it printed."""
        ns = self.settings.namespace
        self.say(f"   $ kubectl metricpipe peek {ARCHIVE} -n {ns} {' '.join(query)} \\\n"
                 f'       --server "$METRICPIPE_EDGE_URL" --ca-file "$STACK_CA_FILE" '
                 f'--token "$(kubectl create token {READER} -n {ns})"')  # fmt: skip
        done = run_plugin(self.env.kubectl, self.env.kubeconfig, [
            ARCHIVE, "-n", ns, *query, "--server", str(self.env.edge_url),
            "--ca-file", str(self.env.ca_file), "--token", token,
        ])  # fmt: skip
        lines = done.stdout.splitlines()
        for line in lines:
            cut = line if len(line) <= SHOWN_CHARACTERS else line[: SHOWN_CHARACTERS - 1] + "…"
            self.say(f"     {cut}")
        if done.returncode != 0:
            raise RuntimeError(f"kubectl metricpipe peek failed: {done.stderr.strip()}")
        return lines

    def start_api(self) -> PeekApi:
        """The peek API on the edge's upstream port, as its own ServiceAccount."""
        server = self.cluster.core.api_client.configuration
        kubeconfig = self.run_dir / "peek.kubeconfig"
        token = self.cluster.create_token(*PEEK_IDENTITY)
        write_kubeconfig(kubeconfig, server.host, server.ssl_ca_cert, token)
        api = PeekApi(StackSettings(), str(self.env.webhdfs_url), kubeconfig)
        if api.ports_in_use():
            self.say(f"   waiting for 127.0.0.1:{api.port()} (a test is using the peek port)")
        api.wait_port_free()
        api.start()
        probe = api.wait_healthy()
        self.say(f"   peek API as {'/'.join(PEEK_IDENTITY)} on 127.0.0.1:{api.port()} "
                 f"({probe.detail}), behind the stack's edge: METRICPIPE_EDGE_URL="
                 f"{self.env.edge_url} (HAProxy, TCP) → two Nginx (TLS, STACK_CA_FILE="
                 f"{self.env.ca_file}) → the API")  # fmt: skip
        return api

    def down(self) -> None:
        """After the namespace is gone (its archivers with it): a peek API an interrupted demo
        left, and the files (a deleted LogArchive keeps them; the archives' root stays)."""
        api = PeekApi(StackSettings(), str(self.env.webhdfs_url), self.run_dir / "peek.kubeconfig")
        self.say(f"peek API: {api.stop()}")
        mine = self.directory.rsplit("/", 1)[0]  # the demo namespace's archives
        self.say(f"{mine} on HDFS: {'deleted' if self.hdfs.remove(mine) else 'absent'}")
