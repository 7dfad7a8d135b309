#!/usr/bin/env bash
#
# scripts/test.sh — THE test command: runs the whole workspace test suite, on SQLite
# and on PostgreSQL, in one go.
#
# Why it exists: boxoffice's guarantees (no overselling, exactly-once webhooks, …) must
# hold on both storage engines, so every run of the suite needs a PostgreSQL it may
# create databases on. This script finds one or starts a throw-away one (see
# scripts/lib/postgres.sh), exports its admin URL as BOXOFFICE_TEST_POSTGRES_URL,
# runs the suite, cleans up, and exits with the test runner's exit code.
#
# Usage:
#   scripts/test.sh [RUNNER ARGS...]     e.g. scripts/test.sh -E 'test(holds)'
#
# The runner is `cargo nextest run --workspace --locked --no-fail-fast` when cargo-nextest
# is installed, else `cargo test --workspace --locked --no-fail-fast`; extra arguments are
# passed on to it unchanged.
#
# It also makes a Python venv with the official Sentry SDK (scripts/lib/python_sdk.sh) and
# exports its interpreter as BOXOFFICE_TEST_PYTHON for the SDK tests, and installs Debian's
# chromium and chromium-driver when missing (scripts/lib/browser.sh), exporting the driver as
# BOXOFFICE_TEST_CHROMEDRIVER for the browser tests of the pages.
#
# Environment:
#   BOXOFFICE_TEST_POSTGRES_URL        use this PostgreSQL admin URL (must allow CREATE DATABASE)
#   BOXOFFICE_TEST_FORCE_THROWAWAY_PG  =1: ignore the above and 127.0.0.1:5432, always start a
#                                      throw-away cluster (fully isolated run)
#   BOXOFFICE_TEST_DRY_RUN             =1: instead of the tests, run `select version()` against
#                                      the chosen server and create one database
#                                      `boxoffice_test_dryrun_<pid>` (to exercise the cleanup);
#                                      for testing this script itself
#
# Contract with the tests: each test that needs PostgreSQL connects to
# BOXOFFICE_TEST_POSTGRES_URL, creates its own database named `boxoffice_test_…`, and
# should drop it when done. On a server this script did not start, databases left over
# with that prefix are dropped (WITH (FORCE)) when the script exits — also after a failure
# or Ctrl-C — so a developer's server does not fill up. (Do not run two test.sh at once
# against the same server: the first to finish drops the other's databases.)
# A throw-away cluster is stopped and its directory deleted on exit instead.

set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
BO_LOG_PREFIX=test.sh
# shellcheck source=scripts/lib/postgres.sh
source "$ROOT/scripts/lib/postgres.sh"
# shellcheck source=scripts/lib/python_sdk.sh
source "$ROOT/scripts/lib/python_sdk.sh"
# shellcheck source=scripts/lib/browser.sh
source "$ROOT/scripts/lib/browser.sh"
cd "$ROOT"

_runner_pid=""

# shellcheck disable=SC2317 # invoked by the EXIT trap
_on_exit() {
    local rc=$?
    set +e
    trap - EXIT INT TERM HUP
    # Interrupted while the tests run: stop the whole runner process group first, so
    # no test process keeps connections to the database we are about to drop.
    if [[ -n $_runner_pid ]] && kill -0 "$_runner_pid" 2>/dev/null; then
        bo_log "stopping the test runner (pid $_runner_pid)"
        kill -TERM -- "-$_runner_pid" 2>/dev/null || kill -TERM "$_runner_pid" 2>/dev/null
        local i
        for i in $(seq 1 20); do
            kill -0 "$_runner_pid" 2>/dev/null || break
            sleep 0.5
            : "$i"
        done
        kill -KILL -- "-$_runner_pid" 2>/dev/null
        wait "$_runner_pid" 2>/dev/null
    fi
    if [[ $BO_PG_OWNED -eq 1 ]]; then
        bo_pg_teardown
    elif [[ -n $BO_PG_URL ]]; then
        bo_pg_drop_databases_like 'boxoffice\_test\_%'
    fi
    exit "$rc"
}
trap _on_exit EXIT
# Signals end the script through the EXIT trap, with the usual 128+N status.
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

bo_pg_setup
export BOXOFFICE_TEST_POSTGRES_URL=$BO_PG_URL
if [[ ${BOXOFFICE_TEST_DRY_RUN:-0} != 1 ]]; then
    bo_python_sdk_setup
    bo_browser_setup
fi

if [[ ${BOXOFFICE_TEST_DRY_RUN:-0} == 1 ]]; then
    # shellcheck disable=SC2016 # expanded by the inner bash
    runner=(bash -c 'psql -X -w "$BOXOFFICE_TEST_POSTGRES_URL" -c "select version()" &&
        psql -X -w -q "$BOXOFFICE_TEST_POSTGRES_URL" -c "create database boxoffice_test_dryrun_$$" &&
        echo "dry run: created database boxoffice_test_dryrun_$$"')
elif cargo nextest --version >/dev/null 2>&1; then
    runner=(cargo nextest run --workspace --locked --no-fail-fast "$@")
else
    bo_log "cargo-nextest not found; using cargo test"
    runner=(cargo test --workspace --locked --no-fail-fast "$@")
fi

if [[ ${BOXOFFICE_TEST_DRY_RUN:-0} == 1 ]]; then
    bo_log "BOXOFFICE_TEST_DRY_RUN=1: running psql 'select version()' instead of the tests"
else
    bo_log "running:$(printf " %q" "${runner[@]}")"
fi
# The runner gets its own process group (set -m) so that an interrupt or a TERM sent
# to this script can stop it with every test process it started; stdin is /dev/null
# because a background process group must not touch the terminal.
set -m
"${runner[@]}" </dev/null &
_runner_pid=$!
set +m
rc=0
wait "$_runner_pid" || rc=$?
_runner_pid=""
if [[ $rc -eq 0 ]]; then
    bo_log "tests passed (PostgreSQL: $BO_PG_SOURCE)"
else
    bo_log "tests FAILED with exit code $rc (PostgreSQL: $BO_PG_SOURCE)"
fi
exit "$rc"
