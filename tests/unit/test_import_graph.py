"""hack/import_graph.py, run as `make lint` runs it: on this repository (no problem), and on
small trees written here with the faults it must catch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHECK = REPO / "hack" / "import_graph.py"


def run_check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHECK), str(root)], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip


def write_tree(root: Path, modules: dict[str, str]) -> Path:
    """modules: path under root -> source; every package gets its __init__.py."""
    for directory, package in (("contract", "metricpipe_contract"),
                               ("operator", "metricpipe_operator"),
                               ("consumers", "metricpipe_consumers"),
                               ("exporters", "metricpipe_exporters")):  # fmt: skip
        (root / directory / package).mkdir(parents=True)
        (root / directory / package / "__init__.py").write_text("")
    for path, source in modules.items():
        (root / path).write_text(source)
    return root


def test_this_repository_has_no_cycle_and_keeps_the_layering() -> None:
    done = run_check(REPO)
    assert done.returncode == 0, done.stderr
    assert "no cycle" in done.stdout


def test_a_cycle_through_an_import_inside_a_function_is_found(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {
        "operator/metricpipe_operator/a.py": "from metricpipe_contract.model import X\n",
        "contract/metricpipe_contract/model.py":
            "def late():\n    import metricpipe_operator.a\n",
    })  # fmt: skip
    done = run_check(root)
    assert done.returncode == 1
    assert (
        "contract/metricpipe_contract/model.py:2: metricpipe_contract imports "
        "metricpipe_operator (it may import nothing)" in done.stderr
    )
    assert (
        "import cycle: metricpipe_contract -> metricpipe_operator -> metricpipe_contract"
        in done.stderr
    )


def test_a_layer_skipped_and_dev_tooling_are_refused(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {
        "consumers/metricpipe_consumers/a.py": "from metricpipe_exporters import names\n",
        "exporters/metricpipe_exporters/b.py": "import metricpipe_devstack.env\n",
    })  # fmt: skip
    done = run_check(root)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert (
        "consumers/metricpipe_consumers/a.py:1: metricpipe_consumers imports "
        "metricpipe_exporters (it may import metricpipe_contract)"
    ) in lines
    assert (
        "exporters/metricpipe_exporters/b.py:1: metricpipe_exporters imports dev tooling "
        "metricpipe_devstack"
    ) in lines
    assert not any(line.startswith("import cycle") for line in lines)  # no edge closes one
