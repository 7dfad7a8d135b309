#!/usr/bin/env bash
#
# scripts/bench.sh — one-command benchmark suite of boxoffice on SQLite and on
# PostgreSQL: holds (POST /api/v1/reservations) over HTTP against the database's own
# ceiling, holds over many ticket types, batching on/off, payments, webhooks, Sentry
# envelopes, the expiry sweeper at 1M holds, server memory and start time — printed side
# by side, with a final "Goals" table (each goal of the batched-holds issue, measured,
# met or not), all from ONE run.
#
# Why it exists: holds are the hot path of a sale (everyone clicks "buy" at once for a
# hot event), and each one is a durable commit (SPEC §2: no weaker commits for speed).
# This script gives repeatable numbers for "how many holds per second, at what latency"
# per storage engine and concurrency (and the rest of the system's costs), to compare
# changes against — and to prove or disprove the performance goals in one run.
#
# What it does:
#   1. builds the release binary (`cargo build --release --locked -p boxoffice`);
#   2. for each engine — SQLite (a file in a temp dir) and PostgreSQL (a fresh database
#      `boxoffice_bench` on the server scripts/test.sh would use, see
#      scripts/lib/postgres.sh; dropped afterwards; helper databases boxoffice_bench_*
#      likewise), in this order:
#        ceiling   (PostgreSQL) pgbench's one-hold transaction, before any server runs;
#        start     start to first answer: exec of `boxoffice serve` on a fresh database
#                  (migrations included) to the first 200 of GET /healthz, polled every
#                  ~5 ms (scripts/lib/bench_start.py); median of BENCH_START_RUNS starts;
#        then `boxoffice serve` on 127.0.0.1 (default batching), GET /readyz, and:
#        memory    idle RSS (VmRSS) after ~2 s of idleness — and, after the hot-type runs
#                  (all BENCH_CONCURRENCY levels), the peak RSS (VmHWM) as "loaded";
#        holds     one hot ticket type (a fresh one per level, capacity 10,000,000), wrk
#                  for BENCH_SECONDS per client count of BENCH_CONCURRENCY;
#        types100  one event with 100 ticket types, wrk choosing a type at random per
#                  request, BENCH_TYPES_CLIENTS clients (no hot row);
#        payments, webhooks, errors (see BENCH_SUITES);
#        nobatch   the server restarted with `--hold-batch-max 1` (one transaction per
#                  hold) and the hot-type run at BENCH_NOBATCH_CLIENTS; the restart
#                  comes after the other suites, where the server stops anyway (skipped
#                  with a note when the binary has no --hold-batch-max);
#        sweeper   with no server running: a fresh migrated database loaded set-based
#                  (generate_series / a recursive CTE in the sqlite3 CLI) with
#                  BENCH_SWEEP_HOLDS expired active holds (one hold_item each, over 4
#                  ticket types, `held` raised to match), then `boxoffice sweep` timed;
#                  again on a fresh database with the same expired holds PLUS as many
#                  live (unexpired) ones; both verified with SQL afterwards (exactly
#                  that many expired, the live ones untouched, `held` = the live count);
#   3. prints the tables and writes them to bench-results/holds-<date>.md (git-ignored);
#      with BENCH_WRITE=FILE (e.g. BENCHMARKS.md) also a complete, publishable markdown
#      file there: the command to reproduce, the machine (cores, CPU, RAM, kernel,
#      PostgreSQL version and settings, SQLite version), commit, date, all tables, goals.
#
# All traffic goes to 127.0.0.1 only; every loop is bounded in count and time; the
# servers (and a throw-away PostgreSQL) are stopped on exit, also on failure or Ctrl-C.
#
# Duration of a full default run on a quiet 2-core machine, after the build: roughly
# 15–20 minutes — per engine ~1 min holds (warm-up + 5 levels x 10 s), ~1 min pgbench
# (PostgreSQL), ~15 s each types100 and nobatch, ~2 min payments + webhooks + errors,
# ~15 s start, and the sweeper: loading 1M then 2M holds plus two sweeps (minutes,
# most of it the bulk load on PostgreSQL).
#
# Environment:
#   BENCH_CONCURRENCY     client counts to measure (holds, ceiling), default "1 8 32 64 256"
#   BENCH_SECONDS         seconds per level (and per types100/nobatch/errors run), default 10
#   BENCH_WARMUP_SECONDS  unrecorded warm-up per engine (own ticket type), default 2; 0 = none
#   BENCH_ENGINES         default "sqlite postgres"
#   BENCH_BIN             use this boxoffice binary instead of building one
#   BENCH_SUITES          default "holds ceiling types100 nobatch payments webhooks errors
#                         sweeper memory start"; any subset, in any order:
#                         holds = hot-type holds at every BENCH_CONCURRENCY level;
#                         ceiling = (PostgreSQL only) the database's own one-hold ceiling:
#                         pgbench running the equivalent transaction (a conditional
#                         UPDATE of one hot counter row + one INSERT) at the same client
#                         counts, printed beside boxoffice's holds/s with their ratio;
#                         types100 = holds spread over 100 ticket types of one event;
#                         nobatch = the hot-type run with batching off (--hold-batch-max 1);
#                         payments = replay latency relative to GET of the order, and
#                         PaymentIntent creations per second against the in-process
#                         Stripe double (scripts/lib/bench_payments.py); webhooks = signed
#                         deliveries applied per second, distinct and repeated
#                         (bench_webhooks.py); errors = Sentry envelopes stored and grouped
#                         per second (wrk, a distinct event per request,
#                         BENCH_ERROR_CLIENTS senders; afterwards the stored count is
#                         compared with the 200 answers); sweeper = see above;
#                         memory = idle and loaded RSS; start = start to first answer
#   BENCH_PAYMENT_CLIENTS clients for the payments and webhooks suites, default 8
#   BENCH_ERROR_CLIENTS   concurrent senders for the errors suite, default 8
#   BENCH_TYPES_CLIENTS   clients for the types100 suite, default 64
#   BENCH_NOBATCH_CLIENTS clients for the nobatch suite, default 64
#   BENCH_SWEEP_HOLDS     expired holds for the sweeper suite (and live ones in its second
#                         round), default 1000000; 1000..5000000 (small for smoke runs)
#   BENCH_SWEEP_TIMEOUT   upper bound in seconds for each load and each sweep, default 900
#   BENCH_START_RUNS      starts per engine for the start suite (median), default 5 (1..21)
#   BENCH_WRITE           also write the complete report to this file (e.g. BENCHMARKS.md);
#                         default: none
#   BOXOFFICE_TEST_POSTGRES_URL, BOXOFFICE_TEST_FORCE_THROWAWAY_PG  as for scripts/test.sh
#
# Columns: holds/s = 201 answers per second of measured time; any other answer (non-2xx,
# or a 2xx other than 201) and socket errors are counted apart (they are not holds);
# p50/p99 = wrk's latency percentiles over all answers of that level.
# Goals: see the "Goals" table; the PostgreSQL ratio is given against pgbench at the same
# 64 clients and against pgbench's best figure at any client count (the stricter one).

