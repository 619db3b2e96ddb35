"""`python -m metricpipe_operator`: run the operator (Kopf) with the handlers of this package."""

from __future__ import annotations

import argparse
import asyncio
import sys

import kopf

from metricpipe_contract.logs import configure_logging

from . import handlers  # noqa: F401  (registers the handlers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="metricpipe-operator", description=__doc__)
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="watch only these namespaces (default: the whole cluster)",
    )
    parser.add_argument(
        "--liveness", default="http://127.0.0.1:8080/healthz", help="liveness endpoint URL"
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    asyncio.run(
        kopf.operator(
            standalone=True,
            clusterwide=not args.namespace,
            namespaces=list(args.namespace),
            liveness_endpoint=args.liveness,
            # the repairs of cluster-scoped children look only at pipelines served here
            memo=kopf.Memo(namespaces=frozenset(args.namespace)),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
