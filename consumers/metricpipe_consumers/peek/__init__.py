"""The peek API: developers find older logs in a LogArchive's files on HDFS (docs/peek.md).

`python -m metricpipe_consumers.peek` serves it; `kubectl metricpipe peek` (cli.py) is its
client. The pure parts (request parsing, time ranges, cursors, filters, the plan of hours
and files, the limits) are tested by tables; `scan.py`, `auth.py` and `server.py` are the
I/O shell around them.
"""
