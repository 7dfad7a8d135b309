#!/usr/bin/env bash
#
# scripts/bench.sh — one-command benchmark of holds (POST /api/v1/reservations) over
# HTTP, on SQLite and on PostgreSQL.
#
# Why it exists: holds are the hot path of a sale (everyone clicks "buy" at once for a
# hot event), and each one is a durable commit (SPEC §2: no weaker commits for speed).
# This script gives a repeatable number for "how many holds per second, at what
# latency" per storage engine and concurrency, to compare changes against.
#
# What it does:
#   1. builds the release binary (`cargo build --release --locked -p boxoffice`);
#   2. for each engine — SQLite (a file in a temp dir) and PostgreSQL (a fresh database
#      `boxoffice_bench` on the server scripts/test.sh would use, see
#      scripts/lib/postgres.sh; dropped afterwards) — starts
#      `boxoffice serve` on 127.0.0.1, waits for GET /readyz, creates an organization,
#      an event, and per concurrency level a fresh ticket type (capacity 10,000,000), and
#      runs wrk against POST /api/v1/reservations for BENCH_SECONDS per level;
#   3. prints a table and writes it to bench-results/holds-<date>.md (git-ignored).
#
# All traffic goes to 127.0.0.1 only; every loop is bounded in count and time; the
# servers (and a throw-away PostgreSQL) are stopped on exit, also on failure or Ctrl-C.
#
# Environment:
#   BENCH_CONCURRENCY     client counts to measure, default "1 8 32 64"
#   BENCH_SECONDS         seconds per level, default 10
#   BENCH_WARMUP_SECONDS  unrecorded warm-up per engine (own ticket type), default 2; 0 = none
#   BENCH_ENGINES         default "sqlite postgres"
#   BENCH_BIN             use this boxoffice binary instead of building one
#   BENCH_SUITES          default "holds ceiling payments webhooks errors"; payments = replay latency
#                         relative to GET of the order, and PaymentIntent creations per
#                         second against the in-process Stripe double
#                         (scripts/lib/bench_payments.py); webhooks = signed deliveries
#                         applied per second, distinct and repeated (bench_webhooks.py)
#                         errors = Sentry envelopes stored and grouped per second
#                         (wrk, a distinct event per request, BENCH_ERROR_CLIENTS senders;
#                         afterwards the stored count is compared with the 200 answers)
#                         ceiling = (PostgreSQL only) the database's own one-hold ceiling:
#                         pgbench running the equivalent transaction (a conditional
#                         UPDATE of one hot counter row + one INSERT) at the same client
#                         counts, printed beside boxoffice's holds/s with their ratio
#   BENCH_PAYMENT_CLIENTS clients for the payments suite, default 8
#   BENCH_ERROR_CLIENTS   concurrent senders for the errors suite, default 8
#   BOXOFFICE_TEST_POSTGRES_URL, BOXOFFICE_TEST_FORCE_THROWAWAY_PG  as for scripts/test.sh
#
# Columns: holds/s = 201 answers per second of measured time; any other answer (non-2xx,
# or a 2xx other than 201) and socket errors are counted apart (they are not holds);
# p50/p99 = wrk's latency percentiles over all answers of that level.

set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
BO_LOG_PREFIX=bench.sh
# shellcheck source=scripts/lib/postgres.sh
source "$ROOT/scripts/lib/postgres.sh"
cd "$ROOT"

BENCH_CONCURRENCY=${BENCH_CONCURRENCY:-"1 8 32 64"}
BENCH_SECONDS=${BENCH_SECONDS:-10}
BENCH_WARMUP_SECONDS=${BENCH_WARMUP_SECONDS:-2}
BENCH_ENGINES=${BENCH_ENGINES:-"sqlite postgres"}
BENCH_BIN=${BENCH_BIN:-}
BENCH_SUITES=${BENCH_SUITES:-"holds ceiling payments webhooks errors"}
BENCH_ERROR_CLIENTS=${BENCH_ERROR_CLIENTS:-8}
[[ $BENCH_ERROR_CLIENTS =~ ^[0-9]+$ && $BENCH_ERROR_CLIENTS -ge 1 && $BENCH_ERROR_CLIENTS -le 256 ]] ||
    bo_die "BENCH_ERROR_CLIENTS must be 1..256, got '$BENCH_ERROR_CLIENTS'"
