#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet (pinned KUBE_VERSION) and
# etcd (ETCD_VERSION), helm (HELM_VERSION) and Prometheus 3 with promtool (PROMETHEUS3_MODULE_VERSION)
# from Go modules through wrapper modules, into $METRICPIPE_CACHE/bin.
# Idempotent: a binary that exists for the pinned version is never rebuilt.
source "$(dirname "$0")/lib.sh"

KUBE_BIN="$METRICPIPE_CACHE/bin/kubernetes-$KUBE_VERSION"
ETCD_BIN="$METRICPIPE_CACHE/bin/etcd-$ETCD_VERSION"
KUBE_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet)

build_kube() {
  local missing=0 cmd
  for cmd in "${KUBE_CMDS[@]}"; do [[ -x "$KUBE_BIN/$cmd" ]] || missing=1; done
  if [[ $missing == 0 ]]; then log "kubernetes $KUBE_VERSION: cached in $KUBE_BIN"; return; fi

  local work="$METRICPIPE_CACHE/src/kube-wrapper-$KUBE_VERSION"
  mkdir -p "$work" "$KUBE_BIN"
  log "kubernetes $KUBE_VERSION: resolving k8s.io/kubernetes from the module proxy"
  local gomod
  gomod="$(cd "$work" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')" \
    || die "kubernetes: 'go mod download k8s.io/kubernetes@$KUBE_VERSION' failed; check the Go module proxy"
  local minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
  local patch="${KUBE_VERSION##*.}"
  local staging_version="v0.$minor.$patch"
  local go_directive
  go_directive="$(awk '/^go /{print $2; exit}' "$gomod")"

  # The staging modules are exactly those the upstream go.mod replaces with ./staging/src/...
  {
    echo "module metricpipe.local/kube-wrapper"
    echo
    echo "go $go_directive"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    grep -E '^\s*k8s\.io/[^ ]+ => \./staging/src/' "$gomod" \
      | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } > "$work/go.mod"
  {
    printf 'package main\n\nimport (\n'
    for cmd in "${KUBE_CMDS[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$cmd"; done
    printf ')\n\nfunc main() {}\n'
  } > "$work/tools.go"
  log "kubernetes $KUBE_VERSION: $(grep -c '=>' "$work/go.mod") staging modules pinned to $staging_version"
  (cd "$work" && go mod tidy >"$work/tidy.log" 2>&1) \
    || die "kubernetes: 'go mod tidy' failed in $work; see $work/tidy.log"

  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
  for cmd in "${KUBE_CMDS[@]}"; do
    [[ -x "$KUBE_BIN/$cmd" ]] && continue
    log "kubernetes $KUBE_VERSION: building $cmd (a cold build takes several minutes on 2 cores)"
    (cd "$work" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" \
        -o "$KUBE_BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd" >"$work/build-$cmd.log" 2>&1) \
      || die "kubernetes: building $cmd failed; see $work/build-$cmd.log"
    mv "$KUBE_BIN/$cmd.tmp" "$KUBE_BIN/$cmd"
  done
  log "kubernetes $KUBE_VERSION: built into $KUBE_BIN"
}

build_etcd() {
  if [[ -x "$ETCD_BIN/etcd" ]]; then log "etcd $ETCD_VERSION: cached in $ETCD_BIN"; return; fi
  local work="$METRICPIPE_CACHE/src/etcd-wrapper-$ETCD_VERSION"
  mkdir -p "$work" "$ETCD_BIN"
  printf 'module metricpipe.local/etcd-wrapper\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > "$work/go.mod"
  printf 'package main\n\nimport _ "go.etcd.io/etcd/server/v3"\n\nfunc main() {}\n' > "$work/tools.go"
  log "etcd $ETCD_VERSION: building from go.etcd.io/etcd/server/v3"
  (cd "$work" && go mod tidy >"$work/tidy.log" 2>&1) \
    || die "etcd: 'go mod tidy' failed in $work; see $work/tidy.log"
  (cd "$work" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$ETCD_BIN/etcd.tmp" \
      go.etcd.io/etcd/server/v3 >"$work/build.log" 2>&1) \
    || die "etcd: build failed; see $work/build.log"
  mv "$ETCD_BIN/etcd.tmp" "$ETCD_BIN/etcd"
  log "etcd $ETCD_VERSION: built into $ETCD_BIN"
}

# One Go command of one module, built through a wrapper module that requires it.
# usage: build_module NAME MODULE VERSION PACKAGE OUT_DIR BINARY [LDFLAGS]
build_module() {
  local name="$1" module="$2" version="$3" package="$4" out="$5" binary="$6" ldflags="${7:--s -w}"
  if [[ -x "$out/$binary" ]]; then log "$name $version: cached in $out/$binary"; return; fi
  local work="$METRICPIPE_CACHE/src/$name-wrapper-$version"
  mkdir -p "$work" "$out"
  printf 'module metricpipe.local/%s-wrapper\n\ngo 1.25\n\nrequire %s %s\n' "$name" "$module" "$version" > "$work/go.mod"
  printf 'package main\n\nimport _ "%s"\n\nfunc main() {}\n' "$package" > "$work/tools.go"
  log "$name $version: building $package (a cold build takes minutes on 2 cores)"
  (cd "$work" && go mod tidy >"$work/tidy.log" 2>&1) \
    || die "$name: 'go mod tidy' failed in $work; see $work/tidy.log"
  (cd "$work" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/$binary.tmp" \
      "$package" >"$work/build-$binary.log" 2>&1) \
    || die "$name: building $binary failed; see $work/build-$binary.log"
  mv "$out/$binary.tmp" "$out/$binary"
  log "$name $version: built $out/$binary"
}

build_helm() {
  build_module helm helm.sh/helm/v4 "$HELM_VERSION" helm.sh/helm/v4/cmd/helm \
    "$METRICPIPE_CACHE/bin/helm-$HELM_VERSION" helm \
    "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
}

# Prometheus 3 (module v0.3XX.Y is release 3.XX.Y) without its web UI's assets, and its promtool.
build_prometheus3() {
  local out="$METRICPIPE_CACHE/bin/prometheus-$PROMETHEUS3_MODULE_VERSION"
  local release="3.${PROMETHEUS3_MODULE_VERSION#v0.3}"
  local ldflags="-s -w -X github.com/prometheus/common/version.Version=$release"
  local cmd
  for cmd in promtool prometheus; do
    build_module prometheus3 github.com/prometheus/prometheus "$PROMETHEUS3_MODULE_VERSION" \
      "github.com/prometheus/prometheus/cmd/$cmd" "$out" "$cmd" "$ldflags"
  done
}

case "${1:-all}" in
  etcd) build_etcd ;;
  kube) build_kube ;;
  helm) build_helm ;;
  prometheus3) build_prometheus3 ;;
  all) build_etcd; build_kube; build_helm; build_prometheus3 ;;
  *) die "usage: $0 [all|etcd|kube|helm|prometheus3]" ;;
esac
