"""The Fluentd stand-in (hack/metricpipe_demo/fluentd_redis_store.rb) reads the cache route's
fragments as the operator renders them, and refuses every fragment it does not simulate.

Runs Debian's `ruby` (installed by `make prereqs`) in --check mode: no Redis, no gem. The
expected tag matches are Fluentd's documented pattern rules (`*` one tag part, `**` zero or
more, `{a,b}` either), written out by hand."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from metricpipe_contract.cache import UID_FIELD
from metricpipe_demo.cache_writer import (
    CacheWriter,
    CacheWriterError,
    check_fluent_conf,
    encode_event,
)
from metricpipe_operator.reconcile.cache_route import (
    PASSWORD_ENV,
    CacheRoute,
    build_cache_fluent_conf,
    build_store_match,
    build_uid_filter,
)

pytestmark = pytest.mark.skipif(
    shutil.which("ruby") is None, reason="ruby is not installed: run `make prereqs`"
)

ROUTE = CacheRoute("team-a", "app.access", "10.88.0.1", 39379, 10800)
ENV = {"PATH": "/usr/bin:/bin", PASSWORD_ENV: "not-shown"}


def read(conf: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    return check_fluent_conf(conf, env=ENV if env is None else env)[0]


def refused(conf: str) -> str:
    with pytest.raises(CacheWriterError, match="refused its configuration") as caught:
        read(conf)
    return str(caught.value)


@pytest.mark.parametrize(
    ("tag", "retention"), [("app.access", 10800), ("app.web.**", 60), ("kube.{a,b}.*", 86400)]
)
def test_rendered_fragment_is_read_as_rendered(tag: str, retention: int) -> None:
    route = CacheRoute("team-a", tag, "10.88.0.1", 39379, retention)
    ready = read(build_cache_fluent_conf(route))
    assert ready["filters"] == [{"tag_pattern": tag, "fields": [UID_FIELD]}]
    assert ready["match"] == tag
    assert (ready["host"], ready["port"], ready["key"]) == ("10.88.0.1", 39379, route.key)
    assert (ready["store_type"], ready["value_expire"], ready["key_expire"]) == (
        "zset", retention, -1
    )  # fmt: skip
    assert ready["score_path"] is None  # the score is the event time
    assert ready["password"] == "set"  # from the environment; never printed
    assert "not-shown" not in str(ready)
    assert (ready["buffer_type"], ready["flush_interval"], ready["retry_max_interval"]) == (
        "file", 1.0, 30.0
    )  # fmt: skip


def test_fluent_operator_blocks_read_like_the_label() -> None:
    """The ClusterFilter's and ClusterOutput's custom plugins, one after the other."""
    bare = f"{build_uid_filter(ROUTE)}\n{build_store_match(ROUTE)}\n"
    assert read(bare) == read(build_cache_fluent_conf(ROUTE))


def test_password_from_the_environment_as_fluentd_evaluates_it() -> None:
    """A "#{ENV['X']}" value is the variable's; unset, the whole parameter is nil (no AUTH)."""
    conf = build_cache_fluent_conf(ROUTE)
    assert read(conf, {"PATH": "/usr/bin"})["password"] is None
    assert read(conf)["password"] == "set"
    key = 'key "a\\"b\\tc #{ENV[\'T\']}:\\#{x}" # comment'
    quoted = conf.replace(f"key {ROUTE.key}", key)
    assert read(quoted, {**ENV, "T": "env"})["key"] == 'a"b\tc env:#{x}'
    single = conf.replace(f"key {ROUTE.key}", "key 'a\\'b #{ENV[\"T\"]}'")
    assert read(single)["key"] == 'a\'b #{ENV["T"]}'


# (pattern, tags it takes, tags it does not): Fluentd's documented rules.
PATTERNS = [
    ("app.access", ["app.access"], ["app", "app.access.x", "appxaccess", "x.app.access"]),
    ("app.*", ["app.a", "app.b"], ["app", "app.a.b", "apps.a"]),
    ("app.**", ["app", "app.a", "app.a.b"], ["apps", "x.app"]),
    ("**.err", ["err", "a.err", "a.b.err"], ["aerr", "err.a"]),
    ("a.**.z", ["a.z", "a.b.z", "a.b.c.z"], ["az", "a.z.b"]),
    ("a.{b,c}.d", ["a.b.d", "a.c.d"], ["a.e.d", "a.bc.d", "a.d"]),
    ("{x,y.z}.**", ["x", "x.a", "y.z.a"], ["y", "y.a"]),
    ("a.* b", ["a.x", "b"], ["a", "b.x"]),
    ("**", ["a", "a.b.c"], []),
    ("/app\\.[0-9]+/", ["app.1", "app.42"], ["app.x", "app.1.x"]),
]