set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
BO_LOG_PREFIX=bench.sh
# shellcheck source=scripts/lib/postgres.sh
source "$ROOT/scripts/lib/postgres.sh"
cd "$ROOT"

# The command that reproduces this run: the knobs given (all but BENCH_BIN), then the script.
REPRO_COMMAND=""
for knob in BENCH_CONCURRENCY BENCH_SECONDS BENCH_WARMUP_SECONDS BENCH_ENGINES BENCH_SUITES \
    BENCH_PAYMENT_CLIENTS BENCH_ERROR_CLIENTS BENCH_TYPES_CLIENTS BENCH_NOBATCH_CLIENTS \
    BENCH_SWEEP_HOLDS BENCH_SWEEP_TIMEOUT BENCH_START_RUNS BENCH_WRITE; do
    if [[ -n ${!knob+set} ]]; then
        REPRO_COMMAND+="$knob=$(printf '%q' "${!knob}") "
    fi
done
REPRO_COMMAND+="scripts/bench.sh"

BENCH_CONCURRENCY=${BENCH_CONCURRENCY:-"1 8 32 64 256"}
BENCH_SECONDS=${BENCH_SECONDS:-10}
BENCH_WARMUP_SECONDS=${BENCH_WARMUP_SECONDS:-2}
BENCH_ENGINES=${BENCH_ENGINES:-"sqlite postgres"}
BENCH_BIN=${BENCH_BIN:-}
BENCH_SUITES=${BENCH_SUITES:-"holds ceiling types100 nobatch payments webhooks errors sweeper memory start"}
BENCH_TYPES_CLIENTS=${BENCH_TYPES_CLIENTS:-64}
BENCH_NOBATCH_CLIENTS=${BENCH_NOBATCH_CLIENTS:-64}
BENCH_SWEEP_HOLDS=${BENCH_SWEEP_HOLDS:-1000000}
BENCH_SWEEP_TIMEOUT=${BENCH_SWEEP_TIMEOUT:-900}
BENCH_START_RUNS=${BENCH_START_RUNS:-5}
BENCH_WRITE=${BENCH_WRITE:-}
for knob in BENCH_TYPES_CLIENTS BENCH_NOBATCH_CLIENTS; do
    [[ ${!knob} =~ ^[0-9]+$ && ${!knob} -ge 1 && ${!knob} -le 1024 ]] || bo_die "$knob must be 1..1024, got '${!knob}'"
done
[[ $BENCH_SWEEP_HOLDS =~ ^[0-9]+$ && $BENCH_SWEEP_HOLDS -ge 1000 && $BENCH_SWEEP_HOLDS -le 5000000 ]] ||
    bo_die "BENCH_SWEEP_HOLDS must be 1000..5000000, got '$BENCH_SWEEP_HOLDS'"
[[ $BENCH_SWEEP_TIMEOUT =~ ^[0-9]+$ && $BENCH_SWEEP_TIMEOUT -ge 10 && $BENCH_SWEEP_TIMEOUT -le 7200 ]] ||
    bo_die "BENCH_SWEEP_TIMEOUT must be 10..7200, got '$BENCH_SWEEP_TIMEOUT'"
[[ $BENCH_START_RUNS =~ ^[0-9]+$ && $BENCH_START_RUNS -ge 1 && $BENCH_START_RUNS -le 21 ]] ||
    bo_die "BENCH_START_RUNS must be 1..21, got '$BENCH_START_RUNS'"
for suite in $BENCH_SUITES; do
    case $suite in
        holds | ceiling | types100 | nobatch | payments | webhooks | errors | sweeper | memory | start) ;;
        *) bo_die "BENCH_SUITES: unknown suite '$suite'" ;;
    esac
done
# has_suite NAME — true when NAME is in BENCH_SUITES.
has_suite() { [[ " $BENCH_SUITES " == *" $1 "* ]]; }
BENCH_ERROR_CLIENTS=${BENCH_ERROR_CLIENTS:-8}
[[ $BENCH_ERROR_CLIENTS =~ ^[0-9]+$ && $BENCH_ERROR_CLIENTS -ge 1 && $BENCH_ERROR_CLIENTS -le 256 ]] ||
    bo_die "BENCH_ERROR_CLIENTS must be 1..256, got '$BENCH_ERROR_CLIENTS'"
WEBHOOK_SECRET=whsec_bench_secret
BENCH_PAYMENT_CLIENTS=${BENCH_PAYMENT_CLIENTS:-8}
[[ $BENCH_PAYMENT_CLIENTS =~ ^[0-9]+$ && $BENCH_PAYMENT_CLIENTS -ge 1 && $BENCH_PAYMENT_CLIENTS -le 64 ]] ||
    bo_die "BENCH_PAYMENT_CLIENTS must be 1..64, got '$BENCH_PAYMENT_CLIENTS'"
BENCH_DB=boxoffice_bench
BENCH_DB_LIKE='boxoffice\_bench' # the same as a LIKE pattern
BENCH_AUX_DB_LIKE='boxoffice\_bench\_%' # helper databases: boxoffice_bench_sweep, _start

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
        bo_pg_drop_databases_like "$BENCH_AUX_DB_LIKE"
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

