"""The hand-written text of the Helm chart that hack/render_chart.py writes: the helper
templates, NOTES.txt and the values' JSON schema (whose descriptions are also the comments of
values.yaml). Everything else in the chart comes from the kustomize base."""

from __future__ import annotations

from typing import Any

KAFKA_CREDENTIALS_MOUNT = "/var/run/secrets/metricpipe/kafka"

HELPERS = """
{{- define "metricpipe.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{/* A ConfigMap's name: the base's, with a hash of its data as suffix (kustomize's
configMapGenerator does the same with its own hash), so a changed setting rolls the pods. */}}
{{- define "metricpipe.configName" -}}
{{- $data := include (printf "metricpipe.%s.data" (index . 1)) (index . 0) -}}
{{- printf "metricpipe-%s-config-%s" (index . 1) ($data | sha256sum | trunc 10) -}}
{{- end }}

{{- define "metricpipe.extraEnv" -}}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "metricpipe.operator.env" -}}
{{- include "metricpipe.extraEnv" . }}
{{- end }}

{{- define "metricpipe.peek.env" -}}
{{- include "metricpipe.extraEnv" . }}
{{- end }}

{{- define "metricpipe.exporter.env" -}}
{{- include "metricpipe.extraEnv" . }}
{{- with .Values.redis.exporterSecretRef }}{{ if .name }}
- name: METRICPIPE_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .name | quote }}
      key: {{ .key | quote }}
{{- end }}{{ end }}
{{- with .Values.sink.credentialsSecretRef }}{{ if .name }}
- name: METRICPIPE_SINK_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .name | quote }}
      key: {{ .usernameKey | quote }}
- name: METRICPIPE_SINK_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .name | quote }}
      key: {{ .passwordKey | quote }}
{{- end }}{{ end }}
{{- end }}

{{- define "metricpipe.operator.args" -}}
{{- range .Values.operator.watchNamespaces }}
- {{ printf "--namespace=%s" . | quote }}
{{- end }}
{{- end }}

{{/* The process's Kafka credentials: its Secrets as one read-only projected volume. */}}
{{- define "metricpipe.kafkaVolume" -}}
{{- with (index (index . 0).Values.kafka.credentials (index . 1)).secrets }}
- name: kafka-credentials
  projected:
    defaultMode: 288
    sources:
    {{- range . }}
    - secret:
        {{- toYaml . | nindent 8 }}
    {{- end }}
{{- end }}
{{- end }}

{{- define "metricpipe.kafkaVolumeMount" -}}
{{- if (index (index . 0).Values.kafka.credentials (index . 1)).secrets }}
- name: kafka-credentials
  mountPath: MOUNT
  readOnly: true
{{- end }}
{{- end }}
""".replace("MOUNT", KAFKA_CREDENTIALS_MOUNT)

NOTES = """metricpipe {{ .Chart.AppVersion }} is installed in namespace {{ .Release.Namespace }}:
the MetricPipeline and LogArchive CRDs, the operator ({{ .Values.operator.replicas }} replica(s),
one leading), the lag exporter and the peek API.
{{- if .Values.operator.watchNamespaces }}
The operator serves only these namespaces: {{ join ", " .Values.operator.watchNamespaces }}.
{{- end }}

Next:
1. Wait for the operator:
     kubectl -n {{ .Release.Namespace }} rollout status deployment/metricpipe-operator
2. Create a pipeline (here the example from the repository: average RTT per probe per hour)
   and watch it become Ready:
     kubectl create namespace team-a
     kubectl -n team-a apply -f manifests/examples/avg-rtt.yaml
     kubectl -n team-a get mp -w
   Its records go to Kafka with the tag atlas.ping.*; see docs/metricpipeline.md.
"""


def _set(key: str, expression: str) -> str:
    return f"{{{{- $_ := set $data {key!r} {expression} }}}}".replace("'", '"')


def build_config_helper(component: str, keys: dict[str, str]) -> str:
    """The template of one ConfigMap's data: the base's keys from their values (`keys`: key ->
    value path), the Secret-related keys when set, then <component>.settings over them."""
    lines = [f'{{{{- define "metricpipe.{component}.data" -}}}}', "{{- $data := dict }}"]
    for key, path in sorted(keys.items()):
        if path.endswith(".image"):
            lines.append(
                _set(
                    key, f'(printf "%s:%s" .Values.{path}.repository (toString .Values.{path}.tag))'
                )
            )
        else:
            lines.append(_set(key, f"(toString .Values.{path})"))
    if component in ("operator", "exporter"):
        credentials = f".Values.kafka.credentials.{component}"
        lines += [
            "{{- with .Values.kafka.securityProtocol }}",
            _set("METRICPIPE_KAFKA_SECURITY_PROTOCOL", "."),
            "{{- end }}",
            f"{{{{- if {credentials}.secrets }}}}",
            _set("METRICPIPE_KAFKA_CREDENTIALS_DIR", f'"{KAFKA_CREDENTIALS_MOUNT}"'),
            "{{- end }}",
            f"{{{{- with {credentials}.username }}}}",
            _set("METRICPIPE_KAFKA_USERNAME", "."),
            "{{- end }}",
            "{{- with .Values.redis.host }}",
            _set("METRICPIPE_REDIS_HOST", "."),
            _set("METRICPIPE_REDIS_PORT", "(toString $.Values.redis.port)"),
            "{{- end }}",
        ]
    if component == "operator":
        lines += [
            "{{- with .Values.kafka.pipelineSecret }}",
            _set("METRICPIPE_KAFKA_PIPELINE_SECRET", "."),
            "{{- end }}",
        ]
    lines += [
        f"{{{{- range $key, $value := .Values.{component}.settings }}}}",
        _set("$key", "(toString $value)").replace('"$key"', "$key"),
        "{{- end }}",
        "{{- toYaml $data }}",
        "{{- end }}",
    ]
    return "\n" + "\n".join(lines) + "\n"


