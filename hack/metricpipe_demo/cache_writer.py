"""Writes log records into a Redis log cache as the cluster's Fluentd would (dev tooling).

Fluentd cannot run on the development machines, so the cache route the operator renders
(`build_cache_fluent_conf`, `reconcile/cache_route.py`) runs in a named stand-in instead:
`fluentd_redis_store.rb`, Ruby with Debian's redis gem (redis-rb 4.8), doing what Fluentd v1
and fluent-plugin-redis-store 0.2.x do with that fragment: a UUID field per record (the
record_transformer), chunks flushed every `flush_interval` or every `chunk_records` records,
each written in one pipeline of ZADD (score = event time, member = the record's Ruby
`to_json`) and ZREMRANGEBYSCORE per record, a refused chunk retried with exponential backoff,
forever. It refuses any fragment it does not simulate (exit 2, the reason on stderr).

`CacheWriter` is what tests and the demo call: it starts the stand-in on the fragment's text,
with the writer's password (read from a file, never logged) in the environment variable the
fragment names, sends events as NDJSON `[tag, time, record]` lines, and follows the
stand-in's JSON lines (`ack`, `refused`, `done`) from a reader thread.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from metricpipe_operator.reconcile.cache_route import PASSWORD_ENV

STAND_IN = Path(__file__).with_name("fluentd_redis_store.rb")
EXIT_CONFIG = 2  # the fragment (or an argument) is not what the stand-in simulates
EXIT_NO_GEM = 3  # Ruby's redis gem is missing
PREREQS = "run `make prereqs` (installs Debian's ruby and ruby-redis)"

Event = tuple[str, float, Mapping[str, Any]]  # (tag, event time in seconds, record)


class CacheWriterError(RuntimeError):
    """The stand-in could not start, refused its configuration or input, or failed."""


@dataclass(frozen=True)
class Refusal:
    """One failed write of a chunk: the stand-in retries the same chunk after retry_in s."""

    error: str  # Redis's message, e.g. OOM command not allowed when used memory > 'maxmemory'.
    error_class: str  # the redis-rb exception, e.g. Redis::CommandError
    records: int  # the chunk's records
    retry_in: float  # seconds


@dataclass(frozen=True)
class WriterSummary:
    """The stand-in's last line: what it wrote when its input ended."""

    records: int  # records written (acknowledged by Redis)
    retries: int  # failed writes of a chunk, each retried
    unmatched: int  # events whose tag the route's <match> does not take (dropped, as Fluentd)


def encode_event(tag: str, time: float, record: Mapping[str, Any]) -> bytes:
    """One NDJSON line for the stand-in. Raises CacheWriterError for what JSON cannot carry
    as Fluentd would have it (NaN, text that is not Unicode)."""
    if not isinstance(time, int | float) or isinstance(time, bool):
        raise CacheWriterError(f"event time must be seconds as a number, not {time!r}")
    try:
        text = json.dumps([tag, time, record], ensure_ascii=False, allow_nan=False,
                          separators=(",", ":"))  # fmt: skip
        return text.encode("utf-8") + b"\n"
    except (TypeError, ValueError) as error:  # UnicodeEncodeError is a ValueError
        raise CacheWriterError(f"event of tag {tag!r} cannot be sent: {error}") from error


def find_ruby(ruby: str | None = None) -> str:
    found = ruby or shutil.which("ruby")
    if not found or not Path(found).exists():
        raise CacheWriterError(f"ruby is not installed: {PREREQS}")
    return found


def describe_exit(code: int, stderr: str) -> str:
    if code == EXIT_NO_GEM:
        return f"Ruby's redis gem is missing: {PREREQS}"
    detail = stderr.strip() or "(nothing on stderr)"
    if code == EXIT_CONFIG:
        return f"the stand-in refused its configuration or input: {detail}"
    return f"the stand-in exited with {code}: {detail}"


