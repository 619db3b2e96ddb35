"""The operator's discovery against the real API server: kinds that are not installed (a cluster
without fluent-operator) and kinds installed after start-up."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from kubernetes import client

from metricpipe_operator.reconcile.kubeapply import KubeApplier


def test_a_missing_kind_is_reported_again_and_again_without_failing(
    kube: client.ApiClient,
) -> None:
    # kubernetes' own discoverer raised KeyError('resources') on the first refresh after a
    # miss (seen in `make demo`, where fluent-operator is not installed)
    applier = KubeApplier(kube)
    for _ in range(3):
        assert applier.has_kind("fluentd.fluent.io/v1alpha1", "NoSuchKind") is False
        assert applier.has_kind("metricpipe.io/v1alpha1", "NoSuchKindEither") is False
    assert applier.has_kind("apps/v1", "Deployment") is True
    assert applier.has_kind("metricpipe.io/v1alpha1", "MetricPipeline") is True


def test_concurrent_lookups_with_misses_do_not_break_discovery(kube: client.ApiClient) -> None:
    """Kopf runs handlers in threads that share one applier; in `make demo` two pipelines
    reconciled at once and one failed with KeyError('resources') inside kubernetes' discoverer."""
    for _ in range(5):
        applier = KubeApplier(kube)
        kinds = [("fluentd.fluent.io/v1alpha1", "ClusterOutput"), ("apps/v1", "Deployment"),
                 ("metricpipe.io/v1alpha1", "MetricPipeline"), ("v1", "ConfigMap")] * 4  # fmt: skip
        with ThreadPoolExecutor(max_workers=8) as pool:
            found = list(pool.map(lambda k, a=applier: a.has_kind(*k), kinds))
        assert found[1:4] == [True, True, True]
