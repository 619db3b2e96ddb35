"""What the operator, the consumers and the exporters agree on, and the only package all three
import: the MetricPipeline model (the CRD is generated from it), durations, the names of
everything a pipeline owns, Kafka and sink connection settings, metric names, logging.

It imports none of them (`make lint` checks the package graph: hack/import_graph.py)."""
