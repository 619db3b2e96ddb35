"""From a pod spec to what runs locally (pure): argv, env, files of volumes, ports, probes.

A container sees its volumes at their mount paths; a local process cannot, so every env value
and argument that names a path under a mount is rewritten to the volume's local directory. Each
declared container port gets a free loopback port of its own (two replicas of one Deployment
would otherwise collide), and env values that spell the container port are rewritten to it.
What cannot run faithfully here fails the container with a reason, as a kubelet would.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PASS_THROUGH_ENV = ("PATH", "LANG", "LC_ALL", "JAVA_HOME", "VIRTUAL_ENV", "TZ")
TOKEN_FILE = "token"  # noqa: S105 - a file name
SERVICE_ACCOUNT_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
KUBECONFIG_FILE = "kubeconfig"
_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")

# (kind, namespace, name) -> its data (values decoded to bytes), or None when it does not exist
Lookup = Callable[[str, str, str], Mapping[str, bytes] | None]


class PlanError(Exception):
    """The container cannot start: `reason` as a kubelet would put it in the waiting state."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason, self.message = reason, message


@dataclass(frozen=True)
class Probe:
    kind: str  # httpGet | tcpSocket
    port: int  # the local port
    path: str
    initial_delay: float
    period: float
    timeout: float
    failure_threshold: int
    success_threshold: int = 1


@dataclass(frozen=True)
class ContainerPlan:
    name: str
    image: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    ports: Mapping[str, int]  # port name (or number as text) -> local port
    readiness: Probe | None
    liveness: Probe | None
    termination_message: Path | None = None  # local file behind terminationMessagePath
    startup: Probe | None = None  # liveness and readiness wait until it has succeeded


@dataclass(frozen=True)
class PodPlan:
    namespace: str
    name: str
    uid: str
    restart_policy: str  # Always | OnFailure | Never
    volumes: Mapping[str, Mapping[str, bytes]]  # volume name -> relative file -> content
    containers: tuple[ContainerPlan, ...]


