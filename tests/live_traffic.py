"""Live events for the closed-loop tests: event time = produce time, at a rate the test can
change while it runs, each told to the outside freshness probe."""

from __future__ import annotations

import json
import threading
import time

from confluent_kafka import Producer

from freshness_probe import FreshnessProbe
from metricpipe_devstack.env import StackEnv


class Traffic:
    """Records `{"time": <now>, "tag": "e2e"}` spread round-robin over `partitions`."""

    def __init__(self, stack: StackEnv, topic: str, probe: FreshnessProbe, partitions: int) -> None:
        self.producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "linger.ms": 5})
        self.topic, self.rate, self.sent, self.probe = topic, 0.0, 0, probe
        self.partitions = partitions
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        budget, last = 0.0, time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            budget += (now - last) * self.rate
            last = now
            while budget >= 1:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                value = json.dumps({"time": stamp, "tag": "e2e"}).encode()
                self.producer.produce(self.topic, value=value,
                                      partition=self.sent % self.partitions)  # fmt: skip
                self.probe.produced(stamp)
                self.sent += 1
                budget -= 1
            self.producer.poll(0.02)
        self.producer.flush(30)
