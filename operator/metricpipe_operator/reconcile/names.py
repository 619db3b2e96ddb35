"""Names and labels of everything a pipeline owns (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..api.model import API_VERSION, KIND

MANAGED_BY = "metricpipe-operator"
PIPELINE_LABEL = "metricpipe.io/pipeline"
NAMESPACE_LABEL = "metricpipe.io/pipeline-namespace"


@dataclass(frozen=True)
class PipelineRef:
    """Identity of one MetricPipeline object."""

    namespace: str
    name: str
    uid: str
    generation: int = 0

    @property
    def consumer_name(self) -> str:
        return f"{self.name}-consumer"

    @property
    def config_name(self) -> str:
        return f"{self.name}-config"

    @property
    def route_configmap_name(self) -> str:
        return f"{self.name}-fluentd-route"

    @property
    def cluster_route_name(self) -> str:
        """Cluster-scoped fluent-operator objects: unique across namespaces."""
        return f"mp-{self.namespace}-{self.name}"[:253]

    @property
    def consumer_group(self) -> str:
        return f"metricpipe.{self.namespace}.{self.name}"

    def selector_labels(self) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": "metricpipe-consumer",
            "app.kubernetes.io/instance": self.name,
        }

    def labels(self, component: str) -> dict[str, str]:
        return {
            **self.selector_labels(),
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": "metricpipe",
            "app.kubernetes.io/managed-by": MANAGED_BY,
            PIPELINE_LABEL: self.name,
        }

    def selector(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(self.selector_labels().items()))

    def owned_metadata(self, name: str, component: str) -> dict[str, Any]:
        """Metadata of a namespaced child: labels and a controller owner reference, so the
        garbage collector removes it with the pipeline."""
        return {
            "name": name,
            "namespace": self.namespace,
            "labels": self.labels(component),
            "ownerReferences": [self.owner_reference()],
        }

    def owner_reference(self) -> dict[str, object]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
