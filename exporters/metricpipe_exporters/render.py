"""Write the Prometheus rule file or the prometheus-operator manifests to a directory.

python -m metricpipe_exporters.render rules --out DIR
python -m metricpipe_exporters.render manifests --namespace NS --out DIR
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from metricpipe_exporters import rules

RULE_FILE: Final = "metricpipe-rules.yml"
PROMETHEUS_RULE_FILE: Final = "metricpipe-prometheusrule.yaml"
POD_MONITOR_FILE: Final = "metricpipe-consumer-podmonitor.yaml"
SERVICE_MONITOR_FILE: Final = "metricpipe-exporter-servicemonitor.yaml"


def build_outputs(
    command: str, namespace: str, objective: float, runbook_base: str = rules.RUNBOOK_BASE
) -> dict[str, Any]:
    """File name -> document, for one command."""
    if command == "rules":
        return {RULE_FILE: rules.build_rule_file(objective, runbook_base)}
    return {
        PROMETHEUS_RULE_FILE: rules.build_prometheus_rule_manifest(
            namespace, objective, runbook_base=runbook_base
        ),
        POD_MONITOR_FILE: rules.build_pod_monitor(namespace),
        SERVICE_MONITOR_FILE: rules.build_service_monitor(namespace),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m metricpipe_exporters.render",
        description="Write metricpipe's Prometheus rules or prometheus-operator manifests.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("rules", f"the plain Prometheus rule file ({RULE_FILE})"),
        ("manifests", "PrometheusRule, PodMonitor and ServiceMonitor for prometheus-operator"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--out", type=Path, required=True, help="directory to write into")
        command.add_argument(
            "--objective",
            type=float,
            default=0.99,
            help="freshness SLO: share of time freshness stays under target (default 0.99)",
        )
        command.add_argument(
            "--runbook-url-base",
            default=rules.RUNBOOK_BASE,
            help="where docs/runbook.md is served; alerts link to its sections "
            f"(default {rules.RUNBOOK_BASE})",
        )
        if name == "manifests":
            command.add_argument("--namespace", required=True, help="namespace of the objects")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        outputs = build_outputs(args.command, getattr(args, "namespace", ""), args.objective,
                                args.runbook_url_base)  # fmt: skip
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for file_name, document in outputs.items():
        path = out / file_name
        path.write_text(rules.render_yaml(document))
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
