"""Topic planning, topic ownership and index claims: tables of states and decisions (pure)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from metricpipe_contract.model import MetricPipelineSpec
from metricpipe_contract.refs import PipelineRef
from metricpipe_operator.config import OperatorConfig
from metricpipe_operator.reconcile.indices import (
    IndexClaim,
    build_index_claim,
    decide_index_refusal,
)
from metricpipe_operator.reconcile.owners import (
    TopicOwner,
    decide_topic_claim,
    decide_topic_removals,
)
from metricpipe_operator.reconcile.topic import (
    TopicChanges,
    TopicPlan,
    TopicState,
    build_topic_plan,
    decide_topic_changes,
)

PLAN = TopicPlan("t", 6, 1, {"cleanup.policy": "delete", "retention.ms": "3600000"})
SAME_CONFIG = dict(PLAN.config)


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        (None, TopicChanges(create=True)),
        (TopicState(6, SAME_CONFIG), TopicChanges()),
        (TopicState(4, SAME_CONFIG), TopicChanges(add_partitions=6)),
        (
            TopicState(6, {**SAME_CONFIG, "retention.ms": "1000"}),
            TopicChanges(config_updates={"retention.ms": "3600000"}),
        ),
        (
            TopicState(2, {"cleanup.policy": "compact", "retention.ms": "3600000"}),
            TopicChanges(add_partitions=6, config_updates={"cleanup.policy": "delete"}),
        ),
    ],
)
def test_decide_topic_changes(current: TopicState | None, expected: TopicChanges) -> None:
    assert decide_topic_changes(PLAN, current) == expected


def test_partition_decrease_is_refused_and_nothing_changes() -> None:
    changes = decide_topic_changes(PLAN, TopicState(8, {"retention.ms": "1"}))
    assert changes.empty
    assert changes.refused is not None
    assert "has 8 partitions" in changes.refused
    assert "spec.topic.partitions to 8 or more" in changes.refused


def test_plan_from_spec() -> None:
    spec = MetricPipelineSpec.model_validate(
        {
            "source": {"tag": "a"},
            "metric": {"aggregation": "count"},
            "topic": {"partitions": 3, "retention": "2h", "config": {"compression.type": "zstd"}},
        }
    )
    plan = build_topic_plan(spec, "ns", "p")
    assert plan == TopicPlan(
        "metricpipe.ns.p",
        3,
        1,
        {"cleanup.policy": "delete", "compression.type": "zstd", "retention.ms": "7200000"},
    )


def test_replication_factor_above_the_broker_count_is_refused_before_creation() -> None:
    plan = TopicPlan("t", 6, 3, dict(PLAN.config))
    refused = decide_topic_changes(plan, None, brokers=1)
    assert refused.empty
    assert refused.refused_reason == "ReplicationFactorTooHigh"
    assert refused.refused is not None
    assert "replicationFactor is 3" in refused.refused
    assert "has 1 broker;" in refused.refused
    assert decide_topic_changes(plan, None, brokers=3) == TopicChanges(create=True)
    # an existing topic's replication is Kafka's business: nothing to create, nothing refused
    assert decide_topic_changes(plan, TopicState(6, SAME_CONFIG), brokers=1) == TopicChanges()


def test_partition_decrease_names_its_reason() -> None:
    refused = decide_topic_changes(PLAN, TopicState(8, SAME_CONFIG), brokers=1)
    assert refused.refused_reason == "PartitionDecreaseRefused"
    assert refused.refused is not None
    assert "nothing else was changed" in refused.refused


# -- ownership ------------------------------------------------------------------------------

ME = PipelineRef("shop", "orders", "uid-me")
OTHER = "bank/payments"
REGISTRY = "__metricpipe_topic_owners"


@pytest.mark.parametrize(
    ("topic", "record", "current_id", "adopt", "conflict", "record_written"),
    [
        # nothing yet: claim, then create
        ("t", None, None, False, None, TopicOwner("shop/orders", "uid-me")),
        # our claim from a run that crashed before it created the topic: create
        ("t", TopicOwner("shop/orders", "old"), None, False, None, None),
        # ours, created, still the same topic
        ("t", TopicOwner("shop/orders", "u", "id-1"), "id-1", False, None, None),
        # ours, created by a run that crashed before it recorded the id
        ("t", TopicOwner("shop/orders", "u"), "id-1", False, None,
         TopicOwner("shop/orders", "u", "id-1")),
        # ours once, deleted since: create again (a new claim)
        ("t", TopicOwner("shop/orders", "u", "id-1"), None, False, None,
         TopicOwner("shop/orders", "uid-me")),
        # another pipeline's, whether it exists or not, adoption or not
        ("t", TopicOwner(OTHER, "x", "id-1"), "id-1", True, "owned by pipeline bank/payments",
         None),
        ("t", TopicOwner(OTHER, "x"), None, False, "owned by pipeline bank/payments", None),
        # exists, nobody created it: refused unless the operator allows adoption
        ("t", None, "id-1", False, "no pipeline created it", None),
        ("t", None, "id-1", True, None, TopicOwner("shop/orders", "uid-me", "id-1", adopted=True)),
        # deleted and created again outside metricpipe after we created it
        ("t", TopicOwner("shop/orders", "u", "id-1"), "id-2", False,
         "created again outside metricpipe", None),
        # internal topics: never, adoption or not, existing or not
        ("__consumer_offsets", None, "id-9", True, "internal", None),
        ("__new", None, None, True, "internal", None),
        (REGISTRY, None, "id-9", True, "internal", None),
    ],
)  # fmt: skip
def test_decide_topic_claim(
    topic: str, record: TopicOwner | None, current_id: str | None, adopt: bool,
    conflict: str | None, record_written: TopicOwner | None,
) -> None:  # fmt: skip
    claim = decide_topic_claim(
        topic, ME, record, current_id, exists=current_id is not None, may_adopt=adopt,
        registry_topic=REGISTRY,
    )  # fmt: skip
    if conflict is None:
        assert claim.conflict is None
    else:
        assert claim.conflict is not None
        assert conflict in claim.conflict
        assert topic in claim.conflict
    assert claim.record == record_written


@pytest.mark.parametrize(
    ("main", "dlq", "expected"),
    [
        # created both: both go, marks released
        ((TopicOwner("shop/orders", "u", "m1"), "m1"), (TopicOwner("shop/orders", "u", "d1"), "d1"),
         [("t", True, True, None), ("t.dlq", True, True, None)]),
        # adopted main: neither goes, not even the DLQ this pipeline created
        ((TopicOwner("shop/orders", "u", "m1", adopted=True), "m1"),
         (TopicOwner("shop/orders", "u", "d1"), "d1"),
         [("t", False, False, "adopted"), ("t.dlq", False, False, "did not create")]),
        # another pipeline's topic (this one got Conflict): nothing goes, no mark released
        ((TopicOwner(OTHER, "x", "m1"), "m1"), (TopicOwner(OTHER, "x", "d1"), "d1"),
         [("t", False, False, "bank/payments owns it"), ("t.dlq", False, False, "owns it")]),
        # nobody's (pre-existing): stays
        ((None, "m1"), (None, None), [("t", False, False, "no pipeline"), ("t.dlq", False, False,
                                                                          None)]),
        # recreated outside metricpipe since: stays
        ((TopicOwner("shop/orders", "u", "m1"), "m2"), (TopicOwner("shop/orders", "u", "d1"), "d1"),
         [("t", False, False, "not the topic"), ("t.dlq", True, True, None)]),
        # created by a run that crashed before it recorded the id: a claim is ours
        ((TopicOwner("shop/orders", "u"), "m1"), (TopicOwner("shop/orders", "u"), "d1"),
         [("t", True, True, None), ("t.dlq", True, True, None)]),
        # already deleted by hand: only the marks are released
        ((TopicOwner("shop/orders", "u", "m1"), None), (TopicOwner("shop/orders", "u", "d1"), None),
         [("t", False, True, None), ("t.dlq", False, True, None)]),
    ],
)  # fmt: skip
def test_decide_topic_removals(
    main: tuple[TopicOwner | None, str | None], dlq: tuple[TopicOwner | None, str | None],
    expected: list[tuple[str, bool, bool, str | None]],
) -> None:  # fmt: skip
    removals = decide_topic_removals(ME, [("t", *main), ("t.dlq", *dlq)])
    for removal, (topic, delete, release, kept) in zip(removals, expected, strict=True):
        assert (removal.topic, removal.delete, removal.release) == (topic, delete, release)
        if kept is None:
            assert removal.kept is None
        else:
            assert removal.kept is not None
            assert kept in removal.kept


def test_owner_record_round_trip() -> None:
    owner = TopicOwner("shop/orders", "uid-me", "id-1", adopted=True)
    assert TopicOwner.decode(owner.encode()) == owner
    assert TopicOwner.decode(None) is None  # a tombstone
    assert TopicOwner.decode(b"") is None


# -- one pipeline per index -----------------------------------------------------------------


def claim(pipeline: str, created: str, wants: str, uses: str | None = None) -> IndexClaim:
    return IndexClaim(pipeline, created, (wants, f"{wants}-state"),
                      (uses, f"{uses}-state") if uses else ())  # fmt: skip


@pytest.mark.parametrize(
    ("others", "index", "refused"),
    [
        ([], "web", None),
        ([claim("a/old", "2026-01-01T00:00:00Z", "web")], "web", "a/old was created earlier"),
        ([claim("a/new", "2026-03-01T00:00:00Z", "web")], "web", None),  # the younger gives way
        # a running pipeline keeps its index, even against an older one's later edit
        ([claim("a/new", "2026-03-01T00:00:00Z", "web", uses="web")], "web", "a/new writes to"),
        # an index and another's state index are the same index
        ([claim("a/old", "2026-01-01T00:00:00Z", "web-state")], "web", "index web-state"),
        ([claim("a/old", "2026-01-01T00:00:00Z", "web")], "web-state", "index web-state"),
        ([claim("a/old", "2026-01-01T00:00:00Z", "other")], "web", None),
    ],
)
def test_decide_index_refusal(others: list[IndexClaim], index: str, refused: str | None) -> None:
    mine = claim("shop/orders", "2026-02-01T00:00:00Z", "ignored")
    found = decide_index_refusal("shop", "orders", index, [mine, *others])
    if refused is None:
        assert found is None
    else:
        assert found is not None
        assert refused in found
        assert "spec.sink.index" in found


def test_index_claim_from_an_object() -> None:
    obj = {"metadata": {"namespace": "shop", "name": "orders",
                        "creationTimestamp": "2026-02-01T00:00:00Z"},
           "spec": {"source": {"tag": "a"}, "metric": {"aggregation": "count"}},
           "status": {"sinkIndex": "metricpipe-shop.orders.metrics"}}  # fmt: skip
    found = build_index_claim(obj)
    assert found == IndexClaim(
        "shop/orders", "2026-02-01T00:00:00Z",
        ("metricpipe-shop.orders.metrics", "metricpipe-shop.orders.metrics-state"),
        ("metricpipe-shop.orders.metrics", "metricpipe-shop.orders.metrics-state"),
    )  # fmt: skip
    assert build_index_claim({"metadata": {"name": "x"}, "spec": {"bad": 1}}) is None


@pytest.mark.parametrize(
    ("pattern", "topic", "allowed"),
    [
        ("", "logs.web", False),  # the default: nothing is adopted
        (r"logs\..*", "logs.web", True),
        (r"logs\..*", "xlogs.web", False),  # the whole name must match
        (r"logs\..*", "logs.web.dlq", True),
        (".*", "__consumer_offsets", False),  # internal topics never
        (".*", "__metricpipe_topic_owners", False),
    ],
)
def test_adoption_setting(pattern: str, topic: str, allowed: bool) -> None:
    assert OperatorConfig(adopt_topics=pattern).may_adopt(topic) is allowed


def test_adoption_setting_must_be_a_regular_expression() -> None:
    with pytest.raises(ValidationError, match="METRICPIPE_ADOPT_TOPICS is not a regular"):
        OperatorConfig(adopt_topics="logs.(")
