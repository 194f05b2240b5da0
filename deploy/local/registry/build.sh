#!/usr/bin/env bash
# Build the local schema registry (Apicurio Registry 2.4.2.Final, Confluent API /apis/ccompat/v7)
# from Maven Central into STACK_DIR/registry/build/quarkus-app, then print how to run it.
#
# Usage: build.sh STACK_DIR
# Idempotent: skips the build when STACK_DIR/registry/build/.built-from matches the digest of the
# build inputs (this directory's pom.xml, settings.xml, build.sh and the stand-in module's sources)
# and quarkus-run.jar exists. Needs java (11+) and mvn on PATH; extra Maven arguments may be given
# in REGISTRY_MVN_ARGS (e.g. -Dmaven.repo.local=...). Exits non-zero, naming the cause, on failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[ $# -eq 1 ] || { echo "usage: $0 STACK_DIR" >&2; exit 2; }
mkdir -p "$1/registry"
stack="$(cd "$1" && pwd)"
out="$stack/registry/build"
log="$stack/registry/build.log"
app="$out/quarkus-app/quarkus-run.jar"

command -v java >/dev/null || { echo "registry: build failed: 'java' not found on PATH" >&2; exit 1; }
command -v mvn >/dev/null || { echo "registry: build failed: 'mvn' not found on PATH" >&2; exit 1; }

digest="$(cd "$here" && find pom.xml settings.xml build.sh config-index-deployment/pom.xml \
    config-index-deployment/src -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64)"

if [ -f "$app" ] && [ "$(cat "$out/.built-from" 2>/dev/null)" = "$digest" ]; then
    echo "registry: already built ($out/quarkus-app)" >&2
else
    echo "registry: building Apicurio Registry from Maven Central (log: $log)" >&2
    mvn=(mvn -B -ntp -s "$here/settings.xml" ${REGISTRY_MVN_ARGS:-})
    rm -rf "$out"
    {
        # 1. stand-in for the extension deployment jar Central does not serve (see README.md)
        "${mvn[@]}" -f "$here/config-index-deployment/pom.xml" \
            -Dregistry.build.dir="$out/config-index-deployment" install &&
        # 2. the registry itself, assembled by quarkus-maven-plugin:build
        "${mvn[@]}" -f "$here/pom.xml" -Dregistry.build.dir="$out" -Dquarkus.package.type=fast-jar package
    } >"$log" 2>&1 || {
        echo "registry: build failed (Maven unreachable or an artifact missing?); last lines of $log:" >&2
        grep -E '^\[ERROR\]' "$log" | head -n 5 >&2 || tail -n 20 "$log" >&2
        exit 1
    }
    [ -f "$app" ] || { echo "registry: build finished but $app is missing; see $log" >&2; exit 1; }
    echo "$digest" >"$out/.built-from"
fi
echo "$here/run.sh $stack PORT"
