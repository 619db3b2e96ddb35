"""Topic planning: a table of current states and the changes decided (pure)."""

from __future__ import annotations

import pytest

from metricpipe_operator.api.model import MetricPipelineSpec
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
