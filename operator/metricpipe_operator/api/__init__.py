"""The MetricPipeline API: the Python model is the one source of truth; the CRD is generated."""

from metricpipe_contract.model import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    MetricPipelineSpec,
)

__all__ = ["API_VERSION", "GROUP", "KIND", "PLURAL", "VERSION", "MetricPipelineSpec"]
