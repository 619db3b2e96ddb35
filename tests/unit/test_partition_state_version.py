"""The partition state's external version: a newer offset always wins; at the same offset,
becoming caught up wins (an empty partition whose first state was written before its log end
was known must still become caught up, or the pipeline watermark waits for it forever)."""

from __future__ import annotations

import pytest

from metricpipe_consumers.documents import decide_state_version


@pytest.mark.parametrize(
    ("stored", "written", "accepted"),
    [
        ((0, False), (0, True), True),  # the empty partition, its log end now known
        ((0, True), (0, True), False),  # the same state again: nothing to change
        ((0, True), (0, False), False),  # the log end shows the unread records instead
        ((5, True), (7, False), True),  # new offsets
        ((7, False), (5, True), False),  # a stale owner's older state
    ],
)
def test_external_version_order(
    stored: tuple[int, bool], written: tuple[int, bool], accepted: bool
) -> None:
    # Elasticsearch/OpenSearch `version_type=external`: a write needs a strictly greater version
    assert (decide_state_version(*written) > decide_state_version(*stored)) is accepted