def check_fluent_conf(
    fluent_conf: str, tags: Iterable[str] = (), *, ruby: str | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:  # fmt: skip
    """Reads a fragment as the stand-in does, without Redis: (its `ready` line, one `tag`
    line per tag: which filters and whether the match take it). Raises CacheWriterError with
    the stand-in's reason when it refuses the fragment."""
    with tempfile.TemporaryDirectory(prefix="metricpipe-cache-conf-") as folder:
        path = Path(folder) / "fluent.conf"
        path.write_text(fluent_conf)
        result = subprocess.run(
            # --check needs no gem: without RubyGems Ruby starts in a third of the time
            [find_ruby(ruby), "--disable-gems", str(STAND_IN), "--check", str(path)],
            input="".join(f"{tag}\n" for tag in tags), capture_output=True, text=True,
            env=dict(os.environ if env is None else env), timeout=30,
        )  # fmt: skip
    if result.returncode != 0:
        raise CacheWriterError(describe_exit(result.returncode, result.stderr))
    ready, *lines = [json.loads(line) for line in result.stdout.splitlines()]
    return ready, lines


class CacheWriter:
    """The stand-in of the cluster's Fluentd writing one cache route into Redis.

    with CacheWriter(fragment, password_file) as writer:
        writer.send_many(events)
        summary = writer.close()
    """

    def __init__(
        self, fluent_conf: str, password_file: Path | None, *, chunk_records: int = 1000,
        ruby: str | None = None, start_timeout: float = 15.0,
    ) -> None:  # fmt: skip
        self.fluent_conf = fluent_conf
        self.password_file = password_file  # None: the variable unset (Fluentd: no AUTH)
        self.chunk_records = chunk_records
        self.ruby = ruby
        self.start_timeout = start_timeout
        self.ready: dict[str, Any] = {}  # the stand-in's `ready` line: the route as it read it
        self.sent = 0
        self._acknowledged = 0
        self._refusals: list[Refusal] = []
        self.record_errors: list[str] = []  # records the plugin skips (it prints the error)
        self._summary: WriterSummary | None = None
        self._stderr: list[str] = []
        self._changed = threading.Condition()
        self._process: subprocess.Popen[bytes] | None = None
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._threads: list[threading.Thread] = []

    @property
    def acknowledged(self) -> int:
        """Records Redis has taken (chunks written, retries included)."""
        with self._changed:
            return self._acknowledged

    @property
    def refusals(self) -> list[Refusal]:
        with self._changed:
            return list(self._refusals)

    def __enter__(self) -> CacheWriter:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:  # fmt: skip
        if kind is None:
            self.close()
        else:
            self.kill()

    def start(self) -> None:
        ruby = find_ruby(self.ruby)
        env = dict(os.environ)
        env.pop(PASSWORD_ENV, None)
        if self.password_file is not None:
            env[PASSWORD_ENV] = self.password_file.read_text().strip()
        self._folder = tempfile.TemporaryDirectory(prefix="metricpipe-cache-writer-")
        conf = Path(self._folder.name) / "fluent.conf"
        conf.write_text(self.fluent_conf)
        argv = [ruby, str(STAND_IN), "--chunk-records", str(self.chunk_records), str(conf)]
        self._process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        out, err = self._process.stdout, self._process.stderr
        assert out is not None
        assert err is not None
        self._threads = [
            threading.Thread(target=self._read_events, args=(out,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(err,), daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        if not self._wait(lambda: bool(self.ready), self.start_timeout):
            self.kill()
            raise CacheWriterError(f"the stand-in was not ready in {self.start_timeout:.0f} s")

    def send(self, tag: str, time: float, record: Mapping[str, Any]) -> None:
        self.send_many([(tag, time, record)])

    def send_many(self, events: Iterable[Event]) -> int:
        """Sends events in order; blocks while the stand-in's queue is full (its chunks are
        being refused: Fluentd's overflow_action block). Returns how many were sent."""
        lines = [encode_event(*event) for event in events]
        stdin = self._stdin()
        try:
            stdin.write(b"".join(lines))
            stdin.flush()
        except BrokenPipeError as error:
            raise CacheWriterError(self._failure()) from error
        self.sent += len(lines)
        return len(lines)

    def wait_acknowledged(self, count: int | None = None, timeout: float = 30.0) -> None:
        """Until `count` records (by default all sent ones: pass a count when some events'
        tags are not the route's, they are never written) are written; the stand-in flushes a
        chunk every flush_interval. TimeoutError says the last refusal, if any."""
        target = self.sent if count is None else count
        if not self._wait(lambda: self._acknowledged >= target, timeout):
            refusals = self.refusals
            last = refusals[-1].error if refusals else "none"
            raise TimeoutError(
                f"{self.acknowledged} of {target} records written after {timeout:.0f} s; "
                f"{len(refusals)} refused writes, the last: {last}"
            )

    def wait_refusals(self, count: int, timeout: float = 30.0) -> list[Refusal]:
        """Until the stand-in has reported `count` refused writes."""
        if not self._wait(lambda: len(self._refusals) >= count, timeout):
            raise TimeoutError(f"{len(self.refusals)} of {count} refused writes in {timeout} s")
        return self.refusals

    def close(self, timeout: float = 120.0) -> WriterSummary:
        """Ends the input: the stand-in writes what it holds (retrying as long as Redis
        refuses, up to `timeout`) and reports the summary."""
        process = self._running()
        if process.stdin is not None and not process.stdin.closed:
            process.stdin.close()
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired as error:
            self.kill()
            raise CacheWriterError(f"the stand-in did not finish in {timeout:.0f} s") from error
        for thread in self._threads:
            thread.join(5.0)
        self._cleanup()
        if code != 0 or self._summary is None:
            raise CacheWriterError(describe_exit(code, "".join(self._stderr)))
        return self._summary

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(10)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    def _running(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise CacheWriterError("the cache writer was not started (use it as a context)")
        return self._process

    def _stdin(self) -> IO[bytes]:
        process = self._running()
        if process.stdin is None or process.stdin.closed:
            raise CacheWriterError("the cache writer's input is closed")
        return process.stdin

    def _failure(self) -> str:
        code = self._running().wait(10)
        for thread in self._threads:
            thread.join(5.0)
        return describe_exit(code, "".join(self._stderr))

    def _wait(self, done: Callable[[], bool], timeout: float) -> bool:
        """Until done() holds (True), the timeout passes (False) or the stand-in's output
        ends first (CacheWriterError: it exited)."""
        reader = self._threads[0]
        with self._changed:
            self._changed.wait_for(lambda: done() or not reader.is_alive(), timeout)
            if done():
                return True
        if reader.is_alive():
            return False
        raise CacheWriterError(self._failure())

    def _read_events(self, stream: IO[bytes]) -> None:
        for raw in stream:
            line = json.loads(raw)
            with self._changed:
                match line.get("event"):
                    case "ready":
                        self.ready = line
                    case "ack":
                        self._acknowledged += int(line["records"])
                    case "refused":
                        self._refusals.append(Refusal(
                            str(line["error"]), str(line["error_class"]), int(line["records"]),
                            float(line["retry_in"]),
                        ))  # fmt: skip
                    case "record_error":
                        self.record_errors.append(f"{line['error_class']}: {line['error']}")
                    case "done":
                        self._summary = WriterSummary(
                            int(line["records"]), int(line["retries"]), int(line["unmatched"])
                        )
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def _read_stderr(self, stream: IO[bytes]) -> None:
        for raw in stream:
            self._stderr.append(raw.decode("utf-8", "replace"))
