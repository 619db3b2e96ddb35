"""The archiver: a consumer group that writes every record of an archive topic to HDFS, each
exactly once (commit protocol: docs/archive.md)."""
