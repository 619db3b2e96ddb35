#!/usr/bin/env bash
# `make test` once the stack's dependencies are built: the local stack starts in the background
# (unless it is already healthy) while ruff, mypy and the unit tests run, so its start-up
# overlaps them; the integration and e2e tiers then run on it, and a stack started here is
# stopped at the end (METRICPIPE_KEEP_STACK=1 leaves it running).
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
PY=.venv/bin/python
UP_LOG=.stack/test-stack-up.log
up_pid=""

finish() {
  local code=$?
  if [[ -n "$up_pid" ]]; then
    wait "$up_pid" 2>/dev/null || true   # a half-started stack is stopped whole, never raced
    if [[ -z "${METRICPIPE_KEEP_STACK:-}" ]]; then
      log "stopping the local stack this run started"
      "$PY" -m metricpipe_devstack down || true
    fi
  fi
  exit "$code"
}
trap finish EXIT

if "$PY" -m metricpipe_devstack status >/dev/null 2>&1; then
  log "the local stack is running and healthy: the tests reuse it"
else
  mkdir -p .stack
  log "starting the local stack in the background while lint and unit tests run ($UP_LOG)"
  "$PY" -m metricpipe_devstack up --no-fetch >"$UP_LOG" 2>&1 &
  up_pid=$!
fi

make --no-print-directory lint unit

if [[ -n "$up_pid" ]]; then
  log "waiting for the local stack"
  if ! wait "$up_pid"; then
    cat "$UP_LOG" >&2
    up_pid=""   # nothing to wait for; `down` still stops what it started
    "$PY" -m metricpipe_devstack down || true
    die "the local stack did not start (its log is above)"
  fi
  tail -n 20 "$UP_LOG" >&2   # the status table; finish() stops this stack at the end
fi

"$PY" -m pytest tests/integration tests/e2e --durations=40