@pytest.mark.parametrize(("pattern", "takes", "leaves"), PATTERNS)
def test_tag_patterns(pattern: str, takes: list[str], leaves: list[str]) -> None:
    route = CacheRoute("team-a", pattern, "10.88.0.1", 39379, 60)
    _, lines = check_fluent_conf(build_cache_fluent_conf(route), [*takes, *leaves], env=ENV)
    taken = {line["tag"]: line["match"] for line in lines}
    assert taken == {tag: tag in takes for tag in [*takes, *leaves]}
    assert all(line["filters"] == [line["match"]] for line in lines)


def _swap(old: str, new: str) -> Any:
    def change(conf: str) -> str:
        assert old in conf
        return conf.replace(old, new, 1)

    return change


HOSTILE = [
    ("unknown_store_param", _swap("store_type zset", "store_type zset\n collision_policy NX"),
     "collision_policy not simulated"),
    ("unknown_filter_param", _swap("enable_ruby true", "enable_ruby true\n renew_record true"),
     "renew_record not simulated"),
    ("unknown_buffer_param", _swap("flush_interval 1s", "flush_interval 1s\n chunk_limit_size 8m"),
     "chunk_limit_size not simulated"),
    ("unknown_section", _swap("  </match>", "<secondary>\n</secondary>\n</match>"),
     "<secondary> not simulated"),
    ("store_type_list", _swap("store_type zset", "store_type list"),
     "store_type list is not simulated (only zset)"),
    ("missing_key", _swap(f"key {ROUTE.key}\n", ""), "either key_path or key is required"),
    ("other_output", _swap("@type redis_store", "@type redis"), '@type "redis" is not simulated'),
    ("other_placeholder", _swap("${SecureRandom.uuid}", "${Time.now.to_i}"),
     "only ${SecureRandom.uuid} is simulated"),
    ("embedded_code", _swap("ENV['METRICPIPE_REDIS_PASSWORD']", "File.read('/etc/hostname')"),
     "embedded Ruby other than"),
    ("no_enable_ruby", _swap("enable_ruby true", "enable_ruby false"), "needs enable_ruby true"),
    ("retry_not_forever", _swap("retry_forever true", "retry_forever false"),
     "only retry_forever true"),
    ("overflow_throw", _swap("overflow_action block", "overflow_action throw_exception"),
     "only overflow_action block"),
    ("port_not_integer", _swap("port 39379", "port 3937x"), 'port "3937x": not an integer'),
    ("expire_with_unit", _swap("value_expire 10800", "value_expire 3h"),
     'value_expire "3h": not an integer'),
    ("param_twice", _swap("port 39379", "port 39379\n port 6379"), "port is given twice"),
    ("unclosed", _swap("</label>", ""), "is never closed"),
    ("second_match", _swap("</label>", "<match x>\n@type null\n</match>\n</label>"),
     "one <match>, the last"),
    ("include", _swap("<label", "@include other.conf\n<label"), "@include is not simulated"),
    ("json_value", _swap("port 39379", 'port ["a"]'), "JSON values are not simulated"),
    ("chunk_keys", _swap("<buffer>", "<buffer tag>"), "buffer chunk keys are not simulated"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "reason"), [case[1:] for case in HOSTILE],
                         ids=[case[0] for case in HOSTILE])  # fmt: skip
def test_hostile_fragments_are_refused(change: Any, reason: str) -> None:
    message = refused(change(build_cache_fluent_conf(ROUTE)))
    assert reason in message, message
    assert "line" in message or "<" in message  # says where


def test_open_quote_is_refused() -> None:
    conf = build_cache_fluent_conf(ROUTE).replace(f"key {ROUTE.key}", 'key "no end')
    assert "a quoted value must end on its line" in refused(conf)


def test_missing_ruby_says_make_prereqs(tmp_path: Path) -> None:
    with pytest.raises(CacheWriterError, match="make prereqs"):
        CacheWriter("", None, ruby=str(tmp_path / "no-ruby")).start()


def test_missing_gem_says_make_prereqs(tmp_path: Path) -> None:
    """The stand-in exits 3 when `require "redis"` fails; a fake ruby does just that."""
    fake = tmp_path / "ruby"
    fake.write_text("#!/bin/sh\necho 'cannot load such file -- redis' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(CacheWriterError, match=r"redis gem is missing: run `make prereqs`"):
        CacheWriter(build_cache_fluent_conf(ROUTE), None, ruby=str(fake)).start()


@pytest.mark.parametrize(
    "record", [{"m": math.nan}, {"m": "\ud800"}, {"m": object()}], ids=["nan", "surrogate", "obj"]
)
def test_events_json_cannot_carry_are_refused(record: dict[str, Any]) -> None:
    with pytest.raises(CacheWriterError, match="cannot be sent"):
        encode_event("app.access", 1.5, record)
