#!/usr/bin/env bash
# Run the local schema registry in the foreground (the stack supervisor backgrounds it).
#
# Usage: run.sh STACK_DIR PORT
# Listens on 127.0.0.1:PORT. Confluent API: /apis/ccompat/v7, Apicurio API: /apis/registry/v2,
# readiness: /health/ready, Prometheus metrics: /metrics. Schemas are kept in an H2 file database
# STACK_DIR/registry/data/registry.mv.db, so they survive a restart; deleting that folder (stack
# reset) wipes them. Environment: JAVA (java binary, default `java`), REGISTRY_HEAP (default 256m),
# REGISTRY_JAVA_OPTS (more JVM/Quarkus -D options, appended last).
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 STACK_DIR PORT" >&2; exit 2; }
stack="$(cd "$1" && pwd)"
port="$2"
app="$stack/registry/build/quarkus-app/quarkus-run.jar"
java="${JAVA:-java}"
command -v "$java" >/dev/null || { echo "registry: cannot start: '$java' not found" >&2; exit 1; }
[ -f "$app" ] || { echo "registry: cannot start: $app missing; run $(dirname "$0")/build.sh $stack" >&2; exit 1; }
mkdir -p "$stack/registry/data"

heap="${REGISTRY_HEAP:-256m}"
# shellcheck disable=SC2086  # REGISTRY_JAVA_OPTS is a list of options
exec "$java" -Xms64m -Xmx"$heap" -XX:+UseSerialGC \
    -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$port" \
    -Dquarkus.datasource.jdbc.url="jdbc:h2:file:$stack/registry/data/registry" \
    -Dquarkus.datasource.jdbc.initial-size=1 -Dquarkus.datasource.jdbc.min-size=1 \
    -Dquarkus.datasource.jdbc.max-size=10 \
    ${REGISTRY_JAVA_OPTS:-} \
    -jar "$app"
