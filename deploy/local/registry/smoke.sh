#!/usr/bin/env bash
# Round trip against a running registry through its Confluent-compatible API: register an Avro
# schema (a record with a decimal(12,2) amount) under a fresh subject, read it back by the returned
# id, and check the compatibility endpoint accepts a backward-compatible change and rejects a
# breaking one. Usage: smoke.sh PORT   (exit 0 = healthy; prints what failed otherwise).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 PORT" >&2; exit 2; }
base="http://127.0.0.1:$1/apis/ccompat/v7"
subject="smoke-$(date +%s)-$$-value"
ct='Content-Type: application/vnd.schemaregistry.v1+json'
v1='{"type":"record","name":"Smoke","namespace":"salesledger.smoke","fields":[{"name":"id","type":"long"},{"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":12,"scale":2}}]}'
v2='{"type":"record","name":"Smoke","namespace":"salesledger.smoke","fields":[{"name":"id","type":"long"},{"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":12,"scale":2}},{"name":"note","type":["null","string"],"default":null}]}'
bad='{"type":"record","name":"Smoke","namespace":"salesledger.smoke","fields":[{"name":"id","type":"long"},{"name":"must","type":"string"}]}'
wrap() { python3 -c 'import json,sys; print(json.dumps({"schema": sys.argv[1]}))' "$1"; }
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
fail() { echo "registry smoke: $*" >&2; exit 1; }

id="$(curl -sf -XPOST -H "$ct" -d "$(wrap "$v1")" "$base/subjects/$subject/versions" | field id)" \
    || fail "POST $base/subjects/$subject/versions failed"
got="$(curl -sf "$base/schemas/ids/$id" | field schema)" || fail "GET $base/schemas/ids/$id failed"
python3 -c 'import json,sys; sys.exit(json.loads(sys.argv[1]) != json.loads(sys.argv[2]))' "$got" "$v1" \
    || fail "schema id $id came back different: $got"
curl -sf -XPUT -H "$ct" -d '{"compatibility":"BACKWARD"}' "$base/config/$subject" >/dev/null \
    || fail "PUT $base/config/$subject failed"
ok="$(curl -sf -XPOST -H "$ct" -d "$(wrap "$v2")" "$base/compatibility/subjects/$subject/versions/latest" | field is_compatible)"
no="$(curl -sf -XPOST -H "$ct" -d "$(wrap "$bad")" "$base/compatibility/subjects/$subject/versions/latest" | field is_compatible)"
[ "$ok" = True ] && [ "$no" = False ] || fail "compatibility check wrong: compatible=$ok breaking=$no"
echo "registry smoke: ok (subject $subject, schema id $id, compatibility checks right)"