WEBHOOK_SECRET=whsec_bench_secret
BENCH_PAYMENT_CLIENTS=${BENCH_PAYMENT_CLIENTS:-8}
[[ $BENCH_PAYMENT_CLIENTS =~ ^[0-9]+$ && $BENCH_PAYMENT_CLIENTS -ge 1 && $BENCH_PAYMENT_CLIENTS -le 64 ]] ||
    bo_die "BENCH_PAYMENT_CLIENTS must be 1..64, got '$BENCH_PAYMENT_CLIENTS'"
BENCH_DB=boxoffice_bench
BENCH_DB_LIKE='boxoffice\_bench' # the same as a LIKE pattern

# --- validate the knobs (they bound every loop below) -------------------------------
[[ $BENCH_SECONDS =~ ^[0-9]+$ && $BENCH_SECONDS -ge 1 && $BENCH_SECONDS -le 600 ]] ||
    bo_die "BENCH_SECONDS must be 1..600, got '$BENCH_SECONDS'"
[[ $BENCH_WARMUP_SECONDS =~ ^[0-9]+$ && $BENCH_WARMUP_SECONDS -le 60 ]] ||
    bo_die "BENCH_WARMUP_SECONDS must be 0..60, got '$BENCH_WARMUP_SECONDS'"
read -r -a levels <<<"$BENCH_CONCURRENCY"
[[ ${#levels[@]} -ge 1 && ${#levels[@]} -le 20 ]] || bo_die "BENCH_CONCURRENCY must list 1..20 client counts"
for c in "${levels[@]}"; do
    [[ $c =~ ^[0-9]+$ && $c -ge 1 && $c -le 1024 ]] || bo_die "BENCH_CONCURRENCY: '$c' is not 1..1024"
done
read -r -a engines <<<"$BENCH_ENGINES"
[[ ${#engines[@]} -ge 1 ]] || bo_die "BENCH_ENGINES is empty"
for e in "${engines[@]}"; do
    [[ $e == sqlite || $e == postgres ]] || bo_die "BENCH_ENGINES: unknown engine '$e' (sqlite, postgres)"
done

# --- cleanup ------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/boxoffice-bench.XXXXXX)
server_pid=""
wrk_pid=""
pg_used=0

stop_server() {
    [[ -n $server_pid ]] || return 0
    if kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        local i
        for i in $(seq 1 30); do # at most 15 s for a graceful stop
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.5
            : "$i"
        done
        if kill -0 "$server_pid" 2>/dev/null; then
            bo_log "server $server_pid did not stop within 15 s; killing it"
            kill -KILL "$server_pid" 2>/dev/null || true
        fi
    fi
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

# shellcheck disable=SC2317 # invoked by the EXIT trap
on_exit() {
    local rc=$?
    set +e
    trap - EXIT INT TERM HUP
    if [[ -n $wrk_pid ]] && kill -0 "$wrk_pid" 2>/dev/null; then
        kill -TERM "$wrk_pid" 2>/dev/null # timeout(1) passes it on to wrk
        wait "$wrk_pid" 2>/dev/null
    fi
    stop_server
    if [[ $BO_PG_OWNED -eq 1 ]]; then
        bo_pg_teardown
    elif [[ $pg_used -eq 1 ]]; then
        bo_pg_drop_databases_like "$BENCH_DB_LIKE"
    fi
    if [[ $rc -ne 0 && $rc -lt 128 ]]; then # a failure, not an interrupt
        for f in "$WORK"/server-*.log; do
            [[ -f $f ]] || continue
            bo_log "last lines of $(basename "$f"):"
            tail -n 20 "$f" >&2
        done
    fi
    rm -rf -- "$WORK"
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# --- tools --------------------------------------------------------------------------
command -v wrk >/dev/null 2>&1 || bo_apt_install wrk
command -v curl >/dev/null 2>&1 || bo_apt_install curl
command -v python3 >/dev/null 2>&1 || bo_die "python3 is needed (JSON parsing)"

if [[ -z $BENCH_BIN ]]; then
    bo_log "building: cargo build --release --locked -p boxoffice"
    cargo build --release --locked -p boxoffice
    BENCH_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/boxoffice
fi
[[ -x $BENCH_BIN ]] || bo_die "no executable boxoffice binary at $BENCH_BIN"
BENCH_BIN=$(readlink -f -- "$BENCH_BIN")

# setsid(1) without forking: the background subshell is never a process group leader.
setsid=""
command -v setsid >/dev/null 2>&1 && setsid=setsid

TOKEN=$(python3 -c 'import secrets; print("bench-" + secrets.token_hex(16))')
threads_max=$(nproc 2>/dev/null || echo 2)

# --- HTTP helpers -------------------------------------------------------------------
base=""

# start_server ENGINE DATABASE_URL — start `boxoffice serve` and wait for /readyz.
start_server() {
    local engine=$1 url=$2 attempt port i log="$WORK/server-$1.log"
    for attempt in 1 2 3; do
        port=$(bo_free_port)
        base="http://127.0.0.1:$port"
        bo_log "$engine: starting boxoffice serve on 127.0.0.1:$port"
        # cwd = the temp dir, so anything the server writes by default (mail folder, …)
        # stays out of the work tree. In a session of its own (setsid), so a Ctrl-C
        # reaches only this script, which then stops the server with TERM.
        (cd "$WORK" && exec $setsid "$BENCH_BIN" serve --database-url "$url" --listen "127.0.0.1:$port" \
            --admin-token "$TOKEN" --rate-limit-per-minute 0 --error-rate-limit-per-minute 0 --hold-duration 15m \
            --sweep-interval 30s --stripe-webhook-secret "$WEBHOOK_SECRET") >>"$log" 2>&1 </dev/null &
        server_pid=$!
        for i in $(seq 1 240); do # at most ~60 s (migrations run at start)
            if ! kill -0 "$server_pid" 2>/dev/null; then
                break
            fi
            if [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$base/readyz" 2>/dev/null) == 200 ]]; then
                return 0
            fi
            sleep 0.25
            : "$i"
        done
        if kill -0 "$server_pid" 2>/dev/null; then
            bo_die "$engine: server not ready (GET /readyz != 200) within 60 s"
        fi
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
        bo_log "$engine: server exited before it was ready (attempt $attempt of 3):"
        tail -n 20 "$log" >&2 || true
    done
    bo_die "$engine: could not start the server"
}

# admin_post PATH JSON — POST as the operator, require 201, print the new object's id
# as a JSON literal (ids are opaque: a string or a number, spliced into later bodies).
admin_post() {
    local path=$1 body=$2 status
    status=$(curl -sS --max-time 30 -o "$WORK/resp.json" -w '%{http_code}' -X POST \
        -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
        --data-binary "$body" "$base$path") || bo_die "POST $path failed (curl)"
    if [[ $status != 201 ]]; then
        bo_die "POST $path answered $status, expected 201: $(head -c 500 "$WORK/resp.json")"
    fi
    python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["id"]))' <"$WORK/resp.json" ||
        bo_die "POST $path: no \"id\" in the answer: $(head -c 500 "$WORK/resp.json")"
}

# new_ticket_type EVENT_ID NAME — a fresh hot ticket type; prints its id (JSON literal).
new_ticket_type() {
    admin_post "/api/v1/events/$(json_path_segment "$1")/ticket-types" \
        "{\"name\":\"$2\",\"price_cents\":1000,\"capacity\":10000000,\"max_per_order\":10}"
}

# json_path_segment JSON_LITERAL — an id literal ("abc" or 12) as a URL path segment.
json_path_segment() {
    python3 -c 'import json, sys, urllib.parse; print(urllib.parse.quote(str(json.loads(sys.argv[1])), safe=""))' "$1"
}

# run_wrk ENGINE CLIENTS SECONDS EVENT_ID TICKET_TYPE_ID — one load run; sets
# RUN_FIELDS="created non201 socket_errors holds_per_s p50_ms p99_ms".
RUN_FIELDS=""
run_wrk() {
    local engine=$1 clients=$2 seconds=$3 ev=$4 tt=$5
    local threads=$((clients < threads_max ? clients : threads_max))
    local lua="$WORK/hold-$engine-$clients.lua" out="$WORK/wrk-$engine-$clients.txt"
    # The body is a Lua long string; done() prints one machine-readable line, so nothing
    # depends on wrk's human formatting ("1.23ms", "4.56k").
    cat >"$lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[{"event_id":$ev,"items":[{"ticket_type_id":$tt,"quantity":1}]}]==]

local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) created = 0; non2xx = 0; other2xx = 0 end
function response(status, headers, body)
  if status == 201 then created = created + 1
  elseif status < 200 or status > 299 then non2xx = non2xx + 1
  else other2xx = other2xx + 1 end
end
function done(summary, latency, requests)
  local c, n, o = 0, 0, 0
  for _, t in ipairs(threads) do
    c = c + t:get("created"); n = n + t:get("non2xx"); o = o + t:get("other2xx")
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT created=%d non2xx=%d other2xx=%d requests=%d duration_us=%d p50_us=%d p99_us=%d socket_errors=%d\n",
    c, n, o, summary.requests, summary.duration,
    latency:percentile(50.0), latency:percentile(99.0),
    e.connect + e.read + e.write + e.timeout))
end
LUA
    # In the background + wait, so that a signal to this script is handled at once
    # (on_exit stops wrk); timeout(1) bounds it even if wrk hangs.
    timeout --kill-after=10 "$((seconds + 30))" \
        wrk -t "$threads" -c "$clients" -d "${seconds}s" --timeout 10s --latency \
        -s "$lua" "$base/api/v1/reservations" >"$out" 2>&1 </dev/null &
    wrk_pid=$!
    local rc=0
    wait "$wrk_pid" || rc=$?
    wrk_pid=""
    if [[ $rc -ne 0 ]]; then
        cat "$out" >&2
        bo_die "$engine: wrk failed (exit code $rc) at $clients clients"
    fi
    kill -0 "$server_pid" 2>/dev/null || bo_die "$engine: the server died during the run at $clients clients"
    local line
    line=$(grep -m 1 '^BENCH_RESULT ' "$out") || {
        cat "$out" >&2
        bo_die "$engine: no BENCH_RESULT line in wrk's output"
    }
    # key=value pairs -> fields, in a fixed order.
    RUN_FIELDS=$(python3 - "$line" <<'PY'
import sys
kv = dict(p.split("=", 1) for p in sys.argv[1].split()[1:])
created, non2xx, other2xx = int(kv["created"]), int(kv["non2xx"]), int(kv["other2xx"])
secs = max(int(kv["duration_us"]), 1) / 1e6
print(created, non2xx + other2xx, kv["socket_errors"], "%.1f" % (created / secs),
      "%.2f" % (int(kv["p50_us"]) / 1000), "%.2f" % (int(kv["p99_us"]) / 1000))
PY
    ) || bo_die "$engine: cannot parse wrk's result: $line"
}

# run_errors ENGINE CLIENTS SECONDS ORG_ID — Sentry envelopes with wrk, each with its own
# event id, shaped like the Python SDK's (exception, in-app frames with variables,
# breadcrumbs, request, user: ~2.5 KB); five error types whose messages carry varying ids,
# so grouping does real work. Sets ERROR_FIELDS="ok non200 socket_errors stored lost
# stored_per_s p50_ms p99_ms groups".
ERROR_FIELDS=""
run_errors() {
    local engine=$1 clients=$2 seconds=$3 org=$4
    local threads=$((clients < threads_max ? clients : threads_max))
    local lua="$WORK/errors-$engine.lua" out="$WORK/wrk-errors-$engine.txt"
    local dsn project key
    dsn=$(curl -sS --max-time 10 -H "authorization: Bearer $TOKEN" "$base/api/v1/organizations/$(json_path_segment "$org")" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["error_dsn"])') || bo_die "$engine: no error_dsn"
    project=${dsn##*/}
    key=${dsn#*://}
    key=${key%%@*}
    cat >"$lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-sentry-envelope"
wrk.headers["X-Sentry-Auth"] = "Sentry sentry_version=7, sentry_client=sentry.python/2.0.0, sentry_key=$key"
local types = {"ValueError", "KeyError", "TimeoutError", "PaymentDeclined", "SeatMapError"}
local threads = {}
local next_id = 0
function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
  table.insert(threads, thread)
end
function init(args) ok = 0; bad = 0; n = 0; math.randomseed(os.time() + tid) end
function request()
  n = n + 1
  local id = string.format("%08x%08x%08x%08x", tid, n, math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
  local t = types[(n % #types) + 1]
  local event = string.format([==[{"event_id":"%s","level":"error","platform":"python","release":"bench@1.0","environment":"bench","exception":{"values":[{"type":"%s","value":"order %d failed for customer %d at seat %d (request %s)","stacktrace":{"frames":[{"filename":"app/views.py","function":"checkout","lineno":%d,"in_app":true,"vars":{"order_id":%d,"email":"buyer%d@example.org","card":"4242424242424242"}},{"filename":"app/payments.py","function":"charge","lineno":88,"in_app":true,"context_line":"    raise %s(message)","pre_context":["def charge(order):","    client = stripe()"],"post_context":[""]}]}}]},"breadcrumbs":{"values":[{"category":"http","message":"POST /api/v1/reservations 201","level":"info","timestamp":1700000000.0},{"category":"query","message":"SELECT * FROM holds WHERE id = %d","level":"info","timestamp":1700000001.0}]},"request":{"url":"https://shop.example.org/checkout?session=abc%d","method":"POST","headers":{"User-Agent":"Mozilla/5.0","Authorization":"Bearer sk_live_%024x","Cookie":"session=s%d"}},"user":{"id":"%d","email":"buyer%d@example.org","ip_address":"{{auto}}"},"tags":{"component":"checkout"},"contexts":{"runtime":{"name":"CPython","version":"3.11.7"},"os":{"name":"Linux"}},"sdk":{"name":"sentry.python","version":"2.0.0"}}]==],
    id, t, n, n * 7, n % 500, id, 10 + (n % 90), n, n, t, n, n, n, n, n, n)
  local body = string.format('{"event_id":"%s","sent_at":"2026-01-01T00:00:00.000000Z","sdk":{"name":"sentry.python","version":"2.0.0"}}\n{"type":"event","content_type":"application/json","length":%d}\n%s\n', id, #event, event)
  return wrk.format(nil, nil, nil, body)
end
function response(status, headers, body)
  if status == 200 then ok = ok + 1 else bad = bad + 1 end
end
function done(summary, latency, requests)
  local o, b = 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); b = b + t:get("bad") end
  local e = summary.errors
  io.write(string.format(
    "BENCH_ERRORS ok=%d non200=%d duration_us=%d p50_us=%d p99_us=%d socket_errors=%d\n",
    o, b, summary.duration, latency:percentile(50.0), latency:percentile(99.0),
    e.connect + e.read + e.write + e.timeout))
end
LUA
    timeout --kill-after=10 "$((seconds + 30))" \
        wrk -t "$threads" -c "$clients" -d "${seconds}s" --timeout 10s --latency \
        -s "$lua" "$base/api/$project/envelope/" >"$out" 2>&1 </dev/null &
    wrk_pid=$!
    local rc=0
    wait "$wrk_pid" || rc=$?
    wrk_pid=""
    if [[ $rc -ne 0 ]]; then
        cat "$out" >&2
        bo_die "$engine: wrk failed (exit code $rc) in the errors suite"
    fi
    local line
    line=$(grep -m 1 '^BENCH_ERRORS ' "$out") || {
        cat "$out" >&2
        bo_die "$engine: no BENCH_ERRORS line in wrk's output"
    }
    # What was stored: the sum of the organization's group counts (the 200 answers came
    # only after their events were committed, so nothing is waiting).
    curl -sS --max-time 30 -H "authorization: Bearer $TOKEN" "$base/api/v1/admin/errors?limit=500" >"$WORK/groups.json" ||
        bo_die "$engine: listing error groups failed"
    ERROR_FIELDS=$(python3 - "$line" "$org" "$WORK/groups.json" <<'PY'
import json, sys
kv = dict(p.split("=", 1) for p in sys.argv[1].split()[1:])
org = json.loads(sys.argv[2])
groups = [g for g in json.load(open(sys.argv[3]))["data"] if g["scope"] == f"org:{org}"]
stored = sum(g["count"] for g in groups)
ok, secs = int(kv["ok"]), max(int(kv["duration_us"]), 1) / 1e6
# Requests still in flight when wrk stops are stored but not counted as answered, so
# stored may exceed ok by a few; lost counts answered events that are not stored.
print(ok, kv["non200"], kv["socket_errors"], stored, max(ok - stored, 0), "%.1f" % (ok / secs),
      "%.2f" % (int(kv["p50_us"]) / 1000), "%.2f" % (int(kv["p99_us"]) / 1000), len(groups))
PY
    ) || bo_die "$engine: cannot parse the errors result: $line"
}

# run_pgbench_ceiling DATABASE_URL — the database's own ceiling for one hold per
# transaction: pgbench runs a conditional UPDATE of one hot counter row (the shape of
# boxoffice's capacity check) plus one INSERT (the hold), each transaction committed
# durably, at every client count of BENCH_CONCURRENCY. Appends to ceiling_results.
ceiling_results=() # "clients tps latency_avg_ms"
run_pgbench_ceiling() {
    local url=$1 c
    command -v pgbench >/dev/null 2>&1 || bo_apt_install postgresql-contrib
    command -v pgbench >/dev/null 2>&1 || bo_die "pgbench not found (package postgresql-client or postgresql-contrib)"
    bo_pg_psql "$url" -q -c "
        drop table if exists ceiling_holds, ceiling_counters;
        create table ceiling_counters (id int primary key, capacity bigint not null,
            sold bigint not null, held bigint not null);
        create table ceiling_holds (id text primary key, counter_id int not null,
            quantity int not null, created_at timestamptz not null);
        insert into ceiling_counters values (1, 1000000000000, 0, 0);" ||
        bo_die "could not create the pgbench tables"
    cat >"$WORK/ceiling.sql" <<'SQL'
BEGIN;
UPDATE ceiling_counters SET held = held + 1 WHERE id = 1 AND capacity - sold - held >= 1;
INSERT INTO ceiling_holds (id, counter_id, quantity, created_at) VALUES (md5(random()::text || clock_timestamp()::text), 1, 1, now());
COMMIT;
SQL
    for c in "${levels[@]}"; do
        local threads=$((c < threads_max ? c : threads_max)) out="$WORK/pgbench-$c.txt"
        bo_log "postgres: pgbench ceiling, $c client(s), ${BENCH_SECONDS}s"
        timeout --kill-after=10 "$((BENCH_SECONDS + 60))" \
            pgbench -n -f "$WORK/ceiling.sql" -c "$c" -j "$threads" -T "$BENCH_SECONDS" "$url" >"$out" 2>&1 ||
            { cat "$out" >&2; bo_die "pgbench failed at $c clients"; }
        local tps latency
        tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$out" | head -n 1)
        latency=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$out" | head -n 1)
        [[ -n $tps ]] || { cat "$out" >&2; bo_die "no tps in pgbench's output"; }
        ceiling_results+=("$c $(printf '%.1f' "$tps") ${latency:--}")
        bo_log "postgres: pgbench ceiling at $c client(s): $tps transactions/s, average latency ${latency:-?} ms"
    done
    bo_pg_psql "$url" -q -c "drop table ceiling_holds, ceiling_counters" || true
}

# --- the benchmark ------------------------------------------------------------------
results=() # "engine clients holds_per_s created non201 socket_errors p50 p99"
payment_results=() # "engine clients get_p50 replay_p50 ratio creations_per_s created failures"
webhook_results=() # "engine clients distinct_per_s applied redeliveries_per_s duplicates"
error_results=() # "engine clients stored_per_s ok non200 socket_errors stored lost p50 p99 groups"
pg_note=""

bench_engine() {
    local engine=$1 url
    case $engine in
        sqlite)
            url="sqlite://$WORK/bench.db"
            ;;
        postgres)
            if [[ -z $BO_PG_URL ]]; then
                bo_pg_setup
            fi
            pg_used=1
            bo_pg_drop_databases_like "$BENCH_DB_LIKE" # a leftover of an interrupted run
            bo_pg_psql "$BO_PG_URL" -c "create database $BENCH_DB" || bo_die "could not create database $BENCH_DB"
            url=$(bo_pg_url_with_db "$BO_PG_URL" "$BENCH_DB")
            pg_note="PostgreSQL $(bo_pg_psql "$BO_PG_URL" -At -c 'show server_version') ($BO_PG_SOURCE)"
            ;;
    esac
    if [[ $engine == postgres && " $BENCH_SUITES " == *" ceiling "* ]]; then
        # Before the server starts, so the two never share the machine.
        run_pgbench_ceiling "$url"
    fi
    start_server "$engine" "$url"

    local org ev tt c
    org=$(admin_post /api/v1/organizations '{"name":"Bench"}')
    ev=$(admin_post /api/v1/events \
        "{\"organization_id\":$org,\"name\":\"Bench\",\"starts_at\":\"2030-01-01T20:00:00Z\",\"currency\":\"EUR\"}")

    if [[ $BENCH_WARMUP_SECONDS -gt 0 ]]; then
        tt=$(new_ticket_type "$ev" "Warm-up")
        bo_log "$engine: warm-up, ${BENCH_WARMUP_SECONDS}s"
        run_wrk "$engine" "$((threads_max * 2))" "$BENCH_WARMUP_SECONDS" "$ev" "$tt"
    fi
    for c in "${levels[@]}"; do
        [[ " $BENCH_SUITES " == *" holds "* ]] || break
        tt=$(new_ticket_type "$ev" "GA c$c")
        bo_log "$engine: $c client(s), ${BENCH_SECONDS}s"
        run_wrk "$engine" "$c" "$BENCH_SECONDS" "$ev" "$tt"
        local created non201 sockerr rps p50 p99
        read -r created non201 sockerr rps p50 p99 <<<"$RUN_FIELDS"
        results+=("$engine $c $rps $created $non201 $sockerr $p50 $p99")
        bo_log "$engine: $c client(s): $rps holds/s, p50 $p50 ms, p99 $p99 ms, non-201 $non201, socket errors $sockerr"
    done

    if [[ " $BENCH_SUITES " == *" payments "* ]]; then
        tt=$(new_ticket_type "$ev" "Payments")
        bo_log "$engine: payments, $BENCH_PAYMENT_CLIENTS client(s), ~$((BENCH_SECONDS * 2))s"
        local line
        line=$(timeout --kill-after=10 "$((BENCH_SECONDS * 4 + 120))" \
            python3 "$ROOT/scripts/lib/bench_payments.py" "$base" "$TOKEN" "$ev" "$tt" \
            "$BENCH_SECONDS" "$BENCH_PAYMENT_CLIENTS" | grep -m 1 '^BENCH_PAYMENTS ') ||
            bo_die "$engine: the payments benchmark failed"
        local fields
        fields=$(python3 -c 'import sys; kv = dict(p.split("=", 1) for p in sys.argv[1].split()[1:]); print(kv["get_p50_ms"], kv["replay_p50_ms"], kv["ratio"], kv["creations_per_s"], kv["created"], kv["failures"])' "$line")
        payment_results+=("$engine $BENCH_PAYMENT_CLIENTS $fields")
        bo_log "$engine: payments: $line"
    fi

    if [[ " $BENCH_SUITES " == *" webhooks "* ]]; then
        tt=$(new_ticket_type "$ev" "Webhooks")
        bo_log "$engine: webhooks, $BENCH_PAYMENT_CLIENTS client(s)"
        local line
        line=$(timeout --kill-after=10 "$((BENCH_SECONDS * 4 + 180))" \
            python3 "$ROOT/scripts/lib/bench_webhooks.py" "$base" "$ev" "$tt" \
            "$BENCH_SECONDS" "$BENCH_PAYMENT_CLIENTS" "$WEBHOOK_SECRET" | grep -m 1 '^BENCH_WEBHOOKS ') ||
            bo_die "$engine: the webhooks benchmark failed"
        local fields
        fields=$(python3 -c 'import sys; kv = dict(p.split("=", 1) for p in sys.argv[1].split()[1:]); print(kv["distinct_per_s"], kv["applied"], kv["redeliveries_per_s"], kv["duplicates"])' "$line")
        webhook_results+=("$engine $BENCH_PAYMENT_CLIENTS $fields")
        bo_log "$engine: webhooks: $line"
    fi

    if [[ " $BENCH_SUITES " == *" errors "* ]]; then
        bo_log "$engine: errors (Sentry envelopes), $BENCH_ERROR_CLIENTS sender(s), ${BENCH_SECONDS}s"
        run_errors "$engine" "$BENCH_ERROR_CLIENTS" "$BENCH_SECONDS" "$org"
        local ok non200 sockerr stored lost rps p50 p99 groups
        read -r ok non200 sockerr stored lost rps p50 p99 groups <<<"$ERROR_FIELDS"
        error_results+=("$engine $BENCH_ERROR_CLIENTS $rps $ok $non200 $sockerr $stored $lost $p50 $p99 $groups")
        bo_log "$engine: errors: $rps stored/s, $ok answered 200, $stored stored, $lost lost, p50 $p50 ms, p99 $p99 ms, $groups groups"
    fi

    stop_server
    if [[ $engine == postgres && $BO_PG_OWNED -eq 0 ]]; then
        bo_pg_drop_databases_like "$BENCH_DB_LIKE"
    fi
}

started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for e in "${engines[@]}"; do
    bench_engine "$e"
done

# --- report -------------------------------------------------------------------------
table() {
    printf '| engine | clients | holds/s | holds (201) | non-201 answers | socket errors | p50 ms | p99 ms |\n'
    printf '|---|---:|---:|---:|---:|---:|---:|---:|\n'
    local r
    for r in "${results[@]}"; do
        # shellcheck disable=SC2086 # fields are single words
        printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' $r
    done
}

payment_table() {
    printf '| engine | clients | GET order p50 ms | replay p50 ms | replay / GET | PaymentIntents created/s | created | failed |\n'
    printf '|---|---:|---:|---:|---:|---:|---:|---:|\n'
    local r
    for r in "${payment_results[@]}"; do
        # shellcheck disable=SC2086 # fields are single words
        printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' $r
    done
}

webhook_table() {
    printf '| engine | clients | distinct events applied/s | applied | redeliveries/s | duplicates |\n'
    printf '|---|---:|---:|---:|---:|---:|\n'
    local r
    for r in "${webhook_results[@]}"; do
        # shellcheck disable=SC2086 # fields are single words
        printf '| %s | %s | %s | %s | %s | %s |\n' $r
    done
}

# The pgbench ceiling beside boxoffice's PostgreSQL holds/s at the same client count.
ceiling_table() {
    printf '| clients | pgbench one-hold transactions/s | pgbench avg latency ms | boxoffice holds/s (HTTP) | boxoffice / pgbench |\n'
    printf '|---:|---:|---:|---:|---:|\n'
    local r c tps lat holds h e cl rps
    for r in "${ceiling_results[@]}"; do
        read -r c tps lat <<<"$r"
        holds=""
        for h in "${results[@]}"; do
            read -r e cl rps _ <<<"$h"
            if [[ $e == postgres && $cl == "$c" && -z $holds ]]; then
                holds=$rps
            fi
        done
        printf '| %s | %s | %s | %s | %s |\n' "$c" "$tps" "$lat" "${holds:--}" \
            "$(if [[ -n $holds ]]; then python3 -c "print('%.2f' % ($holds / $tps))"; else echo -; fi)"
    done
}

error_table() {
    printf '| engine | senders | events stored/s | answered 200 | other answers | socket errors | stored | lost | p50 ms | p99 ms | groups |\n'
    printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
    local r
    for r in "${error_results[@]}"; do
        # shellcheck disable=SC2086 # fields are single words
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' $r
    done
}

mkdir -p bench-results
report="bench-results/holds-$(date -u +%Y-%m-%d-%H%M%S).md"
{
    printf '# Holds benchmark (POST /api/v1/reservations)\n\n'
    printf -- '- started: %s\n' "$started"
    printf -- '- commit: %s%s\n' "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        "$(git diff --quiet HEAD -- 2>/dev/null || echo ' (work tree modified)')"
    printf -- '- machine: %s cores, %s\n' "$threads_max" \
        "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)"
    printf -- '- binary: %s\n' "$BENCH_BIN"
    printf -- '- per level: %ss (warm-up %ss per engine), one fresh ticket type per level, quantity 1 per hold\n' \
        "$BENCH_SECONDS" "$BENCH_WARMUP_SECONDS"
    printf -- '- SQLite: file in a temp dir; %s\n' "${pg_note:-PostgreSQL: not run}"
    printf -- '- load: wrk on the same machine, 127.0.0.1, threads = min(clients, %s)\n\n' "$threads_max"
    table
    printf '\nholds/s counts 201 answers only; other answers (non-2xx, e.g. 409 sold_out or 429) and socket errors are not holds. p50/p99 cover all answers.\n'
    if [[ ${#ceiling_results[@]} -gt 0 ]]; then
        printf '\n## The database ceiling (pgbench, one hold per transaction, same PostgreSQL)\n\n'
        ceiling_table
    fi
    if [[ ${#payment_results[@]} -gt 0 ]]; then
        printf '\n## Payments (scripts/lib/bench_payments.py, Python keep-alive clients)\n\n'
        payment_table
    fi
    if [[ ${#webhook_results[@]} -gt 0 ]]; then
        printf '\n## Webhooks (scripts/lib/bench_webhooks.py, signed like Stripe)\n\n'
        webhook_table
    fi
    if [[ ${#error_results[@]} -gt 0 ]]; then
        printf '\n## Sentry envelopes (wrk, one distinct ~2.5 KB event per request, stored and grouped)\n\n'
        error_table
    fi
} >"$report"

echo
table
if [[ ${#ceiling_results[@]} -gt 0 ]]; then
    echo
    ceiling_table
fi
if [[ ${#payment_results[@]} -gt 0 ]]; then
    echo
    payment_table
fi
if [[ ${#webhook_results[@]} -gt 0 ]]; then
    echo
    webhook_table
fi
if [[ ${#error_results[@]} -gt 0 ]]; then
    echo
    error_table
fi
echo
bo_log "written to $report"
