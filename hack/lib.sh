# shellcheck shell=bash
# Common helpers for the hack/ scripts: cache locations, pinned versions, logging.
set -euo pipefail

METRICPIPE_CACHE="${METRICPIPE_CACHE:-$HOME/.cache/metricpipe}"
export METRICPIPE_CACHE
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT

# Pinned versions: one place. hack/versions.env is also read by the Python stack manager.
# shellcheck source=versions.env
source "$REPO_ROOT/hack/versions.env"

# Go caches live in the metricpipe cache, never in the repository.
export GOMODCACHE="${GOMODCACHE_OVERRIDE:-$METRICPIPE_CACHE/go/mod}"
export GOCACHE="${GOCACHE_OVERRIDE:-$METRICPIPE_CACHE/go/build}"
export GOFLAGS="-buildvcs=false -mod=mod"
export GOTOOLCHAIN=local

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }
