"""Names and labels of everything a LogArchive owns (pure).

`ArchiveRef` is a `PipelineRef` (the route and topic machinery take either) whose names cannot
meet a MetricPipeline's in the same namespace:

- topic and consumer group `metricpipe.<namespace>.<name>.archive` (naming.py);
- owner key `<namespace>/<name>.archive` in the topic registry, the locks and the route
  objects' owner annotation: no pipeline is named `<name>.archive` (pipeline names have no dot);
- cluster route objects `mp-<namespace>.<name>.archive` (two dots; a pipeline's have one);
- namespaced children `<name>-archiver` (Deployment, ConfigMap) and `<name>-archive-route`
  (the fluent.conf ConfigMap): no pipeline suffix (`-consumer`, `-config`, `-fluentd-route`)
  ends that way;
- pod labels `app.kubernetes.io/name: metricpipe-archiver` and `metricpipe.io/archive`, so no
  pipeline's selector (or the ResourceManager's `metricpipe.io/pipeline`) takes its pods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .archive_model import API_VERSION, KIND
from .naming import ARCHIVE_SUFFIX, build_archive_group
from .refs import LABEL_VALUE_MAX, PipelineRef, build_cluster_route_name

ARCHIVE_LABEL = "metricpipe.io/archive"
ARCHIVER_SUFFIX = "-archiver"
ARCHIVE_ROUTE_SUFFIX = "-archive-route"
# The archive's name is a directory on HDFS and a label value: a DNS-1123 label (archive.py).
ARCHIVE_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def build_archive_name_rules() -> list[dict[str, str]]:
    """CEL rules at the CRD's root on metadata.name."""
    return [
        {
            "rule": f"self.metadata.name.size() <= {LABEL_VALUE_MAX}",
            "message": f"metadata.name may be at most {LABEL_VALUE_MAX} characters: it is a "
            "label value and a directory of the archive on HDFS",
        },
        {
            "rule": f"self.metadata.name.matches('{ARCHIVE_NAME_PATTERN}')",
            "message": "metadata.name must hold only lower-case letters, digits and '-' and "
            "start and end with a letter or digit (it names the archive's HDFS directory)",
        },
    ]


@dataclass(frozen=True)
class ArchiveRef(PipelineRef):
    """Identity of one LogArchive object."""

    OWNER_API_VERSION: ClassVar[str] = API_VERSION
    OWNER_KIND: ClassVar[str] = KIND
    APP_NAME: ClassVar[str] = "metricpipe-archiver"
    OWNER_LABEL: ClassVar[str] = ARCHIVE_LABEL

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}{ARCHIVE_SUFFIX}"

    @property
    def consumer_name(self) -> str:
        return f"{self.name}{ARCHIVER_SUFFIX}"

    @property
    def config_name(self) -> str:
        return f"{self.name}{ARCHIVER_SUFFIX}"

    @property
    def route_configmap_name(self) -> str:
        return f"{self.name}{ARCHIVE_ROUTE_SUFFIX}"

    @property
    def cluster_route_name(self) -> str:
        return build_cluster_route_name(self.namespace, f"{self.name}{ARCHIVE_SUFFIX}")

    @property
    def consumer_group(self) -> str:
        return build_archive_group(self.namespace, self.name)
