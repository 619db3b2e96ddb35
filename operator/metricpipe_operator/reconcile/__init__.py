"""Reconciliation of a MetricPipeline: pure builders and idempotent ensure_* steps."""
