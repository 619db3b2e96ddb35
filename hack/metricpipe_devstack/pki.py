"""The local stack's throwaway certificate authority (openssl CLI): the Kubernetes control
plane's certificates, the kubelet's, and the servers' and clients' of the secured Kafka
listeners."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .errors import StackError

APISERVER_SANS = (
    "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
    "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
)


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError("kube-pki", f"openssl {args[0]} failed: {result.stderr.strip()}")


def _issue(pki: Path, name: str, subject: str, *, sans: str | None = None, days: int = 30) -> None:
    """Create <name>.key (unencrypted PKCS#8) and <name>.crt signed by the CA in pki/."""
    _openssl("genrsa", "-out", f"{name}.key", "2048", cwd=pki)
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=pki)
    ext = pki / f"{name}.ext"
    lines = ["basicConstraints=CA:FALSE", "keyUsage=digitalSignature,keyEncipherment"]
    lines.append("extendedKeyUsage=serverAuth,clientAuth")
    if sans:
        lines.append(f"subjectAltName={sans}")
    ext.write_text("\n".join(lines) + "\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        str(days),
        "-sha256",
        "-extfile",
        ext.name,
        "-out",
        f"{name}.crt",
        cwd=pki,
    )


def ensure_pki(pki: Path, *, extra_sans: str = "") -> None:
    """CA, apiserver serving cert, admin client cert (system:masters), service-account keys.
    extra_sans: more subjectAltNames of the API server (the pod bridge's host address)."""
    if (pki / "sa.pub").exists():
        return
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("genrsa", "-out", "ca.key", "2048", cwd=pki)
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-subj",
        "/CN=metricpipe-dev-ca",
        "-days",
        "30",
        "-sha256",
        "-out",
        "ca.crt",
        cwd=pki,
    )
    sans = f"{APISERVER_SANS},{extra_sans}" if extra_sans else APISERVER_SANS
    _issue(pki, "apiserver", "/CN=kube-apiserver", sans=sans)
    _issue(pki, "admin", "/O=system:masters/CN=metricpipe-admin")
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    for key in pki.glob("*.key"):
        key.chmod(0o600)


def build_kubeconfig(
    server: str, pki: Path, *, user: str = "metricpipe-admin", cert: str = "admin"
) -> str:
    """A kubeconfig authenticating with the client certificate <cert>.crt/.key of pki/: by
    default the admin's (group system:masters)."""
    return (
        "apiVersion: v1\nkind: Config\n"
        "clusters:\n- name: metricpipe-dev\n  cluster:\n"
        f"    server: {server}\n    certificate-authority: {pki / 'ca.crt'}\n"
        f"users:\n- name: {user}\n  user:\n"
        f"    client-certificate: {pki / f'{cert}.crt'}\n    client-key: {pki / f'{cert}.key'}\n"
        "contexts:\n- name: metricpipe-dev\n  context:\n"
        f"    cluster: metricpipe-dev\n    user: {user}\n"
        "current-context: metricpipe-dev\n"
    )


def ensure_node_pki(pki: Path, node_name: str, host_address: str) -> None:
    """The kubelet's serving cert (what the API server verifies for logs/exec, so its SANs are
    the node's InternalIP and name) and its client cert: user system:node:<name> in group
    system:nodes, which the Node authorizer admits. Made once per CA (ensure_pki first)."""
    if not (pki / "ca.crt").exists():
        raise StackError("kube-pki", f"no CA in {pki}: the API server's ensure_pki runs first")
    if not (pki / "kubelet.crt").exists():
        _issue(pki, "kubelet", f"/CN={node_name}", sans=f"IP:{host_address},DNS:{node_name}")
    if not (pki / "kubelet-client.crt").exists():
        _issue(pki, "kubelet-client", f"/O=system:nodes/CN=system:node:{node_name}")
    for key in pki.glob("kubelet*.key"):
        key.chmod(0o600)


def build_node_kubeconfig(server: str, pki: Path) -> str:
    """The kubelet's kubeconfig: its own client certificate (system:node:<name>)."""
    return build_kubeconfig(server, pki, user="kubelet", cert="kubelet-client")


def issue_certificate(
    pki: Path, name: str, common_name: str, *, sans: str | None = None, days: int = 30
) -> tuple[Path, Path]:
    """A certificate for a server or client, signed by the stack's CA (ensure_pki first):
    (<name>.crt, <name>.key) in pki/, the key readable by its owner only. Made once; a
    certificate of the same name is reissued when days differs from its validity."""
    if not (pki / "ca.crt").exists():
        raise StackError("stack-pki", f"no CA in {pki}: run ensure_pki first")
    crt, key = pki / f"{name}.crt", pki / f"{name}.key"
    if not crt.exists():
        _issue(pki, name, f"/CN={common_name}", sans=sans, days=days)
        key.chmod(0o600)
    return crt, key
