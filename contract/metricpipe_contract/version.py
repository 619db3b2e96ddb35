"""The release of metricpipe: the images' tag, and the `app.kubernetes.io/version` label on every
object the operator, the chart and the manifests make (tests/unit/test_version.py checks it
against pyproject.toml and the manifests)."""

from __future__ import annotations

from typing import Final

RELEASE: Final = "0.1.0"
VERSION_LABEL: Final = "app.kubernetes.io/version"
