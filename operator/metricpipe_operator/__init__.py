"""metricpipe operator: reconciles MetricPipeline resources and runs the ResourceManager."""
