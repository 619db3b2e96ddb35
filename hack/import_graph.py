"""`make lint`'s check of the product packages' import graph (dev tooling, not shipped).

The layering: the contract imports none of the others; the operator and the consumers import
only the contract; the exporters import the contract and the consumers (their sink reader).
Nothing shipped imports the dev tooling (metricpipe_devstack, metricpipe_demo). Every import
is read from the source (`ast`, function bodies included), so an import inside a function
cannot hide a cycle. Exit status 1 with each offending import (file:line) and the cycle it
closes, if any.

    python hack/import_graph.py [repository root]
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

PACKAGES = {  # package -> its directory under the repository root
    "metricpipe_contract": "contract",
    "metricpipe_operator": "operator",
    "metricpipe_consumers": "consumers",
    "metricpipe_exporters": "exporters",
}
ALLOWED: Mapping[str, frozenset[str]] = {
    "metricpipe_contract": frozenset(),
    "metricpipe_operator": frozenset({"metricpipe_contract"}),
    "metricpipe_consumers": frozenset({"metricpipe_contract"}),
    "metricpipe_exporters": frozenset({"metricpipe_contract", "metricpipe_consumers"}),
}
DEV_TOOLING = frozenset({"metricpipe_devstack", "metricpipe_demo", "metricpipe_dashboards"})


@dataclass(frozen=True)
class Import:
    source: str  # the importing package
    target: str  # the imported top-level package
    where: str  # file:line


def find_imports(root: Path) -> Iterator[Import]:
    """Every absolute import of a metricpipe package from a product package's modules."""
    for package, directory in PACKAGES.items():
        for path in sorted((root / directory / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top.startswith("metricpipe_") and top != package:
                        where = f"{path.relative_to(root)}:{node.lineno}"
                        yield Import(package, top, where)


def find_cycle(edges: Mapping[str, set[str]]) -> list[str] | None:
    """One cycle of the package graph (its packages, the first repeated at the end), or None."""
    state: dict[str, str] = {}  # package -> "open" while on the path, "done" after

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for following in sorted(edges.get(node, ())):
            if state.get(following) == "open":
                return [*path[path.index(following) :], following]
            if following not in state:
                found = visit(following, [*path, following])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(edges):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def check(root: Path) -> list[str]:
    """The problems found: disallowed imports and a cycle, each a line to print."""
    problems: list[str] = []
    edges: dict[str, set[str]] = {}
    for found in find_imports(root):
        edges.setdefault(found.source, set()).add(found.target)
        if found.target in DEV_TOOLING:
            problems.append(f"{found.where}: {found.source} imports dev tooling {found.target}")
        elif found.target not in ALLOWED.get(found.source, frozenset()):
            allowed = ", ".join(sorted(ALLOWED.get(found.source, ()))) or "nothing"
            problems.append(f"{found.where}: {found.source} imports {found.target} "
                            f"(it may import {allowed})")  # fmt: skip
    cycle = find_cycle(edges)
    if cycle:
        problems.append("import cycle: " + " -> ".join(cycle))
    return problems


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    problems = check(root)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"import graph: {len(problems)} problem(s); the layering is in {__file__}",
              file=sys.stderr)  # fmt: skip
        return 1
    print("import graph: no cycle; contract <- operator, contract <- consumers <- exporters")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