def _object(description: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "additionalProperties": False,
        "properties": properties,
    }


def _string(description: str, **more: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **more}


def _image(what: str) -> dict[str, Any]:
    return _object(
        f"The {what} image.",
        {
            "repository": _string("Image repository."),
            "tag": _string("Image tag."),
        },
    )


def _component(what: str, kafka: bool = False) -> dict[str, Any]:
    properties = {
        "image": _image(what),
        "replicas": {"type": "integer", "minimum": 0, "description": "Pod replicas."},
        "resources": {"type": "object", "description": "The container's resources."},
        "settings": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "propertyNames": {"pattern": "^METRICPIPE_[A-Z0-9_]+$"},
            "description": f"More METRICPIPE_* settings of the {what} (its ConfigMap; strings, "
            "over the settings the chart derives from other values).",
        },
    }
    return _object(f"The {what}.", properties)


def _toggle(what: str) -> dict[str, Any]:
    return _object(what, {"enabled": {"type": "boolean"}})


def _secret_sources() -> dict[str, Any]:
    item = {
        "type": "object",
        "required": ["key", "path"],
        "properties": {"key": {"type": "string"}, "path": {"type": "string"}},
    }
    return {
        "type": "array",
        "description": "Secrets mounted (read-only, one projected volume) as "
        f"the process's Kafka credentials at {KAFKA_CREDENTIALS_MOUNT}: each "
        "{name, items: [{key, path}]}; paths username, password, ca.crt, tls.crt, tls.key.",
        "items": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "items": {"type": "array", "items": item}},
        },
    }


def build_schema() -> dict[str, Any]:
    credentials = {
        name: _object(
            f"The {name}'s Kafka user (by Secret reference only).",
            {
                "username": _string("The SCRAM user, when its Secret holds only the password."),
                "secrets": _secret_sources(),
            },
        )
        for name in ("operator", "exporter")
    }
    operator = _component("operator")
    operator["properties"]["watchNamespaces"] = {
        "type": "array",
        "items": {"type": "string"},
        "description": "Serve only these namespaces' pipelines (empty: the whole cluster).",
    }
    env_item = {"type": "object", "required": ["name"]}
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "metricpipe chart values",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "kafka": _object(
                "Kafka, for the operator, the exporter and the consumers.",
                {
                    "bootstrap": _string("Bootstrap servers (host:port,...)."),
                    "securityProtocol": _string(
                        "PLAINTEXT, SSL or SASL_SSL (empty: PLAINTEXT).",
                        enum=["", "PLAINTEXT", "SSL", "SASL_SSL"],
                    ),
                    "pipelineSecret": _string(
                        "With a secured Kafka: the Secret, in each "
                        "pipeline's namespace, its consumers use by default."
                    ),
                    "credentials": _object(
                        "The operator's and exporter's own Kafka users.", credentials
                    ),
                },
            ),
            "prometheus": _object(
                "Prometheus, which the ResourceManager queries.", {"url": _string("Its HTTP URL.")}
            ),
            "elasticsearch": _object(
                "The default Elasticsearch sink.", {"url": _string("Its URL.")}
            ),
            "opensearch": _object("The default OpenSearch sink.", {"url": _string("Its URL.")}),
            "webhdfs": _object(
                "HDFS (the log archive), for the operator and the peek API.",
                {"url": _string("The WebHDFS URL (.../webhdfs/v1).")},
            ),
            "redis": _object(
                "The Redis log cache (source.store: redis).",
                {
                    "host": _string("Its host (empty: not configured)."),
                    "port": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 65535,
                        "description": "Its port.",
                    },
                    "exporterSecretRef": _object(
                        "The exporter's Redis user's password.",
                        {
                            "name": _string("Secret name (empty: none)."),
                            "key": _string("Key of the password."),
                        },
                    ),
                },
            ),
            "sink": _object(
                "The exporter's sink prober.",
                {
                    "credentialsSecretRef": _object(
                        "Its sink user, by Secret reference.",
                        {
                            "name": _string("Secret name (empty: none)."),
                            "usernameKey": _string("Key of the username."),
                            "passwordKey": _string("Key of the password."),
                        },
                    ),
                },
            ),
            "consumer": _object(
                "The consumers and batch runs the operator creates.", {"image": _image("consumer")}
            ),
            "operator": operator,
            "exporter": _component("exporter"),
            "peek": _component("peek API"),
            "tolerations": {
                "type": "array",
                "items": {"type": "object"},
                "description": "Tolerations of every metricpipe pod.",
            },
            "nodeSelector": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "Node selector of every metricpipe pod.",
            },
            "extraEnv": {
                "type": "array",
                "items": env_item,
                "description": "More env of every metricpipe container.",
            },
            "clusterScopedNameSuffix": _string(
                "Appended to the ClusterRoles' and ClusterRoleBindings' names, so that a "
                "second installation (another namespace) does not take over the first's."
            ),
            "monitoring": _object(
                "prometheus-operator's objects (its CRDs must exist).",
                {
                    "release": _string(
                        "The `release` label the Prometheus selects "
                        "(kube-prometheus-stack: its release name; empty: none)."
                    ),
                    "podMonitor": _toggle("A PodMonitor for every consumer pod."),
                    "serviceMonitor": _toggle("A ServiceMonitor for the exporter."),
                    "prometheusRule": _toggle("The recording and alerting rules."),
                },
            ),
        },
    }
