"""Fixtures shared by every tier."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real data set (METRICPIPE_DATA_DIR, default ../shared/data)."""
    return Path(os.environ.get("METRICPIPE_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture
def unique_name() -> str:
    """A name no other test uses: isolates tests on shared servers (namespaces, topics, indices)."""
    return f"t-{uuid.uuid4().hex[:10]}"


# The real local stack's fixtures (integration and e2e tiers; lazy, so unit tests start nothing).
from exporter_harness import start_exporter  # noqa: E402, F401
from install_harness import identities  # noqa: E402, F401
from node_harness import cordoned_node, node  # noqa: E402, F401
from redis_faults import stack_redis  # noqa: E402, F401
from stack_fixtures import *  # noqa: E402, F403


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/integration or tests/e2e carries its tier's marker, so
    `-m "not integration and not e2e"` selects exactly the tests that start nothing."""
    for item in items:
        tier = item.path.relative_to(REPO_ROOT / "tests").parts[0]
        if tier in ("integration", "e2e"):
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def native_rows_path() -> Path:
    """The archiver's native row maker: METRICPIPE_ARCHIVE_NATIVE_LIB (`make` exports it), or
    built into the cache by hack/build-native.sh when a test runs outside make."""
    configured = os.environ.get("METRICPIPE_ARCHIVE_NATIVE_LIB")
    if configured and Path(configured).is_file():
        return Path(configured)
    built = subprocess.run(["bash", str(REPO_ROOT / "hack" / "build-native.sh")],
                           check=True, capture_output=True, text=True)  # fmt: skip
    return Path(built.stdout.strip())
