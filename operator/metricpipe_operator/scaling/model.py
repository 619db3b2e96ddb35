"""The scaling policy's inputs and output (pure data; times are Unix seconds)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MetricSample:
    """One observation of one pipeline, as read from Prometheus at `at`. None = unknown."""

    at: float
    replicas: int  # consumer replicas running when observed
    input_rate: float | None = None  # records/s arriving, all partitions
    processing_rate: float | None = None  # records/s processed, all replicas together
    busy_fraction: float | None = None  # mean over replicas, 0..1
    lag_records: float | None = None  # records not yet processed, all partitions
    time_lag_seconds: float | None = None  # max over partitions (exact, from the exporter)
    freshness_seconds: float | None = None
    partitions: int | None = None
    dead_letters: float | None = None  # records dead-lettered over the rejected window
    records_read: float | None = None  # records read over the same window
    late_records: float | None = None  # dead-lettered late or future over the late window


@dataclass(frozen=True)
class PipelineScaling:
    """What the policy needs from the pipeline's spec and status."""

    current_replicas: int  # the replicas the consumer Deployment is set to now
    min_replicas: int
    max_replicas: int
    target_utilization: float  # busy fraction each replica is sized for
    freshness_target_seconds: float
    allowed_lateness_seconds: float
    scale_down_stabilization_seconds: float
    last_scale_at: float | None = None  # when replicas last changed
    known_capacity: float | None = None  # status.capacityPerReplica: the last one measured
    sleeps: bool = False  # minReplicas 0 (sleep.py): windows with no consumer say nothing


@dataclass(frozen=True)
class PolicyConfig:
    """Operator-wide knobs of the policy (documented defaults, seconds)."""

    startup_seconds: float = 30.0  # a new replica's start until it processes
    rebalance_seconds: float = 10.0  # the group's pause on any membership change
    stale_after_seconds: float = 60.0  # a newest sample older than this: fail static
    max_step_up: int = 8  # replicas added at most per decision
    # replicas removed at most per decision; 0: no limit (a scale-down goes straight to the
    # highest recommendation of the stabilisation window, itself sized from the measured capacity)
    max_step_down: int = 0
    budget_fraction: float = 0.5  # share of the freshness target a catch-up may use
    cooldown_seconds: float = 60.0  # minimum time between two scale changes
    # the input of this many stabilisation windows (spec.scaling.scaleDownStabilization; 20 min
    # at its default 10m, at least a minute) is replayed to find the fewest replicas that absorb
    # its ups and downs with the backlog (scaling/replay.py) ...
    variability_window_stabilizations: float = 2.0
    replay_target_fraction: float = 0.7  # ... no record waiting longer than this share of target
    # a scale-down (other than to the minimum) removes more than this share of the replicas
    scale_down_min_fraction: float = 1.0 / 3.0
    # minReplicas 0 (sleep.py): a sleep and its wake are two scale events; a cycle shorter than
    # 2 / this hours does not sleep
    sleep_max_events_per_hour: float = 4.0


@dataclass(frozen=True)
class Decision:
    replicas: int  # the target (== current when nothing changes)
    reason: str  # one human line with the numbers
    limited_by: str | None = None  # min_replicas | max_replicas | partitions | max_step | ...
    per_replica_rate: float | None = None  # true capacity of one replica, records/s
    predicted_drain_seconds: float | None = None
    predicted_freshness_seconds: float | None = None
    metrics_available: bool = True
    details: dict[str, float] = field(default_factory=dict)
