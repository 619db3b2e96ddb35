"""metricpipe consumers: the stream consumer and the batch job."""
