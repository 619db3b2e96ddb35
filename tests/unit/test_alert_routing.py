"""metricpipe's alerts through kube-prometheus-stack's Alertmanager routing, checked by the real
amtool (Debian's prometheus-alertmanager; `amtool config routes test`, no server).

The routing tree is kube-prometheus-stack's default (route grouped by `namespace`, receiver
`null`, Watchdog to `null`, its inhibition rules) with the two routes a platform team adds to it:
`severity="critical"` to a pager and `severity="warning"` to a ticket queue. Each alert's
labels are those its rule carries (`rules.build_alerting_rules`) plus those of a firing series.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from metricpipe_devstack.settings import StackSettings
from metricpipe_exporters import rules

PAGER, TICKETS, NULL = "oncall-pager", "team-tickets", "null"

KUBE_PROMETHEUS_STACK_ROUTING: dict[str, Any] = {
    "global": {"resolve_timeout": "5m"},
    "inhibit_rules": [
        {"source_matchers": ["severity = critical"],
         "target_matchers": ["severity =~ warning|info"], "equal": ["namespace", "alertname"]},
        {"source_matchers": ["severity = warning"], "target_matchers": ["severity = info"],
         "equal": ["namespace", "alertname"]},
        {"source_matchers": ["alertname = InfoInhibitor"], "target_matchers": ["severity = info"],
         "equal": ["namespace"]},
        {"target_matchers": ["alertname = InfoInhibitor"]},
    ],
    "route": {
        "group_by": ["namespace"], "group_wait": "30s", "group_interval": "5m",
        "repeat_interval": "12h", "receiver": NULL,
        "routes": [
            {"receiver": NULL, "matchers": ['alertname = "Watchdog"']},
            # what a platform team adds: one route per severity
            {"receiver": PAGER, "matchers": ['severity = "critical"']},
            {"receiver": TICKETS, "matchers": ['severity = "warning"']},
        ],
    },
    "receivers": [{"name": NULL}, {"name": PAGER}, {"name": TICKETS}],
}  # fmt: skip

# labels of a firing series, per kind of alert (the rules add alertname and severity)
FIRING_LABELS = {
    "pipeline": {"namespace": "shop", "pipeline": "shop/orders"},
    "ExporterDown": {"job": "metricpipe-exporter", "namespace": "metricpipe-system"},
    "LogCache": {"redis": "10.0.0.5:6379", "job": "metricpipe-exporter"},
}


@pytest.fixture(scope="module")
def amtool() -> Path:
    path = StackSettings().alertmanager_bin / "amtool"
    if not path.is_file():
        pytest.fail(f"amtool not found at {path}: run `make stack-deps`")
    return path


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, amtool: Path) -> Path:
    path = tmp_path_factory.mktemp("alertmanager") / "alertmanager.yml"
    path.write_text(yaml.safe_dump(KUBE_PROMETHEUS_STACK_ROUTING, sort_keys=False))
    checked = subprocess.run([str(amtool), "check-config", str(path)], capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return path


def route(amtool: Path, config: Path, labels: dict[str, str]) -> str:
    """The receiver(s) amtool resolves the label set to."""
    words = [f"{key}={value}" for key, value in labels.items()]
    done = subprocess.run([str(amtool), "config", "routes", "test", f"--config.file={config}",
                           *words], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def firing(rule: dict[str, Any]) -> dict[str, str]:
    name = rule["alert"]
    kind = (
        name
        if name == "ExporterDown"
        else "LogCache"
        if name.startswith("LogCache")
        else "pipeline"
    )
    return {"alertname": name, **rule["labels"], **FIRING_LABELS[kind]}


@pytest.mark.parametrize("rule", rules.build_alerting_rules()["rules"], ids=lambda r: r["alert"])
def test_each_alert_reaches_the_receiver_of_its_severity(
    amtool: Path, config: Path, rule: dict[str, Any]
) -> None:
    expected = {"critical": PAGER, "warning": TICKETS}[rule["labels"]["severity"]]
    assert route(amtool, config, firing(rule)) == expected


def test_the_severities_metricpipe_used_before_reach_no_one(amtool: Path, config: Path) -> None:
    """The control: `page`/`ticket` (metricpipe 0.1.0's severities) match no route of this tree
    and end at the default receiver, `null` — what the severities above fix."""
    for severity in ("page", "ticket"):
        labels = {"alertname": "ConsumerStalled", "severity": severity, **FIRING_LABELS["pipeline"]}
        assert route(amtool, config, labels) == NULL
