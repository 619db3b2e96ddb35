"""metricpipe exporters: Kafka lag, time lag and freshness for Prometheus."""
