"""Why a consumer could not use its sink: the reasons of the pipeline's SinkReady condition.

A consumer writes the reason as the first word of its termination message (consumers'
sink.py raises SinkError with it); the operator's reconcile/health.py reads it back.
"""

from __future__ import annotations

from .kafka import TLS_VERIFICATION_FAILED

SINK_AUTH_FAILED = "SinkAuthFailed"  # HTTP 401: the user, password or API key is wrong
SINK_FORBIDDEN = "SinkForbidden"  # HTTP 403: the user lacks a privilege on the indices
SINK_UNREACHABLE = "SinkUnreachable"  # no answer after every retry
SINK_REFUSED = "SinkRefused"  # any other refusal a retry does not fix
SINK_REASONS = (SINK_AUTH_FAILED, SINK_FORBIDDEN, TLS_VERIFICATION_FAILED, SINK_UNREACHABLE,
                SINK_REFUSED)  # fmt: skip