def list_declared_ports(pod: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(container name, containerPort) of every declared port, for the shell to map."""
    return [
        (c["name"], int(p["containerPort"]))
        for c in pod["spec"].get("containers", [])
        for p in c.get("ports") or []
    ]


@dataclass(frozen=True)
class Host:
    """What the local machine gives a pod."""

    pod_dir: Path
    ports: Mapping[tuple[str, int], int]  # (container, containerPort) -> local port
    python: str  # the interpreter a container command 'python' means
    local_images: tuple[str, ...]  # image prefixes that run from the local install
    inherited: Mapping[str, str]  # the agent's environment (PASS_THROUGH_ENV is taken from it)
    api_server: str = "https://127.0.0.1:6443"  # where in-cluster clients reach the API


def build_pod_plan(pod: Mapping[str, Any], lookup: Lookup, host: Host) -> PodPlan:
    meta, spec = pod["metadata"], pod["spec"]
    volumes = {v["name"]: _volume_files(v, pod, lookup, host) for v in spec.get("volumes") or []}
    containers = tuple(_container_plan(c, pod, lookup, host) for c in spec.get("containers", []))
    return PodPlan(
        namespace=meta["namespace"], name=meta["name"], uid=meta["uid"],
        restart_policy=spec.get("restartPolicy", "Always"), volumes=volumes,
        containers=containers,
    )  # fmt: skip


def _volume_files(
    volume: Mapping[str, Any], pod: Mapping[str, Any], lookup: Lookup, host: Host
) -> Mapping[str, bytes]:
    if "emptyDir" in volume:
        return {}
    if "projected" in volume:
        files: dict[str, bytes] = {}
        for source in volume["projected"].get("sources") or []:
            files.update(_projected(source, pod, lookup))
        if TOKEN_FILE in files:  # a service account's credentials: a kubeconfig beside them
            files[KUBECONFIG_FILE] = build_kubeconfig(
                host.api_server, host.pod_dir / "volumes" / volume["name"]
            ).encode()
        return files
    return _source_files(volume, pod["metadata"]["namespace"], lookup)


def _source_files(source: Mapping[str, Any], namespace: str, lookup: Lookup) -> Mapping[str, bytes]:
    """A configMap or secret volume, or such a source of a projected volume."""
    for kind, key in (("configMap", "name"), ("secret", "secretName")):
        if kind in source:
            ref = source[kind]
            name = ref.get(key) or ref.get("name")
            data = lookup(kind, namespace, name)
            if data is None:
                if ref.get("optional"):
                    return {}
                raise PlanError("CreateContainerConfigError", f"{kind} {name!r} not found")
            items = ref.get("items")
            if not items:
                return dict(data)
            return {i["path"]: data[i["key"]] for i in items if i["key"] in data}
    kinds = sorted(set(source) - {"name"})
    raise PlanError(
        "CreateContainerConfigError",
        f"volume source {kinds} not supported by the dev node agent (configMap, secret, "
        "emptyDir, and projected serviceAccountToken/configMap/secret/downwardAPI are)",
    )


def _projected(
    source: Mapping[str, Any], pod: Mapping[str, Any], lookup: Lookup
) -> dict[str, bytes]:
    if "serviceAccountToken" in source:
        account = pod["spec"].get("serviceAccountName") or "default"
        token = lookup("serviceAccountToken", pod["metadata"]["namespace"], account)
        if token is None:
            raise PlanError("CreateContainerConfigError", f"no token for service account {account}")
        return {source["serviceAccountToken"]["path"]: token["token"]}
    if "downwardAPI" in source:
        items = source["downwardAPI"].get("items") or []
        if any("fieldRef" not in i for i in items):
            raise PlanError("CreateContainerConfigError", "downwardAPI: only fieldRef items")
        return {i["path"]: _field(i["fieldRef"]["fieldPath"], pod).encode() for i in items}
    return dict(_source_files(source, pod["metadata"]["namespace"], lookup))


def build_kubeconfig(server: str, directory: Path) -> str:
    """In-cluster credentials as a kubeconfig: clients that cannot read the fixed in-cluster
    paths (a local process cannot have them) find the same identity through KUBECONFIG."""
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "pod",
        "clusters": [{"name": "local", "cluster": {
            "server": server, "certificate-authority": str(directory / "ca.crt")}}],
        "users": [{"name": "pod", "user": {"tokenFile": str(directory / TOKEN_FILE)}}],
        "contexts": [{"name": "pod", "context": {"cluster": "local", "user": "pod"}}],
    }, indent=2)  # fmt: skip


def _container_plan(
    container: Mapping[str, Any], pod: Mapping[str, Any], lookup: Lookup, host: Host
) -> ContainerPlan:
    name, image = container["name"], container.get("image", "")
    pod_dir, local_images, host_ports = host.pod_dir, host.local_images, host.ports
    if not any(image.startswith(prefix) for prefix in local_images):
        raise PlanError("ErrImageNotLocal", f"image {image!r} is not one this node agent runs "
                        f"locally (prefixes {list(local_images)})")  # fmt: skip
    command = list(container.get("command") or [])
    if not command:
        raise PlanError(
            "CreateContainerConfigError", "no command: image entrypoints are unknown locally"
        )
    mounts = {m["mountPath"].rstrip("/") or "/": pod_dir / "volumes" / m["name"]
              for m in container.get("volumeMounts") or []}  # fmt: skip
    # The kubelet mounts a file of its own at terminationMessagePath; here it is a file in the
    # pod's directory, and env values that name the path are rewritten to it like mounts.
    termination = None
    if container.get("terminationMessagePath"):
        termination = pod_dir / "termination" / name
        mounts[container["terminationMessagePath"]] = termination
    ports = {str(p): host_ports[(name, p)] for c, p in host_ports if c == name}
    by_name = {p["name"]: host_ports[(name, int(p["containerPort"]))]
               for p in container.get("ports") or [] if p.get("name")}  # fmt: skip

    def local(value: str) -> str:
        mapped = ports.get(value.strip())
        return str(mapped) if mapped is not None else _local_path(value, mounts)

    env: dict[str, str] = {k: host.inherited[k] for k in PASS_THROUGH_ENV if k in host.inherited}
    env["HOME"] = str(pod_dir / "home")
    if "/tmp" in mounts:  # noqa: S108 - the container's /tmp is a volume of its own
        env["TMPDIR"] = str(mounts["/tmp"])  # noqa: S108
    for mount in container.get("volumeMounts") or []:
        if mount["mountPath"].rstrip("/") == SERVICE_ACCOUNT_MOUNT:
            env["KUBECONFIG"] = str(pod_dir / "volumes" / mount["name"] / KUBECONFIG_FILE)
            env["KUBERNETES_SERVICE_HOST"], _, env["KUBERNETES_SERVICE_PORT"] = (
                host.api_server.removeprefix("https://").rpartition(":")
            )
    for source in container.get("envFrom") or []:
        env.update(_env_from(source, pod["metadata"]["namespace"], lookup))
    for item in container.get("env") or []:
        value = _env_value(item, pod, lookup)
        if value is not None:
            env[item["name"]] = _expand(local(value), env)
    argv = [_expand(local(a), env) for a in [*command, *(container.get("args") or [])]]
    if argv[0] in ("python", "python3"):
        argv[0] = host.python
    return ContainerPlan(
        name=name, image=image, argv=tuple(argv), env=env, ports={**ports, **by_name},
        readiness=_probe(container.get("readinessProbe"), {**ports, **by_name}),
        liveness=_probe(container.get("livenessProbe"), {**ports, **by_name}),
        startup=_probe(container.get("startupProbe"), {**ports, **by_name}),
        termination_message=termination,
    )  # fmt: skip


def _local_path(value: str, mounts: Mapping[str, Path]) -> str:
    for mount in sorted(mounts, key=len, reverse=True):
        if value == mount or value.startswith(mount.rstrip("/") + "/"):
            return str(mounts[mount]) + value[len(mount.rstrip("/")) :]
    return value


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) references: replaced when VAR is defined, left as written if not."""
    return _REFERENCE.sub(lambda m: env.get(m.group(1), m.group(0)), value)


def _env_from(source: Mapping[str, Any], namespace: str, lookup: Lookup) -> dict[str, str]:
    prefix = source.get("prefix", "")
    for kind, key in (("configMap", "configMapRef"), ("secret", "secretRef")):
        if key in source:
            ref = source[key]
            data = lookup(kind, namespace, ref["name"])
            if data is None:
                if ref.get("optional"):
                    return {}
                raise PlanError("CreateContainerConfigError", f"{kind} {ref['name']!r} not found")
            return {prefix + k: v.decode() for k, v in data.items()}
    return {}


def _env_value(item: Mapping[str, Any], pod: Mapping[str, Any], lookup: Lookup) -> str | None:
    if "valueFrom" not in item:
        return str(item.get("value", ""))
    source = item["valueFrom"]
    if "fieldRef" in source:
        return _field(source["fieldRef"]["fieldPath"], pod)
    for kind, key in (("configMap", "configMapKeyRef"), ("secret", "secretKeyRef")):
        if key in source:
            ref = source[key]
            data = lookup(kind, pod["metadata"]["namespace"], ref["name"])
            if data is None or ref["key"] not in data:
                if ref.get("optional"):
                    return None
                raise PlanError("CreateContainerConfigError",
                                f"{kind} {ref['name']!r} has no key {ref['key']!r}")  # fmt: skip
            return data[ref["key"]].decode()
    raise PlanError(
        "CreateContainerConfigError", f"env {item['name']}: {sorted(source)} not supported"
    )


def _field(path: str, pod: Mapping[str, Any]) -> str:
    meta = pod["metadata"]
    simple = {
        "metadata.name": meta["name"], "metadata.namespace": meta["namespace"],
        "metadata.uid": meta.get("uid", ""), "spec.nodeName": pod["spec"].get("nodeName", ""),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
        "status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1",
    }  # fmt: skip
    if path in simple:
        return str(simple[path])
    found = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if found:
        return str((meta.get(found.group(1)) or {}).get(found.group(2), ""))
    raise PlanError("CreateContainerConfigError", f"fieldRef {path} not supported")


def _probe(probe: Mapping[str, Any] | None, ports: Mapping[str, int]) -> Probe | None:
    if not probe:
        return None
    for kind in ("httpGet", "tcpSocket"):
        if kind in probe:
            port = str(probe[kind]["port"])
            if port not in ports:
                raise PlanError("CreateContainerConfigError", f"probe port {port} not declared")
            return Probe(
                kind=kind, port=ports[port], path=probe[kind].get("path", "/"),
                initial_delay=float(probe.get("initialDelaySeconds", 0)),
                period=float(probe.get("periodSeconds", 10)),
                timeout=float(probe.get("timeoutSeconds", 1)),
                failure_threshold=int(probe.get("failureThreshold", 3)),
                success_threshold=int(probe.get("successThreshold", 1)),
            )  # fmt: skip
    raise PlanError("CreateContainerConfigError", "only httpGet and tcpSocket probes are supported")


def decode_secret(data: Mapping[str, str] | None) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (data or {}).items()}


def encode_config_map(
    data: Mapping[str, str] | None, binary: Mapping[str, str] | None
) -> dict[str, bytes]:
    return {**{k: v.encode() for k, v in (data or {}).items()}, **decode_secret(binary)}
