#!/usr/bin/env bash
# `make images`: metricpipe's operator, consumer and pause images, built without any registry on
# bases made from Debian's packages and cached by content under $METRICPIPE_CACHE/images
# (hack/metricpipe_devstack/images_build.py does the work; docs/local-stack.md, "Images").
source "$(dirname "$0")/lib.sh"

PY="$REPO_ROOT/.venv/bin/python"
[[ -x "$PY" ]] || die "no virtualenv: run 'make venv' first"
[[ "$(id -u)" == 0 ]] || die "building images needs root (mmdebstrap and buildah's storage)"
bash "$REPO_ROOT/hack/fetch-deps.sh" spark-kafka   # the consumer image carries the connector
exec "$PY" -m metricpipe_devstack.images_build
