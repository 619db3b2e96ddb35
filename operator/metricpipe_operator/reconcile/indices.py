"""One pipeline per sink index: the indices every MetricPipeline wants or uses, and the check
(pure) that refuses an index another pipeline has.

A pipeline writes two indices, `<index>` and `<index>-state`. Default indices never meet (see
the contract's `naming.py`); explicit `sink.index` values are checked against every
MetricPipeline the operator can list, in every namespace. A pipeline is refused an index that
another pipeline uses now (`status.sinkIndex`, written once the operator accepted it there), or
that an older pipeline (creation time, then namespace/name) wants: of two new pipelines asking
for the same index, the younger gives way, and a running pipeline is never displaced by a later
edit of another one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException
from pydantic import ValidationError
from urllib3.exceptions import HTTPError

from metricpipe_contract.model import GROUP, PLURAL, VERSION, MetricPipelineSpec
from metricpipe_contract.naming import build_index_names

from ..errors import KubernetesApiError


@dataclass(frozen=True)
class IndexClaim:
    pipeline: str  # namespace/name
    created: str  # metadata.creationTimestamp (RFC 3339, sorts as text)
    wants: tuple[str, ...]  # the indices its spec names
    uses: tuple[str, ...] = ()  # the indices the operator accepted it for (status.sinkIndex)

    @property
    def seniority(self) -> tuple[str, str]:
        return (self.created, self.pipeline)


def build_index_claim(obj: dict[str, Any]) -> IndexClaim | None:
    """The claim of one MetricPipeline object (None when its spec does not parse)."""
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    try:
        spec = MetricPipelineSpec.model_validate(obj.get("spec") or {})
    except ValidationError:
        return None
    used = status.get("sinkIndex")
    return IndexClaim(
        pipeline=f"{namespace}/{name}",
        created=str(meta.get("creationTimestamp") or ""),
        wants=build_index_names(spec.index_name(namespace, name)),
        uses=build_index_names(used) if isinstance(used, str) and used else (),
    )


def decide_index_conflict(mine: IndexClaim, others: Iterable[IndexClaim]) -> str | None:
    """Why this pipeline may not write its index, naming the pipeline that has it; or None."""
    for other in sorted(others, key=lambda claim: claim.seniority):
        if other.pipeline == mine.pipeline:
            continue
        in_use = set(mine.wants) & set(other.uses)
        wanted = set(mine.wants) & set(other.wants) if other.seniority < mine.seniority else set()
        shared = sorted(in_use or wanted)
        if shared:
            how = "writes to" if in_use else "was created earlier and asks for"
            return (
                f"pipeline {other.pipeline} {how} index {shared[0]}; set spec.sink.index to "
                "another name (each index, and its '-state' companion, has one pipeline)"
            )
    return None


def fetch_index_claims(api_client: client.ApiClient, namespace: str) -> list[IndexClaim]:
    """Every MetricPipeline in the cluster (the operator's ClusterRole may list them); only
    those of `namespace` when the operator may list no further (a namespaced install)."""
    api = client.CustomObjectsApi(api_client)
    try:
        try:
            listed = api.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        except ApiException as error:
            if error.status != HTTPStatus.FORBIDDEN:
                raise
            listed = api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    except (ApiException, HTTPError) as error:
        what = f"HTTP {getattr(error, 'status', '')} {getattr(error, 'reason', '')}".strip()
        raise KubernetesApiError(f"listing MetricPipelines: {what}") from error
    items: list[dict[str, Any]] = listed.get("items") or [] if isinstance(listed, dict) else []
    claims = (build_index_claim(obj) for obj in items)
    return [claim for claim in claims if claim is not None]


def decide_index_refusal(
    namespace: str, name: str, index: str, claims: list[IndexClaim]
) -> str | None:
    """Why pipeline namespace/name may not write `index` (pure), given every pipeline's claim
    (its own included: its creation time comes from there)."""
    key = f"{namespace}/{name}"
    own = next((claim for claim in claims if claim.pipeline == key), None)
    created = own.created if own is not None else "~"  # not listed yet: the youngest
    mine = IndexClaim(key, created, build_index_names(index))
    return decide_index_conflict(mine, claims)