# start_server ENGINE DATABASE_URL [EXTRA_SERVE_ARGS...] — start `boxoffice serve` and
# wait for /readyz.
start_server() {
    local engine=$1 url=$2 attempt port i log="$WORK/server-$1.log"
    local extra=("${@:3}")
    for attempt in 1 2 3; do
        port=$(bo_free_port)
        base="http://127.0.0.1:$port"
        bo_log "$engine: starting boxoffice serve on 127.0.0.1:$port"
        # cwd = the temp dir, so anything the server writes by default (mail folder, …)
        # stays out of the work tree. In a session of its own (setsid), so a Ctrl-C
        # reaches only this script, which then stops the server with TERM.
        (cd "$WORK" && exec $setsid "$BENCH_BIN" serve --database-url "$url" --listen "127.0.0.1:$port" \
            --admin-token "$TOKEN" --rate-limit-per-minute 0 --error-rate-limit-per-minute 0 --hold-duration 15m \
            --sweep-interval 30s --stripe-webhook-secret "$WEBHOOK_SECRET" "${extra[@]}") >>"$log" 2>&1 </dev/null &
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

# run_wrk ENGINE CLIENTS SECONDS EVENT_ID TICKET_TYPE_ID [TAG [TYPES_FILE]] — one load
# run; with TYPES_FILE (ticket type ids as JSON literals, one a line) each request holds
# a type chosen at random from it instead of TICKET_TYPE_ID. TAG names the run's files.
# Sets RUN_FIELDS="created non201 socket_errors holds_per_s p50_ms p99_ms".
RUN_FIELDS=""
run_wrk() {
    local engine=$1 clients=$2 seconds=$3 ev=$4 tt=$5 tag=${6:-hot} types_file=${7:-}
    local threads=$((clients < threads_max ? clients : threads_max))
    local lua="$WORK/hold-$engine-$tag-$clients.lua" out="$WORK/wrk-$engine-$tag-$clients.txt"
    # The body is a Lua long string; done() prints one machine-readable line, so nothing
    # depends on wrk's human formatting ("1.23ms", "4.56k").
    cat >"$lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[{"event_id":$ev,"items":[{"ticket_type_id":$tt,"quantity":1}]}]==]

local threads = {}
local thread_no = 0
function setup(thread)
  thread_no = thread_no + 1
  thread:set("seed", thread_no)
  table.insert(threads, thread)
end
function init(args)
  created = 0; non2xx = 0; other2xx = 0
  math.randomseed(os.time() * 1000 + seed)
end
LUA
    if [[ -n $types_file ]]; then
        {
            printf 'local types = {\n'
            local id
            while IFS= read -r id; do
                printf '  [==[%s]==],\n' "$id"
            done <"$types_file"
            printf '}\n'
            cat <<LUA
local event = [==[$ev]==]
function request()
  local t = types[math.random(#types)]
  return wrk.format(nil, nil, nil,
    '{"event_id":' .. event .. ',"items":[{"ticket_type_id":' .. t .. ',"quantity":1}]}')
end
LUA
        } >>"$lua"
    fi
    cat >>"$lua" <<LUA
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
ceiling_results=() # "clients tps latency_avg_ms" (tps "skipped" when not measured)
ceiling_note=""
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
    # pgbench needs one connection per client: levels beyond what the server has free
    # (max_connections less those in use, less a margin for others) are skipped.
    local max_conn in_use room
    max_conn=$(bo_pg_psql "$url" -At -c 'show max_connections') || max_conn=100
    in_use=$(bo_pg_psql "$url" -At -c 'select count(*) from pg_stat_activity') || in_use=10
    room=$((max_conn - in_use - 5))
    for c in "${levels[@]}"; do
        local threads=$((c < threads_max ? c : threads_max)) out="$WORK/pgbench-$c.txt"
        if [[ $c -gt $room ]]; then
            bo_log "postgres: pgbench ceiling at $c clients skipped: max_connections $max_conn, $in_use in use"
            ceiling_results+=("$c skipped -")
            ceiling_note="pgbench levels above $room clients skipped: the server allows max_connections = $max_conn ($in_use in use)"
            continue
        fi
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

# new_ticket_types EVENT_ID COUNT PREFIX FILE — COUNT fresh ticket types (as
# new_ticket_type makes them), their ids written to FILE as JSON literals, one a line.
new_ticket_types() {
    local ev=$1 count=$2 prefix=$3 file=$4
    timeout --kill-after=5 120 python3 - "$base" "$TOKEN" "$ev" "$count" "$prefix" >"$file" <<'PY' ||
import json, sys, urllib.parse, urllib.request
base, token, ev, count, prefix = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
url = f"{base}/api/v1/events/{urllib.parse.quote(str(ev), safe='')}/ticket-types"
for i in range(count):
    body = json.dumps({"name": f"{prefix} {i + 1}", "price_cents": 1000, "capacity": 10000000, "max_per_order": 10})
    req = urllib.request.Request(url, data=body.encode(), method="POST", headers={
        "authorization": f"Bearer {token}", "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        if resp.status != 201:
            sys.exit(f"POST {url} answered {resp.status}")
        print(json.dumps(json.load(resp)["id"]))
PY
        bo_die "could not create $count ticket types"
    [[ $(wc -l <"$file") -eq $count ]] || bo_die "expected $count ticket type ids in $file"
}

# proc_kb PID FIELD — a field of /proc/PID/status in kB (VmRSS, VmHWM); "" if unreadable.
proc_kb() {
    sed -n "s/^$2:[[:space:]]*\([0-9]*\) kB$/\1/p" "/proc/$1/status" 2>/dev/null || true
}

# mb KB — kB as MB (MiB) with one decimal.
mb() {
    python3 -c 'import sys; print("%.1f" % (int(sys.argv[1]) / 1024))' "$1"
}

# supports_hold_batch — true when the binary has `serve --hold-batch-max`.
supports_hold_batch() {
    "$BENCH_BIN" serve --help 2>/dev/null | grep -q -- '--hold-batch-max'
}

# run_start_suite ENGINE — start to first answer, BENCH_START_RUNS times, each on a fresh
# database (migrations included); appends to start_results.
start_results=() # "engine median_ms min_ms max_ms runs rss_at_first_answer_mb"
run_start_suite() {
    local engine=$1 i url line ms times=() rss_kb=""
    for ((i = 1; i <= BENCH_START_RUNS; i++)); do
        case $engine in
            sqlite)
                rm -rf -- "$WORK"/start.db "$WORK"/start.db-*
                url="sqlite://$WORK/start.db"
                ;;
            postgres)
                bo_pg_drop_databases_like 'boxoffice\_bench\_start'
                bo_pg_psql "$BO_PG_URL" -c "create database boxoffice_bench_start" ||
                    bo_die "could not create database boxoffice_bench_start"
                url=$(bo_pg_url_with_db "$BO_PG_URL" boxoffice_bench_start)
                ;;
        esac
        line=$(timeout --kill-after=10 90 python3 "$ROOT/scripts/lib/bench_start.py" "$BENCH_BIN" "$url" "$WORK" \
            "$WORK/server-$engine-start.log" --admin-token "$TOKEN" --sweep-interval 30s |
            grep -m 1 '^BENCH_START ') || {
            tail -n 20 "$WORK/server-$engine-start.log" >&2
            bo_die "$engine: start-time run $i failed"
        }
        ms=$(sed -n 's/.* ms=\([0-9.]*\).*/\1/p' <<<"$line")
        [[ -n $rss_kb ]] || rss_kb=$(sed -n 's/.* rss_kb=\([0-9-]*\).*/\1/p' <<<"$line")
        times+=("$ms")
        bo_log "$engine: start $i of $BENCH_START_RUNS: first 200 of /healthz after $ms ms"
    done
    if [[ $engine == postgres ]]; then
        bo_pg_drop_databases_like 'boxoffice\_bench\_start'
    fi
    local stats
    stats=$(python3 -c 'import statistics, sys; t = [float(x) for x in sys.argv[1:]]; print("%.1f %.1f %.1f" % (statistics.median(t), min(t), max(t)))' "${times[@]}")
    start_results+=("$engine $stats $BENCH_START_RUNS $(if [[ ${rss_kb:--1} -ge 0 ]]; then mb "$rss_kb"; else echo -; fi)")
}

# sweep_load_sql ENGINE EXPIRED LIVE NOW_MS — set-based SQL that loads EXPIRED expired and
# LIVE unexpired active holds (one hold_item of quantity 1 each, over SWEEP_TYPES ticket
# types of one event) into a freshly migrated database, with ticket_types.held raised to
# match. Hold ids: hld_<16 hex digits>, 1..EXPIRED expired, the next LIVE live.
SWEEP_TYPES=4
sweep_load_sql() {
    local engine=$1 n=$2 live=$3 now=$4 total=$(($2 + $3))
    local created=$((now - 10800000)) # 3 h ago; expired: 1–2 h ago; live: in 24–25 h
    local expires="CASE WHEN g <= $n THEN $((now - 3600000)) - (g % 3600000) ELSE $((now + 86400000)) + (g % 3600000) END"
    printf 'BEGIN;\n'
    printf "INSERT INTO organizations (id, name, created_at) VALUES ('org_sweepbench', 'Sweep bench', %s);\n" "$created"
    printf "INSERT INTO events (id, organization_id, name, starts_at, currency, created_at)
  VALUES ('evt_sweepbench', 'org_sweepbench', 'Sweep bench', %s, 'EUR', %s);\n" "$((now + 30 * 86400000))" "$created"
    if [[ $engine == postgres ]]; then
        printf "INSERT INTO ticket_types (id, event_id, name, price_cents, capacity, max_per_order, on_sale, sold, held, created_at)
  SELECT 'tkt_sweepbench' || t, 'evt_sweepbench', 'Type ' || t, 1000, 100000000, 10, TRUE, 0, 0, %s
  FROM generate_series(0, %s) t;\n" "$created" "$((SWEEP_TYPES - 1))"
        printf "INSERT INTO holds (id, event_id, status, customer_email, amount_cents, currency, created_at, expires_at, updated_at)
  SELECT 'hld_' || lpad(to_hex(g), 16, '0'), 'evt_sweepbench', 'active', NULL, 1000, 'EUR', %s, %s, %s
  FROM generate_series(1, %s) g;\n" "$created" "$expires" "$created" "$total"
        printf "INSERT INTO hold_items (hold_id, ticket_type_id, quantity, unit_price_cents)
  SELECT 'hld_' || lpad(to_hex(g), 16, '0'), 'tkt_sweepbench' || (g %% %s), 1, 1000
  FROM generate_series(1, %s) g;\n" "$SWEEP_TYPES" "$total"
    else
        printf "WITH RECURSIVE s(t) AS (SELECT 0 UNION ALL SELECT t + 1 FROM s WHERE t < %s)
INSERT INTO ticket_types (id, event_id, name, price_cents, capacity, max_per_order, on_sale, sold, held, created_at)
  SELECT 'tkt_sweepbench' || t, 'evt_sweepbench', 'Type ' || t, 1000, 100000000, 10, 1, 0, 0, %s FROM s;\n" \
            "$((SWEEP_TYPES - 1))" "$created"
        printf "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < %s)
INSERT INTO holds (id, event_id, status, customer_email, amount_cents, currency, created_at, expires_at, updated_at)
  SELECT printf('hld_%%016x', g), 'evt_sweepbench', 'active', NULL, 1000, 'EUR', %s, %s, %s FROM s;\n" \
            "$total" "$created" "$expires" "$created"
        printf "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < %s)
INSERT INTO hold_items (hold_id, ticket_type_id, quantity, unit_price_cents)
  SELECT printf('hld_%%016x', g), 'tkt_sweepbench' || (g %% %s), 1, 1000 FROM s;\n" "$total" "$SWEEP_TYPES"
    fi
    printf "UPDATE ticket_types SET held = (SELECT count(*) FROM hold_items i WHERE i.ticket_type_id = ticket_types.id)
  WHERE event_id = 'evt_sweepbench';\n"
    printf 'COMMIT;\n'
    if [[ $engine == postgres ]]; then
        # What autovacuum would have done to tables that grew this way over hours.
        printf 'VACUUM (ANALYZE) holds;\nVACUUM (ANALYZE) hold_items;\nVACUUM (ANALYZE) ticket_types;\n'
    else
        printf 'ANALYZE;\n'
    fi
}

# sweep_sql ENGINE URL SQL — run SQL (read from stdin when SQL is "-") against the
# sweeper's database; rows come out with "|" between columns. Bounded in time.
sweep_sql() {
    local engine=$1 url=$2 sql=$3
    local bound=(timeout --kill-after=10 "$BENCH_SWEEP_TIMEOUT")
    if [[ $engine == postgres ]]; then
        if [[ $sql == - ]]; then
            "${bound[@]}" psql -X -w -q -v ON_ERROR_STOP=1 -At "$url"
        else
            "${bound[@]}" psql -X -w -q -v ON_ERROR_STOP=1 -At "$url" -c "$sql"
        fi
    else
        local file=${url#sqlite://}
        if [[ $sql == - ]]; then
            "${bound[@]}" sqlite3 -bail -batch "$file"
        else
            "${bound[@]}" sqlite3 -bail -batch "$file" "$sql"
        fi
    fi
}

# now_ms — the clock in unix milliseconds.
now_ms() {
    local ns
    ns=$(date +%s%N)
    printf '%s\n' "$((ns / 1000000))"
}

# run_sweeper_round ENGINE EXPIRED LIVE — fresh migrated database, set-based load,
# `boxoffice sweep` timed, verified with SQL; appends to sweep_results. No server runs.
sweep_results=() # "engine expired live load_s sweep_s expired_per_s run_s verified"
run_sweeper_round() {
    local engine=$1 n=$2 live=$3 url log="$WORK/sweep-$1.log"
    case $engine in
        sqlite)
            rm -rf -- "$WORK"/sweep.db "$WORK"/sweep.db-*
            url="sqlite://$WORK/sweep.db"
            ;;
        postgres)
            bo_pg_drop_databases_like 'boxoffice\_bench\_sweep'
            bo_pg_psql "$BO_PG_URL" -c "create database boxoffice_bench_sweep" ||
                bo_die "could not create database boxoffice_bench_sweep"
            url=$(bo_pg_url_with_db "$BO_PG_URL" boxoffice_bench_sweep)
            ;;
    esac
    (cd "$WORK" && exec timeout --kill-after=10 300 "$BENCH_BIN" migrate --database-url "$url") >>"$log" 2>&1 ||
        { tail -n 20 "$log" >&2; bo_die "$engine: boxoffice migrate failed"; }
    local now t0 t1 load_s
    now=$(now_ms)
    bo_log "$engine: sweeper: loading $n expired + $live live holds"
    t0=$(now_ms)
    sweep_load_sql "$engine" "$n" "$live" "$now" | sweep_sql "$engine" "$url" - >>"$log" 2>&1 ||
        { tail -n 20 "$log" >&2; bo_die "$engine: loading the sweeper's holds failed"; }
    t1=$(now_ms)
    load_s=$(python3 -c "print('%.1f' % (($t1 - $t0) / 1000))")
    bo_log "$engine: sweeper: loaded in ${load_s}s; running boxoffice sweep"
    local out="$WORK/sweep-$engine-$live.json" rc=0
    t0=$(now_ms)
    (cd "$WORK" && exec timeout --kill-after=10 "$BENCH_SWEEP_TIMEOUT" "$BENCH_BIN" sweep --database-url "$url") \
        >"$out" 2>>"$log" || rc=$?
    t1=$(now_ms)
    [[ $rc -eq 0 ]] || { tail -n 20 "$log" >&2; bo_die "$engine: boxoffice sweep failed (exit code $rc)"; }
    local fields
    fields=$(python3 - "$out" "$((t1 - t0))" "$n" <<'PY'
import datetime, json, sys
run = json.loads([l for l in open(sys.argv[1]) if l.strip().startswith("{")][-1])
wall_ms, n = int(sys.argv[2]), int(sys.argv[3])
def ms(v):
    if isinstance(v, (int, float)):
        return float(v)
    return datetime.datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp() * 1000
try:
    run_s = "%.2f" % ((ms(run["finished_at"]) - ms(run["started_at"])) / 1000)
except Exception:
    run_s = "-"
# expired/s over the sweep itself (its job run) when known, else over the process.
secs = float(run_s) if run_s != "-" and float(run_s) > 0 else wall_ms / 1000
print(run["affected"], run["outcome"], "%.2f" % (wall_ms / 1000), "%.0f" % (n / max(secs, 0.001)), run_s)
PY
    ) || bo_die "$engine: cannot read boxoffice sweep's output: $(head -c 500 "$out")"
    local affected outcome sweep_s per_s run_s
    read -r affected outcome sweep_s per_s run_s <<<"$fields"
    # Verify: exactly n expired, the live ones active and untouched, held = live.
    local check expected verified=yes
    check=$(sweep_sql "$engine" "$url" "SELECT
        (SELECT count(*) FROM holds WHERE status = 'expired'),
        (SELECT count(*) FROM holds WHERE status = 'active' AND expires_at > $now AND updated_at = $((now - 10800000))),
        (SELECT count(*) FROM holds),
        (SELECT sum(held) FROM ticket_types WHERE event_id = 'evt_sweepbench')") ||
        bo_die "$engine: the sweeper's verification query failed"
    expected="$n|$live|$((n + live))|$live"
    if [[ $affected != "$n" || $outcome != succeeded || $check != "$expected" ]]; then
        verified=NO
        bo_log "$engine: sweeper verification FAILED: affected=$affected outcome=$outcome;" \
            "expired|live untouched|total|held = $check, expected $expected"
    fi
    sweep_results+=("$engine $n $live $load_s $sweep_s $per_s $run_s $verified")
    bo_log "$engine: sweeper: $n expired (+$live live) swept in ${sweep_s}s ($per_s/s; in-run ${run_s}s), verified: $verified"
    if [[ $engine == postgres ]]; then
        bo_pg_drop_databases_like 'boxoffice\_bench\_sweep'
    else
        rm -rf -- "$WORK"/sweep.db "$WORK"/sweep.db-*
    fi
}

# --- the benchmark ------------------------------------------------------------------
results=() # "engine clients holds_per_s created non201 socket_errors p50 p99"
payment_results=() # "engine clients get_p50 replay_p50 ratio creations_per_s created failures"
webhook_results=() # "engine clients distinct_per_s applied redeliveries_per_s duplicates"
error_results=() # "engine clients stored_per_s ok non200 socket_errors stored lost p50 p99 groups"
types_results=() # "engine clients holds_per_s created non201 socket_errors p50 p99"
nobatch_results=() # the same fields, batching off
mem_results=() # "engine idle_rss_mb peak_rss_mb rss_after_mb"
nobatch_note=""
pg_note=""
pg_settings=""

# bench_served ENGINE DATABASE_URL — the suites that need the server with its default
# settings (memory, holds, types100, payments, webhooks, errors); sets org.
bench_served() {
    local engine=$1 url=$2
    start_server "$engine" "$url"
    local idle_kb="" hwm_kb=""
    if has_suite memory; then
        sleep 2 # idle: ready, nothing asked yet
        idle_kb=$(proc_kb "$server_pid" VmRSS)
        bo_log "$engine: idle RSS ${idle_kb:-?} kB (pid $server_pid, $(cat "/proc/$server_pid/comm" 2>/dev/null || echo '?'))"
    fi

    local ev tt c
    org=$(admin_post /api/v1/organizations '{"name":"Bench"}')
    ev=$(admin_post /api/v1/events \
        "{\"organization_id\":$org,\"name\":\"Bench\",\"starts_at\":\"2030-01-01T20:00:00Z\",\"currency\":\"EUR\"}")

    if [[ $BENCH_WARMUP_SECONDS -gt 0 ]] && has_suite holds; then
        tt=$(new_ticket_type "$ev" "Warm-up")
        bo_log "$engine: warm-up, ${BENCH_WARMUP_SECONDS}s"
        run_wrk "$engine" "$((threads_max * 2))" "$BENCH_WARMUP_SECONDS" "$ev" "$tt" warmup
    fi
    for c in "${levels[@]}"; do
        has_suite holds || break
        tt=$(new_ticket_type "$ev" "GA c$c")
        bo_log "$engine: $c client(s), ${BENCH_SECONDS}s"
        run_wrk "$engine" "$c" "$BENCH_SECONDS" "$ev" "$tt"
        local created non201 sockerr rps p50 p99
        read -r created non201 sockerr rps p50 p99 <<<"$RUN_FIELDS"
        results+=("$engine $c $rps $created $non201 $sockerr $p50 $p99")
        bo_log "$engine: $c client(s): $rps holds/s, p50 $p50 ms, p99 $p99 ms, non-201 $non201, socket errors $sockerr"
    done
    if has_suite memory; then
        hwm_kb=$(proc_kb "$server_pid" VmHWM)
        local now_kb
        now_kb=$(proc_kb "$server_pid" VmRSS)
        mem_results+=("$engine $(if [[ -n $idle_kb ]]; then mb "$idle_kb"; else echo -; fi) $(if [[ -n $hwm_kb ]]; then mb "$hwm_kb"; else echo -; fi) $(if [[ -n $now_kb ]]; then mb "$now_kb"; else echo -; fi)")
        bo_log "$engine: RSS idle ${idle_kb:-?} kB, peak after the hot-type runs ${hwm_kb:-?} kB, now ${now_kb:-?} kB"
    fi

    if has_suite types100; then
        local ev100
        ev100=$(admin_post /api/v1/events \
            "{\"organization_id\":$org,\"name\":\"Bench 100 types\",\"starts_at\":\"2030-01-01T20:00:00Z\",\"currency\":\"EUR\"}")
        new_ticket_types "$ev100" 100 "Type" "$WORK/types100-$engine.txt"
        bo_log "$engine: 100 ticket types, $BENCH_TYPES_CLIENTS client(s), ${BENCH_SECONDS}s"
        run_wrk "$engine" "$BENCH_TYPES_CLIENTS" "$BENCH_SECONDS" "$ev100" '""' types100 "$WORK/types100-$engine.txt"
        local created non201 sockerr rps p50 p99
        read -r created non201 sockerr rps p50 p99 <<<"$RUN_FIELDS"
        types_results+=("$engine $BENCH_TYPES_CLIENTS $rps $created $non201 $sockerr $p50 $p99")
        bo_log "$engine: 100 types: $rps holds/s, p50 $p50 ms, p99 $p99 ms, non-201 $non201, socket errors $sockerr"
    fi

    if has_suite payments; then
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

    if has_suite webhooks; then
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

    if has_suite errors; then
        bo_log "$engine: errors (Sentry envelopes), $BENCH_ERROR_CLIENTS sender(s), ${BENCH_SECONDS}s"
        run_errors "$engine" "$BENCH_ERROR_CLIENTS" "$BENCH_SECONDS" "$org"
        local ok non200 sockerr stored lost rps p50 p99 groups
        read -r ok non200 sockerr stored lost rps p50 p99 groups <<<"$ERROR_FIELDS"
        error_results+=("$engine $BENCH_ERROR_CLIENTS $rps $ok $non200 $sockerr $stored $lost $p50 $p99 $groups")
        bo_log "$engine: errors: $rps stored/s, $ok answered 200, $stored stored, $lost lost, p50 $p50 ms, p99 $p99 ms, $groups groups"
    fi

    stop_server
}

bench_engine() {
    local engine=$1 url ev tt
    case $engine in
        sqlite)
            url="sqlite://$WORK/bench.db"
            ;;
        postgres)
            if [[ -z $BO_PG_URL ]]; then
                bo_pg_setup
            fi
            pg_used=1
            bo_pg_drop_databases_like "$BENCH_DB_LIKE" # leftovers of an interrupted run
            bo_pg_drop_databases_like "$BENCH_AUX_DB_LIKE"
            bo_pg_psql "$BO_PG_URL" -c "create database $BENCH_DB" || bo_die "could not create database $BENCH_DB"
            url=$(bo_pg_url_with_db "$BO_PG_URL" "$BENCH_DB")
            pg_note="PostgreSQL $(bo_pg_psql "$BO_PG_URL" -At -c 'show server_version') ($BO_PG_SOURCE)"
            pg_settings=$(bo_pg_psql "$BO_PG_URL" -At -c "select name || ' = ' || current_setting(name)
                from pg_settings where name in ('synchronous_commit', 'fsync', 'wal_sync_method', 'shared_buffers',
                'max_connections', 'commit_delay', 'full_page_writes') order by name" | paste -sd ';' | sed 's/;/; /g') ||
                pg_settings="?"
            ;;
    esac
    if [[ $engine == postgres ]] && has_suite ceiling; then
        # Before the server starts, so the two never share the machine.
        run_pgbench_ceiling "$url"
    fi
    if has_suite start; then
        bo_log "$engine: start to first answer, $BENCH_START_RUNS start(s) on a fresh database each"
        run_start_suite "$engine"
    fi
    local org=""
    if has_suite holds || has_suite types100 || has_suite payments || has_suite webhooks ||
        has_suite errors || has_suite memory; then
        bench_served "$engine" "$url"
    fi

    # Batching off: the one restart this needs comes here, where the server stops anyway.
    if has_suite nobatch; then
        if supports_hold_batch; then
            start_server "$engine" "$url" --hold-batch-max 1
            [[ -n $org ]] || org=$(admin_post /api/v1/organizations '{"name":"Bench"}')
            ev=$(admin_post /api/v1/events \
                "{\"organization_id\":$org,\"name\":\"Bench no batching\",\"starts_at\":\"2030-01-01T20:00:00Z\",\"currency\":\"EUR\"}")
            if [[ $BENCH_WARMUP_SECONDS -gt 0 ]]; then
                tt=$(new_ticket_type "$ev" "Warm-up nobatch")
                run_wrk "$engine" "$((threads_max * 2))" "$BENCH_WARMUP_SECONDS" "$ev" "$tt" warmup
            fi
            tt=$(new_ticket_type "$ev" "GA nobatch")
            bo_log "$engine: batching off (--hold-batch-max 1), $BENCH_NOBATCH_CLIENTS client(s), ${BENCH_SECONDS}s"
            run_wrk "$engine" "$BENCH_NOBATCH_CLIENTS" "$BENCH_SECONDS" "$ev" "$tt" nobatch
            local created non201 sockerr rps p50 p99
            read -r created non201 sockerr rps p50 p99 <<<"$RUN_FIELDS"
            nobatch_results+=("$engine $BENCH_NOBATCH_CLIENTS $rps $created $non201 $sockerr $p50 $p99")
            bo_log "$engine: batching off: $rps holds/s, p50 $p50 ms, p99 $p99 ms, non-201 $non201"
            stop_server
        else
            bo_log "$engine: nobatch skipped: this binary has no 'serve --hold-batch-max'"
            nobatch_note="skipped: the binary has no \`serve --hold-batch-max\` (batched holds not built in yet)"
        fi
    fi

    if [[ $engine == postgres && $BO_PG_OWNED -eq 0 ]]; then
        bo_pg_drop_databases_like "$BENCH_DB_LIKE"
    fi

    if has_suite sweeper; then
        if [[ $engine == sqlite ]] && ! command -v sqlite3 >/dev/null 2>&1; then
            bo_apt_install sqlite3
        fi
        run_sweeper_round "$engine" "$BENCH_SWEEP_HOLDS" 0
        run_sweeper_round "$engine" "$BENCH_SWEEP_HOLDS" "$BENCH_SWEEP_HOLDS"
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
        if [[ $tps == skipped ]]; then
            printf '| %s | skipped (connections) | - | %s | - |\n' "$c" "${holds:--}"
            continue
        fi
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

# Holds over 100 ticket types beside the hot type at the same client count.
types_table() {
    printf '| engine | clients | holds/s (100 types) | holds (201) | non-201 answers | socket errors | p50 ms | p99 ms | hot type holds/s | 100 types / hot |\n'
    printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
    local r e c rps created non201 sockerr p50 p99 hot
    for r in "${types_results[@]}"; do
        read -r e c rps created non201 sockerr p50 p99 <<<"$r"
        hot=$(hot_rps "$e" "$c")
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$e" "$c" "$rps" "$created" "$non201" \
            "$sockerr" "$p50" "$p99" "${hot:--}" "$(ratio "$rps" "$hot")"
    done
}

# Batching off beside batching on (the holds suite) at the same client count.
nobatch_table() {
    printf '| engine | clients | holds/s batching off | p50 ms | p99 ms | non-201 | holds/s batching on | p99 ms on | on / off |\n'
    printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|\n'
    local r e c rps created non201 sockerr p50 p99 hot hot99
    for r in "${nobatch_results[@]}"; do
        read -r e c rps created non201 sockerr p50 p99 <<<"$r"
        hot=$(hot_rps "$e" "$c")
        hot99=$(hot_field "$e" "$c" 8)
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$e" "$c" "$rps" "$p50" "$p99" "$non201" \
            "${hot:--}" "${hot99:--}" "$(ratio "$hot" "$rps")"
    done
}

mem_table() {
    printf '| engine | RSS idle MB (VmRSS, ready + 2 s) | RSS peak MB (VmHWM, after hot-type runs up to %s clients) | RSS MB after those runs |\n' \
        "$(printf '%s\n' "${levels[@]}" | sort -n | tail -n 1)"
    printf '|---|---:|---:|---:|\n'
    local r
    for r in "${mem_results[@]}"; do
        # shellcheck disable=SC2086 # fields are single words
        printf '| %s | %s | %s | %s |\n' $r
    done
}

start_table() {
    printf '| engine | start to first answer, median ms | min ms | max ms | starts | RSS MB at first answer |\n'
    printf '|---|---:|---:|---:|---:|---:|\n'
    local r
    for r in "${start_results[@]}"; do
        # shellcheck disable=SC2086 # fields are single words
        printf '| %s | %s | %s | %s | %s | %s |\n' $r
    done
}

sweep_table() {
    printf '| engine | expired holds | live holds | load s | sweep s (process) | sweep s (in-run) | expired/s | with live / without | verified |\n'
    printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|\n'
    local r e n live load s per run ok base_s=""
    for r in "${sweep_results[@]}"; do
        read -r e n live load s per run ok <<<"$r"
        local t=$run
        [[ $t != - ]] || t=$s
        if [[ $live -eq 0 ]]; then
            base_s=$t
        fi
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$e" "$n" "$live" "$load" "$s" "$run" "$per" \
            "$(if [[ $live -gt 0 ]]; then ratio "$t" "$base_s"; else echo -; fi)" "$ok"
    done
}

# hot_field ENGINE CLIENTS N — field N (1-based) of the holds result at that level.
hot_field() {
    local h f
    for h in "${results[@]}"; do
        read -r -a f <<<"$h"
        if [[ ${f[0]} == "$1" && ${f[1]} == "$2" ]]; then
            printf '%s\n' "${f[$(($3 - 1))]}"
            return 0
        fi
    done
}
hot_rps() { hot_field "$1" "$2" 3; }

# ratio A B — A / B with two decimals, "-" when either is missing or B is zero.
ratio() {
    python3 -c 'import sys
try:
    a, b = float(sys.argv[1]), float(sys.argv[2])
    print("%.2f" % (a / b) if b else "-")
except Exception:
    print("-")' "${1:-}" "${2:-}"
}

# goals_table — each goal of the batched-holds issue: goal, measured, met?
goals_table() {
    {
        local r
        for r in "${results[@]}"; do printf 'holds %s\n' "$r"; done
        for r in "${ceiling_results[@]}"; do printf 'ceiling %s\n' "$r"; done
        for r in "${sweep_results[@]}"; do printf 'sweep %s\n' "$r"; done
        for r in "${mem_results[@]}"; do printf 'mem %s\n' "$r"; done
        for r in "${start_results[@]}"; do printf 'start %s\n' "$r"; done
    } | python3 -c '
import sys
holds, ceiling, sweep, mem, start = {}, {}, {}, {}, {}
for line in sys.stdin:
    f = line.split()
    if f[0] == "holds":
        holds[(f[1], int(f[2]))] = (float(f[3]), float(f[8]))
    elif f[0] == "ceiling" and f[2] != "skipped":
        ceiling[int(f[1])] = float(f[2])
    elif f[0] == "sweep":  # the in-run time when known, else the process wall time
        sweep[(f[1], int(f[3]) > 0)] = (int(f[2]), float(f[7] if f[7] != "-" else f[5]), f[8])
    elif f[0] == "mem":
        mem[f[1]] = f[2]
    elif f[0] == "start":
        start[f[1]] = float(f[2])
rows = []
def met(ok):
    return "yes" if ok else "**no**"
G = 64
pg = holds.get(("postgres", G))
c = ceiling.get(G)
goal = f"PostgreSQL hot-type holds/s at {G} clients ≥ 5 × pgbench one-hold ceiling at {G} clients"
if pg and c:
    r = pg[0] / c
    rows.append((goal, f"{pg[0]:,.0f} / {c:,.0f} = {r:.2f}×", met(r >= 5)))
else:
    rows.append((goal, f"not measured (needs {G} in BENCH_CONCURRENCY, suites holds + ceiling)", "n/a"))
goal = f"… and ≥ 5 × the best pgbench figure at any client count (stricter)"
if pg and ceiling:
    bc, bt = max(ceiling.items(), key=lambda kv: kv[1])
    r = pg[0] / bt
    rows.append((goal, f"{pg[0]:,.0f} / {bt:,.0f} (pgbench at {bc} clients) = {r:.2f}×", met(r >= 5)))
else:
    rows.append((goal, "not measured", "n/a"))
goal = f"PostgreSQL hot-type p99 ≤ 50 ms at {G} clients"
if pg:
    rows.append((goal, f"{pg[1]:.2f} ms", met(pg[1] <= 50)))
else:
    rows.append((goal, "not measured", "n/a"))
goal = "SQLite hot-type holds/s ≥ 5,000 (best level)"
sq = [(v[0], k[1]) for k, v in holds.items() if k[0] == "sqlite"]
if sq:
    best, bc = max(sq)
    rows.append((goal, f"{best:,.0f} holds/s at {bc} clients", met(best >= 5000)))
else:
    rows.append((goal, "not measured", "n/a"))
for engine, name in (("postgres", "PostgreSQL"), ("sqlite", "SQLite")):
    wo, wi = sweep.get((engine, False)), sweep.get((engine, True))
    info = "" if engine == "postgres" else " (information: the goal names PostgreSQL)"
    goal = f"{name} sweeper: 1M expired holds in ≤ 10 s{info}"
    if wo:
        n, s, ok = wo
        if ok != "yes":
            rows.append((goal, f"{s:.2f} s for {n:,}, verification FAILED", "**no**"))
        elif n == 1_000_000:
            rows.append((goal, f"{s:.2f} s ({n / s:,.0f} holds/s)", met(s <= 10) if not info else "—"))
        else:
            rows.append((goal, f"{s:.2f} s for {n:,} (≈ {s * 1e6 / n:.1f} s per 1M, extrapolated)", "n/a (BENCH_SWEEP_HOLDS ≠ 1M)"))
    else:
        rows.append((goal, "not measured", "n/a"))
    goal = f"{name} sweeper: live holds add nothing measurable (with as many live: ≤ 1.10 × without)"
    if wo and wi:
        r = wi[1] / wo[1] if wo[1] else float("inf")
        ok = wo[2] == "yes" and wi[2] == "yes"
        m = met(r <= 1.10) if ok else "**no** (verification failed)"
        rows.append((goal, f"{wi[1]:.2f} s / {wo[1]:.2f} s = {r:.2f}× ({wi[0]:,} expired + {wi[0]:,} live)", m))
    else:
        rows.append((goal, "not measured", "n/a"))
for engine, name in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
    goal = f"Server RSS idle ≤ 30 MB ({name})"
    v = mem.get(engine)
    if v and v != "-":
        rows.append((goal, f"{float(v):.1f} MB", met(float(v) <= 30)))
    else:
        rows.append((goal, "not measured", "n/a"))
for engine, name in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
    info = "" if engine == "sqlite" else " (information: the goal names SQLite)"
    goal = f"Start to first answer ≤ 1 s ({name}, fresh database, median){info}"
    v = start.get(engine)
    if v is not None:
        rows.append((goal, f"{v:.0f} ms", met(v <= 1000) if not info else "—"))
    else:
        rows.append((goal, "not measured", "n/a"))
print("| goal | measured | met? |")
print("|---|---|---|")
for g, m, ok in rows:
    print(f"| {g} | {m} | {ok} |")
'
}

# sqlite_version — the SQLite bundled in the binary (libsqlite3-sys in Cargo.lock, and the
# SQLite source id found in the binary), and the sqlite3 CLI used to load the sweeper data.
sqlite_version() {
    local crate id cli
    crate=$(awk '/^name = "libsqlite3-sys"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock" 2>/dev/null)
    id=$(grep -aoE -m 1 '20[0-9]{2}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} [0-9a-f]{12}' "$BENCH_BIN" 2>/dev/null | head -n 1)
    cli=$(sqlite3 --version 2>/dev/null | cut -d ' ' -f 1)
    printf 'bundled with libsqlite3-sys %s (SQLite source id %s…); sqlite3 CLI %s loads the sweeper data\n' \
        "${crate:-?}" "${id:-?}" "${cli:-not used}"
}

# report_body — everything after the title: how it was run, the machine, all tables, goals.
# shellcheck disable=SC2016 # backquotes are markdown here, not expansions
report_body() {
    printf -- '- command: `%s`\n' "$REPRO_COMMAND"
    printf -- '- started: %s, finished: %s\n' "$started" "$finished"
    printf -- '- commit: %s%s\n' "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        "$(git diff --quiet HEAD -- 2>/dev/null || echo ' (work tree modified)')"
    printf -- '- machine: %s cores, %s, %s RAM, kernel %s\n' "$threads_max" \
        "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)" \
        "$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null)" "$(uname -sr)"
    printf -- '- PostgreSQL: %s\n' "${pg_note:-not run}"
    if [[ -n $pg_settings ]]; then
        printf -- '- PostgreSQL settings: %s\n' "$pg_settings"
    fi
    printf -- '- SQLite: %s; the database a file in a temp dir\n' "$(sqlite_version)"
    printf -- '- binary: %s; hold batching: %s\n' "$BENCH_BIN" \
        "$(if supports_hold_batch; then echo 'built in (defaults: --hold-batch-max 128, --hold-batch-window 0s)'; else echo 'not in this binary'; fi)"
    printf -- '- per level: %ss (warm-up %ss per engine), one fresh ticket type per level, quantity 1 per hold\n' \
        "$BENCH_SECONDS" "$BENCH_WARMUP_SECONDS"
    printf -- '- load: wrk on the same machine, 127.0.0.1, threads = min(clients, %s)\n' "$threads_max"
    if [[ ${#results[@]} -gt 0 ]]; then
        printf '\n## Holds on one hot ticket type (POST /api/v1/reservations)\n\n'
        table
        printf '\nholds/s counts 201 answers only; other answers (non-2xx, e.g. 409 sold_out or 429) and socket errors are not holds. p50/p99 cover all answers.\n'
    fi
    if [[ ${#ceiling_results[@]} -gt 0 ]]; then
        printf '\n## The database ceiling (pgbench, one hold per transaction, same PostgreSQL)\n\n'
        ceiling_table
        if [[ -n $ceiling_note ]]; then
            printf '\n%s.\n' "$ceiling_note"
        fi
    fi
    if [[ ${#types_results[@]} -gt 0 ]]; then
        printf '\n## Holds over 100 ticket types of one event (a type at random per request; no hot row)\n\n'
        types_table
    fi
    if [[ ${#nobatch_results[@]} -gt 0 || -n $nobatch_note ]]; then
        printf '\n## Batching off (`serve --hold-batch-max 1`: one transaction per hold), hot type\n\n'
        if [[ ${#nobatch_results[@]} -gt 0 ]]; then
            nobatch_table
        else
            printf '%s\n' "$nobatch_note"
        fi
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
    if [[ ${#sweep_results[@]} -gt 0 ]]; then
        printf '\n## Sweeper (`boxoffice sweep`, no server running; expired holds over %s ticket types, one item each)\n\n' "$SWEEP_TYPES"
        sweep_table
        printf '\nsweep s (process) = wall time of `boxoffice sweep` (connect, migrations check, sweep); in-run = its job run'"'"'s own started/finished, used for expired/s, the ratio and the goals. load s = the set-based bulk insert (+ VACUUM ANALYZE on PostgreSQL, ANALYZE on SQLite). verified = exactly that many holds expired, every live one still active and untouched, `held` = the live quantity.\n'
    fi
    if [[ ${#mem_results[@]} -gt 0 ]]; then
        printf '\n## Server memory (/proc/PID/status)\n\n'
        mem_table
    fi
    if [[ ${#start_results[@]} -gt 0 ]]; then
        printf '\n## Start to first answer (exec of `boxoffice serve` on a fresh database, migrations included, to the first 200 of GET /healthz polled every ~5 ms)\n\n'
        start_table
    fi
    printf '\n## Goals\n\n'
    goals_table
    printf '\nThe PostgreSQL ratio is given against pgbench at the same 64 clients and against pgbench'"'"'s best figure at any client count; the second is the stricter test.\n'
}

finished=$(date -u +%Y-%m-%dT%H:%M:%SZ)
mkdir -p bench-results
report="bench-results/holds-$(date -u +%Y-%m-%d-%H%M%S).md"
{
    printf '# boxoffice benchmark\n\n'
    report_body
} >"$report"
if [[ -n $BENCH_WRITE ]]; then
    # shellcheck disable=SC2016 # backquotes are markdown here, not expansions
    {
        printf '# boxoffice benchmarks\n\n'
        printf 'Every figure below comes from one run of one command on one machine, so the ratios compare like with like. Reproduce with:\n\n'
        printf '```sh\n%s\n```\n\n' "$REPRO_COMMAND"
        printf '(`BENCH_BIN=path` reuses a built binary; `scripts/bench.sh` documents every knob in its header.)\n\n'
        printf '## Run\n\n'
        report_body
    } >"$BENCH_WRITE.tmp.$$" && mv -- "$BENCH_WRITE.tmp.$$" "$BENCH_WRITE"
fi

echo
report_body | tail -n +2 | sed -n '/^## /,$p'
echo
bo_log "written to $report${BENCH_WRITE:+ and $BENCH_WRITE}"
