#!/usr/bin/env bash
# Fetches every non-Go server of the local stack into $METRICPIPE_CACHE, once:
# Kafka (+ log4j2 binding), HDFS (hadoop-hdfs + hadoop-common), the Elasticsearch and OpenSearch integ-test zips, Spark's Kafka
# connector jars (all from Maven Central) and Prometheus/promtool (Debian package, extracted,
# never installed as a service). Idempotent: a marker file per component skips finished work.
# The Debian servers (the edge's nginx and haproxy, redis-server, ruby-redis) are installed (as
# root) by prereqs.sh when missing.
source "$(dirname "$0")/lib.sh"

M2="$METRICPIPE_CACHE/m2"
MVN=(mvn -B -q "-Dmaven.repo.local=$M2")

mvn_classpath() {  # name pom outdir extra-props...
  local name="$1" pom="$2" out="$3"; shift 3
  local key; key="$(cat "$pom" <(printf '%s\n' "$@") | sha256sum | cut -c1-16)"
  if [[ "$(cat "$out/.complete" 2>/dev/null)" == "$key" ]]; then log "$name: cached in $out"; return; fi
  log "$name: resolving from Maven Central into $out"
  rm -rf "$out"; mkdir -p "$out"
  "${MVN[@]}" -f "$pom" "$@" dependency:copy-dependencies -DoutputDirectory="$out" \
      -DincludeScope=runtime >"$out.log" 2>&1 \
    || die "$name: Maven resolution failed; see $out.log (is Maven Central reachable?)"
  echo "$key" > "$out/.complete"
  log "$name: $(find "$out" -name '*.jar' | wc -l) jars"
}

mvn_zip() {  # name group:artifact:version outdir
  local name="$1" coords="$2" out="$3"
  if [[ -f "$out/.complete" ]]; then log "$name: cached in $out"; return; fi
  log "$name: downloading $coords:zip from Maven Central"
  rm -rf "$out"; mkdir -p "$out"
  "${MVN[@]}" dependency:copy -Dartifact="$coords:zip" -DoutputDirectory="$out" >"$out.log" 2>&1 \
    || die "$name: download failed; see $out.log"
  touch "$out/.complete"
}

# A Debian package extracted into the cache (no service is installed or started).
# usage: fetch_deb NAME PACKAGE OUT_DIR BINARY...
fetch_deb() {
  local name="$1" package="$2" out="$3"; shift 3
  local binary missing=0
  for binary in "$@"; do [[ -x "$out/usr/bin/$binary" ]] || missing=1; done
  if [[ $missing == 0 ]]; then log "$name: cached in $out"; return; fi
  mkdir -p "$out/deb"
  log "$name: downloading Debian's package $package (extracted only; no service is installed)"
  if ! (cd "$out/deb" && apt-get download "$package" >"$out/download.log" 2>&1); then
    log "$name: package lists look stale; running apt-get update"
    apt-get update >"$out/apt-update.log" 2>&1 || die "$name: apt-get update failed; see $out/apt-update.log"
    (cd "$out/deb" && apt-get download "$package" >"$out/download.log" 2>&1) \
      || die "$name: apt-get download failed; see $out/download.log"
  fi
  dpkg-deb -x "$(ls "$out/deb/${package}"_*.deb | head -1)" "$out"
  for binary in "$@"; do
    [[ -x "$out/usr/bin/$binary" ]] || die "$name: $binary missing after extraction in $out"
  done
  log "$name: $("$out/usr/bin/$1" --version 2>&1 | head -1)"
}

fetch_prometheus() {
  fetch_deb prometheus prometheus "$METRICPIPE_CACHE/prometheus" prometheus promtool
}

# amtool checks Alertmanager routing trees (tests/unit/test_alert_routing.py)
fetch_alertmanager() {
  fetch_deb alertmanager prometheus-alertmanager "$METRICPIPE_CACHE/alertmanager" \
    prometheus-alertmanager amtool
}

