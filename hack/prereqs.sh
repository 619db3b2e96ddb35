#!/usr/bin/env bash
# Checks the system tools metricpipe needs; as root, installs missing Debian packages.
source "$(dirname "$0")/lib.sh"

# ruby: the route's Fluentd regexps are checked with Ruby's own engine (test_route_selection.py).
# The node: containerd (CRI) with runc (crun refuses this machine's hybrid cgroups), Debian's CNI
# plugins, iproute2 for the pod bridge; images: buildah, mmdebstrap for the local base images and
# podman to import them. The local stack's edge: Debian's HAProxy and Nginx, run by the stack as
# its own processes with its own configs (edge.py); its log cache: Debian's redis-server, run the
# same way (redis.py), and ruby-redis (redis-rb) for the Ruby stand-in of Fluentd's Redis output.
# The install starts no Debian service.
declare -A PACKAGE_OF=([mvn]=maven [openssl]=openssl [go]=golang [java]=openjdk-17-jre-headless
                       [apt-get]=apt [dpkg-deb]=dpkg [git]=git [ruby]=ruby [gcc]=gcc
                       [containerd]=containerd [ctr]=containerd [runc]=runc [ip]=iproute2
                       [buildah]=buildah [podman]=podman [mmdebstrap]=mmdebstrap
                       [/usr/lib/cni/bridge]=containernetworking-plugins
                       [/usr/sbin/nginx]=nginx [/usr/sbin/haproxy]=haproxy
                       [/usr/bin/redis-server]=redis-server)
missing=()
for tool in mvn openssl go java dpkg-deb git ruby gcc containerd ctr runc ip buildah podman mmdebstrap \
            /usr/lib/cni/bridge /usr/sbin/nginx /usr/sbin/haproxy /usr/bin/redis-server; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
ruby -e 'require "redis"' 2>/dev/null || missing+=(ruby-redis)
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "Python >= 3.11 is required (found $(python3 --version 2>&1))"
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)

if ((${#missing[@]})); then
  if [[ $EUID -ne 0 ]]; then
    die "missing tools: ${missing[*]}; install them (Debian: apt-get install ${missing[*]/#/})"
  fi
  packages=()
  for tool in "${missing[@]}"; do packages+=("${PACKAGE_OF[$tool]:-$tool}"); done
  log "installing missing Debian packages: ${packages[*]}"
  # No package may start its Debian service (nginx's would take port 80, redis-server's 6379,
  # containerd's the default socket): the stack runs its own processes. policy-rc.d exit 101 =
  # "not allowed".
  policy=/usr/sbin/policy-rc.d; own_policy=
  if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; own_policy=1; fi
  installed=0
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" \
    && installed=1
  [[ -z $own_policy ]] || rm -f "$policy"
  ((installed)) || die "apt-get install ${packages[*]} failed"
fi
go_minor="$(go env GOVERSION | sed -E 's/go1\.([0-9]+).*/\1/')"
((go_minor >= 25)) || die "Go >= 1.25 is required to build Kubernetes $KUBE_VERSION (found $(go env GOVERSION))"
java_major="$(java -version 2>&1 | awk -F'"' '/version/{split($2, v, "."); print v[1]; exit}')"
((java_major >= 17)) || die "Java >= 17 is required for Kafka and Spark (found $java_major)"
ls /usr/lib/jvm/*/bin/java 2>/dev/null | xargs -r -n1 dirname | xargs -r -n1 dirname \
  | while read -r jdk; do "$jdk/bin/java" -version 2>&1 | grep -qE '"(2[1-9]|[3-9][0-9])' && echo ok; done \
  | grep -q ok || [[ -n "${METRICPIPE_SEARCH_JAVA_HOME:-}" ]] \
  || die "Elasticsearch/OpenSearch need Java 21+ under /usr/lib/jvm (or set METRICPIPE_SEARCH_JAVA_HOME)"
