"""metricpipe's dashboards, generated from typed models (dev tooling: `make manifests`).

- `grafana`: the Grafana dashboard over Prometheus, built with grafana-foundation-sdk.
- `saved_objects`: the OpenSearch Dashboards / Kibana saved objects over the sink's metric
  documents, from the typed model in `saved_objects_model`.
- `live`: runs every panel query and every visualization's aggregation against real servers
  (the integration test's proof that they show data).

It lives outside the product packages so the exporter's image does not carry the SDK;
`python -m metricpipe_dashboards --out DIR` writes both files.
"""
