"""The demo's traffic: real records re-timed onto the demo clock and replayed to Kafka."""
