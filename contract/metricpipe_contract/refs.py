"""Names and labels of everything a pipeline owns (pure).

Every derived name is unique per pipeline and collision-free across namespaces:

- Kafka topic and consumer group `metricpipe.<namespace>.<name>`, default index
  `metricpipe-<namespace>.<name>.metrics`, cluster route objects `mp-<namespace>.<name>`: a
  namespace never contains a dot, so the first dot after the prefix ends the namespace and
  `team/a-x` and `team-a/x` cannot meet (`metricpipe-team.a-x.metrics` and
  `metricpipe-team-a.x.metrics`). The index ends in `.metrics` so that no default index ends in
  `-state`, the suffix of every index's state index (`<index>-state`).
- Cluster route objects longer than a label value (63) keep a readable stem without dots and
  end in 16 hex digits of SHA-256 over `<namespace>/<name>`; the two forms cannot meet (one has
  a dot, the other none).
- Names within the namespace append a fixed suffix to the pipeline's name; the longest name the
  API server admits (`MAX_NAME_LENGTH`, a CEL rule on metadata.name) is computed from
  `DERIVED_NAME_LIMITS`, so no derived name can exceed its Kubernetes limit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar

from .model import API_VERSION, KIND
from .naming import build_consumer_group
from .version import RELEASE, VERSION_LABEL

MANAGED_BY = "metricpipe-operator"
PIPELINE_LABEL = "metricpipe.io/pipeline"
NAMESPACE_LABEL = "metricpipe.io/pipeline-namespace"

LABEL_VALUE_MAX = 63
CONSUMER_SUFFIX = "-consumer"
CONFIG_SUFFIX = "-config"
ROUTE_CONFIGMAP_SUFFIX = "-fluentd-route"

# (what, the name derived from <name>, the Kubernetes limit on it): the pipeline name may be
# at most min(limit - len(suffix)) long.
DERIVED_NAME_LIMITS: tuple[tuple[str, str, int], ...] = (
    ("batch CronJob (Kubernetes appends 11 characters for each Job)", CONSUMER_SUFFIX, 52),
    ("consumer Service (a DNS-1035 label)", CONSUMER_SUFFIX, 63),
    ("labels app.kubernetes.io/instance and metricpipe.io/pipeline", "", LABEL_VALUE_MAX),
    ("consumer Deployment", CONSUMER_SUFFIX, 253),
    ("consumer ConfigMap", CONFIG_SUFFIX, 253),
    ("route ConfigMap", ROUTE_CONFIGMAP_SUFFIX, 253),
)
MAX_NAME_LENGTH = min(limit - len(suffix) for _, suffix, limit in DERIVED_NAME_LIMITS)
# The Service's name must be a DNS-1035 label: a letter first, no dots.
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


def build_name_rules() -> list[dict[str, str]]:
    """CEL rules at the CRD's root on metadata.name (the namespace is not visible there)."""
    binding = min(DERIVED_NAME_LIMITS, key=lambda item: item[2] - len(item[1]))
    return [
        {
            "rule": f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
            "message": f"metadata.name may be at most {MAX_NAME_LENGTH} characters: the "
            f"{binding[0]} is named <name>{binding[1]} and may be at most {binding[2]}",
        },
        {
            "rule": f"self.metadata.name.matches('{NAME_PATTERN}')",
            "message": "metadata.name must start with a lower-case letter and hold only "
            "lower-case letters, digits and '-' (it names the consumer's Service, a DNS-1035 "
            "label)",
        },
    ]


def build_cluster_route_name(namespace: str, name: str) -> str:
    readable = f"mp-{namespace}.{name}"
    if len(readable) <= LABEL_VALUE_MAX:
        return readable
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:16]
    stem = f"mp-{namespace}-{name}".replace(".", "-")[: LABEL_VALUE_MAX - len(digest) - 1]
    return f"{stem.rstrip('-')}-{digest}"


@dataclass(frozen=True)
class PipelineRef:
    """Identity of one MetricPipeline object (archive_refs.ArchiveRef: of a LogArchive)."""

    # what differs for another owning kind: its owner references, its pods' app name and the
    # label naming the owner
    OWNER_API_VERSION: ClassVar[str] = API_VERSION
    OWNER_KIND: ClassVar[str] = KIND
    APP_NAME: ClassVar[str] = "metricpipe-consumer"
    OWNER_LABEL: ClassVar[str] = PIPELINE_LABEL

    namespace: str
    name: str
    uid: str
    generation: int = 0

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def consumer_name(self) -> str:
        return f"{self.name}{CONSUMER_SUFFIX}"

    @property
    def config_name(self) -> str:
        return f"{self.name}{CONFIG_SUFFIX}"

    @property
    def route_configmap_name(self) -> str:
        return f"{self.name}{ROUTE_CONFIGMAP_SUFFIX}"

    @property
    def cluster_route_name(self) -> str:
        """Cluster-scoped fluent-operator objects: unique across namespaces, a label value."""
        return build_cluster_route_name(self.namespace, self.name)

    @property
    def legacy_cluster_route_name(self) -> str:
        """The name before the `.` scheme (shared by team/a-x and team-a/x): removed on sight
        when its owner annotation names this pipeline."""
        return f"mp-{self.namespace}-{self.name}"[:253]

    @property
    def consumer_group(self) -> str:
        return build_consumer_group(self.namespace, self.name)

    def selector_labels(self) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": self.APP_NAME,
            "app.kubernetes.io/instance": self.name,
        }

    def labels(self, component: str) -> dict[str, str]:
        return {
            **self.selector_labels(),
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": "metricpipe",
            "app.kubernetes.io/managed-by": MANAGED_BY,
            VERSION_LABEL: RELEASE,
            self.OWNER_LABEL: self.name,
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
            "apiVersion": self.OWNER_API_VERSION,
            "kind": self.OWNER_KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
