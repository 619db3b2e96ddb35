"""etcd 3.6, kube-apiserver, kube-controller-manager and kube-scheduler as local processes."""

from __future__ import annotations

import secrets
import warnings
from pathlib import Path

import requests
from urllib3.exceptions import InsecureRequestWarning

from .base import Component, Probe, http_get_json
from .pki import build_kubeconfig, ensure_pki

# The control plane's components serve self-signed certificates of their own, which the
# health probes do not verify. Filtered once for the process: the probes run in threads, and
# catch_warnings in one thread restores the filters under another.
warnings.filterwarnings("ignore", category=InsecureRequestWarning)

CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "job-controller",
    "cronjob-controller",
    "ttl-after-finished-controller",
    "serviceaccount-controller",
    "node-lifecycle-controller",
    "taint-eviction-controller",
    "pod-garbage-collector-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    "disruption-controller",
)
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


class Etcd(Component):
    name = "etcd"
    startup_timeout = 60.0

    def port(self) -> int:
        return self.settings.ports.etcd

    def listen_ports(self) -> list[int]:
        return [self.settings.ports.etcd, self.settings.ports.etcd_peer]

    def bind_host(self) -> str:
        return "127.0.0.1"  # only the API server talks to etcd

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.ports.etcd}"

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.settings.ports.etcd_peer}"
        return [
            str(self.settings.etcd_bin),
            "--name=metricpipe-dev",
            f"--data-dir={self.data_dir / 'member-data'}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=metricpipe-dev={peer}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]

    def probe(self) -> Probe:
        try:
            status, health = http_get_json(f"{self.url}/health")
            _, version = http_get_json(f"{self.url}/version")
        except requests.RequestException as error:
            return Probe(False, f"unreachable: {type(error).__name__}")
        ok = status == 200 and isinstance(health, dict) and health.get("health") == "true"
        release = version.get("etcdserver", "?") if isinstance(version, dict) else "?"
        return Probe(ok, "healthy" if ok else f"health={health}", release)


class _KubeComponent(Component):
    @property
    def pki(self) -> Path:
        return self.settings.pki_dir

    @property
    def kubeconfig(self) -> Path:
        return self.settings.stack_dir / "kube" / "admin.kubeconfig"

    @property
    def apiserver_url(self) -> str:
        return f"https://{self.settings.host_address}:{self.settings.ports.apiserver}"

    def _probe_https(self, port: int, path: str = "/healthz") -> Probe:
        try:
            # a self-signed certificate of the component's own: nothing to verify (see
            # the filter at the top)
            response = requests.get(
                f"https://127.0.0.1:{port}{path}",
                timeout=3,
                verify=False,  # noqa: S501
            )
        except requests.RequestException as error:
            return Probe(False, f"unreachable: {type(error).__name__}")
        ok = response.status_code == 200 and response.text.strip() == "ok"
        return Probe(ok, "healthy" if ok else f"{path} -> {response.status_code}", self._version())

    def _version(self) -> str:
        try:
            _, body = http_get_json(
                f"{self.apiserver_url}/version",
                verify=str(self.pki / "ca.crt"),
                cert=(str(self.pki / "admin.crt"), str(self.pki / "admin.key")),
            )
        except requests.RequestException:
            return "?"
        return str(body.get("gitVersion", "?")) if isinstance(body, dict) else "?"


class KubeApiserver(_KubeComponent):
    name = "kube-apiserver"
    startup_timeout = 120.0

    def port(self) -> int:
        return self.settings.ports.apiserver

    def prepare(self) -> None:
        ensure_pki(self.pki, extra_sans=f"IP:{self.settings.host_address}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig.write_text(build_kubeconfig(self.apiserver_url, self.pki))
        tokens = self.settings.stack_dir / "kube" / "tokens.csv"
        if not tokens.exists():
            tokens.write_text(
                f'{secrets.token_hex(24)},metricpipe-admin-token,admin-token,"system:masters"\n'
            )
            tokens.chmod(0o600)

    def argv(self) -> list[str]:
        pki = self.pki
        return [
            str(self.settings.kube_bin / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.settings.ports.etcd}",
            f"--bind-address={self.bind_host()}",
            f"--advertise-address={self.bind_host()}",
            f"--secure-port={self.settings.ports.apiserver}",
            f"--cert-dir={self.data_dir}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={self.settings.stack_dir / 'kube' / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC",
            "--service-cluster-ip-range=10.96.0.0/16",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            "--endpoint-reconciler-type=none",
            "--kubelet-preferred-address-types=InternalIP",
            # logs/exec/port-forward: the API server authenticates to the kubelet with the admin
            # client certificate and verifies the kubelet's serving certificate (the stack's CA)
            f"--kubelet-client-certificate={pki / 'admin.crt'}",
            f"--kubelet-client-key={pki / 'admin.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--allow-privileged=false",
            "--profiling=false",
            "--v=1",
        ]

    def probe(self) -> Probe:
        try:
            response = requests.get(
                f"{self.apiserver_url}/readyz",
                timeout=3,
                verify=str(self.pki / "ca.crt"),
                cert=(str(self.pki / "admin.crt"), str(self.pki / "admin.key")),
            )
        except (requests.RequestException, OSError) as error:
            return Probe(False, f"unreachable: {type(error).__name__}")
        ok = response.status_code == 200
        return Probe(ok, "ready" if ok else f"/readyz -> {response.status_code}", self._version())

    def env(self) -> dict[str, str]:
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "KUBECTL": str(self.settings.kube_bin / "kubectl"),  # the pinned client (kustomize)
            "KUBE_APISERVER_URL": self.apiserver_url,
            "KUBE_CA_FILE": str(self.pki / "ca.crt"),
            "KUBE_SERVICE_ACCOUNT_ISSUER": SERVICE_ACCOUNT_ISSUER,
            "ETCD_URL": f"http://127.0.0.1:{self.settings.ports.etcd}",
        }


class _ControlLoop(_KubeComponent):
    """kube-controller-manager and kube-scheduler: admin kubeconfig, loopback HTTPS health."""

    binary: str
    startup_timeout = 90.0

    def bind_host(self) -> str:
        return "127.0.0.1"

    def port(self) -> int:
        raise NotImplementedError

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def extra_args(self) -> list[str]:
        return []

    def argv(self) -> list[str]:
        kubeconfig = str(self.kubeconfig)
        return [
            str(self.settings.kube_bin / self.binary),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.port()}",
            f"--cert-dir={self.data_dir}",
            *self.extra_args(),
            "--v=1",
        ]

    def probe(self) -> Probe:
        return self._probe_https(self.port())


class KubeControllerManager(_ControlLoop):
    name = "kube-controller-manager"
    binary = "kube-controller-manager"

    def port(self) -> int:
        return self.settings.ports.controller_manager

    def extra_args(self) -> list[str]:
        return [
            f"--root-ca-file={self.pki / 'ca.crt'}",
            f"--service-account-private-key-file={self.pki / 'sa.key'}",
            "--use-service-account-credentials=false",
            f"--controllers={','.join(CONTROLLERS)}",
            "--node-monitor-grace-period=50s",
        ]


class KubeScheduler(_ControlLoop):
    name = "kube-scheduler"
    binary = "kube-scheduler"

    def port(self) -> int:
        return self.settings.ports.scheduler
