#!/usr/bin/env bash
#
# scripts/api_conformance.sh — the HTTP API against its own OpenAPI document (issue 8).
#
# Why it exists: SPEC §2 promises that malformed input of any kind gets a 4xx with the error
# body, never a 500, and that /api/openapi.json describes the whole API. This script checks
# both from the outside with schemathesis (PyPI), which generates requests from the document
# — valid ones, and invalid ones (wrong types, missing fields, odd strings, boundary
# numbers) — and checks every answer: no 5xx (`not_a_server_error`), a status code the
# document lists, the declared content type, and a body that matches the response schema.
#
# What it does: builds the debug binary (the test suite builds the same dependencies), starts
# `boxoffice serve` on a free port with SQLite in a temp dir, the built-in Stripe double and a
# known operator token, creates an organization, an API key, an event and a ticket type (so
# org-scoped routes have data), creates a venv with schemathesis under target/ (reused while
# the pinned version is unchanged) and runs it, bounded in examples and time. The server's
# log is printed when the run fails. Exit status: schemathesis's (non-zero on any failure).
#
# Usage: scripts/api_conformance.sh [extra schemathesis options]
#   BO_CONFORMANCE_MAX_EXAMPLES (default 25)  examples per operation and phase
#   BO_CONFORMANCE_MAX_TIME     (default 300) seconds for the whole schemathesis run
#   BO_CONFORMANCE_SEED         (default 8)   random seed; fixed so CI runs are reproducible
#   BO_CONFORMANCE_BINARY       use this boxoffice binary instead of building one
# A longer local run: BO_CONFORMANCE_MAX_EXAMPLES=200 BO_CONFORMANCE_MAX_TIME=1200 \
#   BO_CONFORMANCE_SEED=$RANDOM scripts/api_conformance.sh

set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd -- "$ROOT"
BO_LOG_PREFIX=${BO_LOG_PREFIX:-api_conformance}
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

# Bump deliberately: a new schemathesis release may add checks.
SCHEMATHESIS_REQUIREMENT='schemathesis==4.32.5'
MAX_EXAMPLES=${BO_CONFORMANCE_MAX_EXAMPLES:-25}
MAX_TIME=${BO_CONFORMANCE_MAX_TIME:-300}
SEED=${BO_CONFORMANCE_SEED:-8}

# --- the binary ---------------------------------------------------------------------------
if [[ -n ${BO_CONFORMANCE_BINARY:-} ]]; then
    binary=$BO_CONFORMANCE_BINARY
else
    bo_log "cargo build --locked -p boxoffice"
    cargo build --locked -p boxoffice --bin boxoffice >&2
    binary="${CARGO_TARGET_DIR:-$ROOT/target}/debug/boxoffice"
fi
[[ -x $binary ]] || bo_die "no boxoffice binary at $binary"

# --- the venv -----------------------------------------------------------------------------
venv="$ROOT/target/schemathesis-venv"
bo_pinned_venv "$venv" "$SCHEMATHESIS_REQUIREMENT" "schemathesis --version"
bo_log "$("$venv/bin/schemathesis" --version)"

# --- the server ---------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/boxoffice-conformance.XXXXXX")
server_pid=
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    local status=$?
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [[ $status -ne 0 && -f $work/server.log ]]; then
        bo_log "server log (last 80 lines):"
        tail -n 80 "$work/server.log" >&2 || true
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT

token="bo_admin_conformance_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
port=
for attempt in 1 2 3; do
    port=$(bo_free_port)
    BOXOFFICE_ADMIN_TOKEN=$token "$binary" serve \
        --database-url "sqlite://$work/boxoffice.db" \
        --listen "127.0.0.1:$port" \
        --rate-limit-per-minute 0 \
        --error-rate-limit-per-minute 0 \
        --mail-dir "$work/mail" \
        --error-spool-dir "$work/spool" \
        >"$work/server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 100); do
        if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
            break 2
        fi
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    bo_log "server did not start on port $port (attempt $attempt)"
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
done
[[ -n $server_pid ]] || bo_die "boxoffice serve did not start; see the log above"
base="http://127.0.0.1:$port"
bo_log "boxoffice serve on $base (pid $server_pid)"

# --- data for org-scoped routes -----------------------------------------------------------
api() { # api METHOD PATH [JSON] — prints the response body; fails on a non-2xx answer.
    local data=()
    [[ $# -ge 3 ]] && data=(-H 'content-type: application/json' --data "$3")
    curl -fsS -X "$1" "$base$2" -H "authorization: Bearer $token" "${data[@]}"
}
json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
org_id=$(api POST /api/v1/organizations '{"name":"Conformance Org"}' | json_field id)
org_key=$(api POST "/api/v1/organizations/$org_id/api-keys" | json_field key)
event_id=$(curl -fsS -X POST "$base/api/v1/events" -H "authorization: Bearer $org_key" \
    -H 'content-type: application/json' \
    --data '{"name":"Conformance Night","starts_at":"2030-01-01T20:00:00Z","currency":"EUR"}' | json_field id)
ticket_type_id=$(api POST "/api/v1/events/$event_id/ticket-types" \
    '{"name":"Standing","price_cents":2500,"capacity":100000}' | json_field id)
hold_id=$(curl -fsS -X POST "$base/api/v1/reservations" -H 'content-type: application/json' \
    --data "{\"event_id\":\"$event_id\",\"items\":[{\"ticket_type_id\":\"$ticket_type_id\",\"quantity\":1}]}" |
    json_field id)
bo_log "data: organization $org_id, event $event_id, ticket type $ticket_type_id, hold $hold_id"

# --- schemathesis -------------------------------------------------------------------------
# The operator token may do everything (SPEC §3), so every authenticated route is reached.
# Known path parameters point generated requests at existing resources as well as at
# random ids.
config="$work/schemathesis.toml"
cat >"$config" <<EOF
[parameters]
"path.org_id" = "$org_id"
"path.event_id" = "$event_id"
"path.ticket_type_id" = "$ticket_type_id"
"path.reservation_id" = "$hold_id"
EOF
started=$SECONDS
status=0
# One worker: with two, hypothesis parses lambda sources with `ast.parse` from two threads at
# once, which CPython 3.11 can fail with "SystemError: AST constructor recursion depth
# mismatch" — an error of the tool, reported as a failed run (seen once in CI).
"$venv/bin/schemathesis" --no-color --config-file "$config" run "$base/api/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --phases examples,coverage,fuzzing \
    --max-examples "$MAX_EXAMPLES" \
    --max-time "$MAX_TIME" \
    --seed "$SEED" \
    --workers 1 \
    --request-timeout 10 \
    --suppress-health-check all \
    "$@" || status=$?
bo_log "schemathesis finished in $((SECONDS - started))s with status $status"
exit "$status"