fetch_kafka() {
  mvn_classpath "kafka $KAFKA_VERSION" "$REPO_ROOT/hack/maven/kafka.pom.xml" \
    "$METRICPIPE_CACHE/kafka-$KAFKA_VERSION/libs" "-Dkafka.version=$KAFKA_VERSION" "-Dlog4j.version=$LOG4J_VERSION"
}
fetch_spark_kafka() {
  mvn_classpath "spark-sql-kafka $SPARK_VERSION" "$REPO_ROOT/hack/maven/spark-kafka.pom.xml" \
    "$METRICPIPE_CACHE/spark-kafka-$SPARK_VERSION/jars" "-Dspark.version=$SPARK_VERSION"
}
fetch_hadoop() {
  mvn_classpath "hadoop-hdfs $HADOOP_VERSION" "$REPO_ROOT/hack/maven/hadoop.pom.xml" \
    "$METRICPIPE_CACHE/hadoop-$HADOOP_VERSION/libs" "-Dhadoop.version=$HADOOP_VERSION"
}
fetch_elasticsearch() {
  mvn_zip "elasticsearch $ELASTICSEARCH_VERSION" \
    "org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ELASTICSEARCH_VERSION" \
    "$METRICPIPE_CACHE/dist/elasticsearch-$ELASTICSEARCH_VERSION"
  mvn_zip "elasticsearch $ELASTICSEARCH8_VERSION (the secured node)" \
    "org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ELASTICSEARCH8_VERSION" \
    "$METRICPIPE_CACHE/dist/elasticsearch-$ELASTICSEARCH8_VERSION"
}
fetch_opensearch() {
  mvn_zip "opensearch $OPENSEARCH_VERSION" \
    "org.opensearch.distribution.integ-test-zip:opensearch:$OPENSEARCH_VERSION" \
    "$METRICPIPE_CACHE/dist/opensearch-$OPENSEARCH_VERSION"
  mvn_zip "opensearch $OPENSEARCH_SECURE_VERSION (the secured node)" \
    "org.opensearch.distribution.integ-test-zip:opensearch:$OPENSEARCH_SECURE_VERSION" \
    "$METRICPIPE_CACHE/dist/opensearch-$OPENSEARCH_SECURE_VERSION"
  mvn_zip "opensearch-security $OPENSEARCH_SECURITY_PLUGIN_VERSION" \
    "org.opensearch.plugin:opensearch-security:$OPENSEARCH_SECURITY_PLUGIN_VERSION" \
    "$METRICPIPE_CACHE/dist/opensearch-security-$OPENSEARCH_SECURITY_PLUGIN_VERSION"
}

fetch_edge() {  # Debian's nginx, haproxy, redis-server, ruby-redis: prereqs.sh (as root), not cached
  if [[ -x /usr/sbin/nginx && -x /usr/sbin/haproxy && -x /usr/bin/redis-server ]] \
    && ruby -e 'require "redis"' 2>/dev/null; then
    log "edge: nginx, haproxy, redis-server and ruby-redis installed"; return
  fi
  log "edge: nginx, haproxy, redis-server or ruby-redis missing; running hack/prereqs.sh"
  bash "$REPO_ROOT/hack/prereqs.sh"
}

command -v mvn >/dev/null || die "maven (mvn) is required; install it with 'apt-get install -y maven'"
case "${1:-all}" in
  kafka) fetch_kafka ;;
  spark-kafka) fetch_spark_kafka ;;
  elasticsearch) fetch_elasticsearch ;;
  opensearch) fetch_opensearch ;;
  prometheus) fetch_prometheus ;;
  alertmanager) fetch_alertmanager ;;
  hadoop) fetch_hadoop ;;
  edge) fetch_edge ;;
  all) fetch_edge; fetch_prometheus; fetch_alertmanager; fetch_kafka; fetch_spark_kafka; fetch_hadoop; fetch_elasticsearch; fetch_opensearch ;;
  *) die "usage: $0 [all|kafka|spark-kafka|hadoop|elasticsearch|opensearch|prometheus|alertmanager|edge]" ;;
esac
