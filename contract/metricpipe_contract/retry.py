"""When a failed request is tried again: exponential back-off with jitter (pure). The operator's
Kopf handlers apply it as a TemporaryError's delay (a failed reconcile or clean-up), the
consumers' sink client between tries of a write or request the sink did not answer.

Attempt 0 waits `minimum`; each further attempt doubles the ceiling, up to `maximum`. The delay
is drawn between half the ceiling and the ceiling ("equal jitter"), never under `minimum`: a
Kafka outage that fails every pipeline's reconcile at once does not bring them all back in the
same second, and a failure that lasts costs one attempt per `maximum`, not one per `minimum`.
"""

from __future__ import annotations


def decide_retry_delay(attempt: int, minimum: float, maximum: float, draw: float) -> float:
    """Seconds to wait before retry `attempt + 1` (Kopf's `retry`: 0 on the first failure);
    `draw` is uniform in [0, 1)."""
    ceiling = min(maximum, minimum * 2.0 ** min(max(attempt, 0), 32))
    return max(minimum, min(maximum, ceiling / 2 + ceiling / 2 * draw))
