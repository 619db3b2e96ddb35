#!/usr/bin/env bash
# `make native`: the archiver's native row maker (consumers/native/archive_rows.c) as a shared
# library in the cache, named by the source's digest so a changed source is a new file.
#   hack/build-native.sh          build it if absent; print its path
#   hack/build-native.sh --path   print the path only
# The consumer image compiles the same file with the same flags (consumers/Dockerfile).
source "$(dirname "$0")/lib.sh"

SOURCE="$REPO_ROOT/consumers/native/archive_rows.c"
digest="$(sha256sum "$SOURCE" | cut -c1-12)"
out="$METRICPIPE_CACHE/native/libmetricpipe_rows-$digest.so"
if [[ "${1:-}" == "--path" ]]; then
  echo "$out"
  exit 0
fi
if [[ ! -f "$out" ]]; then
  command -v gcc >/dev/null || die "gcc is missing: run 'make prereqs'"
  mkdir -p "$(dirname "$out")"
  gcc -O2 -Wall -Wextra -Werror -shared -fPIC -o "$out.tmp.$$" "$SOURCE"
  mv "$out.tmp.$$" "$out"
  log "native: built $out"
fi
echo "$out"
