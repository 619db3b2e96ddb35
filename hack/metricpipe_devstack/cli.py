"""`python -m metricpipe_devstack up|down|status|env` — the Makefile's stack targets call this."""

from __future__ import annotations

import argparse
import sys

from .errors import StackError
from .settings import StackSettings
from .stack import stack_down, stack_status, stack_up


def _print_status(settings: StackSettings) -> bool:
    rows = stack_status(settings)
    headers = ("component", "version", "pid", "port", "health")
    widths = {h: max(len(h), *(len(r[h]) for r in rows)) for h in headers}
    print("  ".join(h.upper().ljust(widths[h]) for h in headers))
    for row in rows:
        print("  ".join(row[h].ljust(widths[h]) for h in headers))
    return all(r["health"].startswith("healthy") for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="metricpipe-devstack", description=__doc__)
    parser.add_argument("command", choices=("up", "down", "status", "env"))
    parser.add_argument(
        "--no-fetch", action="store_true", help="skip the build/fetch step (artifacts cached)"
    )
    args = parser.parse_args(argv)
    settings = StackSettings()
    try:
        if args.command == "up":
            stack_up(settings, fetch=not args.no_fetch)
            _print_status(settings)
        elif args.command == "down":
            stack_down(settings)
        elif args.command == "status":
            return 0 if _print_status(settings) else 1
        else:
            print(settings.env_file.read_text() if settings.env_file.exists() else "", end="")
    except StackError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
