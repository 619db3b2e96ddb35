"""`python -m metricpipe_dashboards`: write the Grafana dashboard and the saved objects.

python -m metricpipe_dashboards --out DIR
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from . import grafana, saved_objects

GRAFANA_FILE: Final = "metricpipe-grafana.json"
SAVED_OBJECTS_FILE: Final = "metricpipe-opensearch-dashboards.ndjson"


def build_outputs() -> dict[str, str]:
    """File name -> content."""
    return {
        GRAFANA_FILE: grafana.render(grafana.build_dashboard()),
        SAVED_OBJECTS_FILE: saved_objects.build_saved_objects().render_ndjson(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m metricpipe_dashboards",
        description="Write metricpipe's Grafana dashboard and OpenSearch Dashboards/Kibana "
        "saved objects.",
    )
    parser.add_argument("--out", type=Path, required=True, help="directory to write into")
    out: Path = parser.parse_args(argv).out
    out.mkdir(parents=True, exist_ok=True)
    for file_name, text in build_outputs().items():
        path = out / file_name
        path.write_text(text)
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
