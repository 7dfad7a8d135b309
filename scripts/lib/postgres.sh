# shellcheck shell=bash
#
# scripts/lib/postgres.sh — find a PostgreSQL server for tests and benchmarks,
# or start a throw-away one.
#
# Why it exists: boxoffice must pass its whole test suite on PostgreSQL as well as on
# SQLite, and `scripts/test.sh` (and `scripts/bench.sh`) must work on a developer's
# machine, on CI, and on a bare machine without anyone setting PostgreSQL up by hand.
# This file holds the one way of finding that server, shared by both scripts.
#
# Order in which a server is chosen by bo_pg_setup:
#   1. BOXOFFICE_TEST_POSTGRES_URL, when set (it must answer, or we fail: an explicit
#      choice is never silently replaced by another server);
#   2. a server answering at 127.0.0.1:5432 as user `postgres` (trust/peer auth, no
#      password prompt) whose role may create databases:
#      postgres://postgres@127.0.0.1:5432/postgres
#   3. a throw-away cluster: initdb in a fresh temporary directory (trust auth, listening
#      on 127.0.0.1 only, on a free port, its unix socket inside that directory),
#      installing the `postgresql` Debian package first when no initdb is found.
#      As root, initdb/pg_ctl run as the unprivileged user `boxoffice-test` (created
#      when missing; `nobody` if it cannot be), since initdb refuses to run as root.
#
# Environment:
#   BOXOFFICE_TEST_POSTGRES_URL        admin URL to use (step 1).
#   BOXOFFICE_TEST_FORCE_THROWAWAY_PG  =1: skip steps 1 and 2 and always start a
#                                      throw-away cluster (tests this path; isolates a run).
#
# Usage (the caller owns the traps; this file sets none):
#   source scripts/lib/postgres.sh
#   trap 'bo_pg_teardown' EXIT          # set BEFORE bo_pg_setup
#   bo_pg_setup                         # sets the globals below, logs to stderr
#   ... use "$BO_PG_URL" ...
#
# Globals set by bo_pg_setup:
#   BO_PG_URL     admin URL (may CREATE DATABASE)
#   BO_PG_OWNED   1 when we started the server (bo_pg_teardown stops it), else 0
#   BO_PG_SOURCE  human description of where the URL came from

_BO_PG_LIB_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib/common.sh
source "$_BO_PG_LIB_DIR/common.sh"

BO_PG_URL=""
BO_PG_OWNED=0
BO_PG_SOURCE=""
BO_PG_DIR=""       # temp dir of the throw-away cluster (data/, sock/, logs)
BO_PG_BINDIR=""    # directory holding initdb/pg_ctl/postgres
BO_PG_RUN_AS=""    # user that owns the throw-away cluster ("" = the current user)

# Unprivileged user for the throw-away cluster when running as root.
BO_PG_TEST_USER=${BO_PG_TEST_USER:-boxoffice-test}

# bo_pg_psql ARGS... — psql that never prompts, ignores ~/.psqlrc and gives up quickly
# on a server that does not answer.
bo_pg_psql() {
    PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-5} psql -X -w -q -v ON_ERROR_STOP=1 "$@"
}

# _bo_pg_ensure_client — psql and pg_isready are needed for every path.
_bo_pg_ensure_client() {
    if ! command -v psql >/dev/null 2>&1 || ! command -v pg_isready >/dev/null 2>&1; then
        bo_log "psql/pg_isready not found; installing postgresql-client"
        bo_apt_install postgresql-client
    fi
}

# bo_pg_find_bindir — print the directory that holds initdb and pg_ctl (PATH first,
# symlinks resolved, then the newest /usr/lib/postgresql/*/bin); return 1 if none.
bo_pg_find_bindir() {
    local initdb pg_ctl dir
    initdb=$(command -v initdb 2>/dev/null || true)
    pg_ctl=$(command -v pg_ctl 2>/dev/null || true)
    if [[ -n $initdb && -n $pg_ctl ]]; then
        dir=$(dirname -- "$(readlink -f -- "$pg_ctl")")
        if [[ -x $dir/initdb && -x $dir/pg_ctl ]]; then
            printf '%s\n' "$dir"
            return 0
        fi
    fi
    # Debian keeps the server binaries off PATH, one directory per major version.
    while IFS= read -r dir; do
        if [[ -x $dir/initdb && -x $dir/pg_ctl ]]; then
            printf '%s\n' "$dir"
            return 0
        fi
    done < <(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V -r)
    return 1
}

# bo_pg_url_works URL — true when URL answers and its role may create databases.
bo_pg_url_works() {
    local url=$1 ok
    ok=$(bo_pg_psql "$url" -At -c \
        "select rolsuper or rolcreatedb from pg_roles where rolname = current_user" 2>/dev/null) || return 1
    [[ $ok == t ]]
}

# bo_pg_url_with_db URL DBNAME — the same URL with another database name
# (keeps user, host, port and query parameters).
bo_pg_url_with_db() {
    local url=$1 db=$2
    local re='^(postgres(ql)?://[^/?]*)(/[^?]*)?(\?.*)?$'
    if [[ $url =~ $re ]]; then
        printf '%s/%s%s\n' "${BASH_REMATCH[1]}" "$db" "${BASH_REMATCH[4]}"
    else
        bo_die "cannot parse PostgreSQL URL (expected postgres://…): $url"
    fi
}

# bo_pg_redact URL — URL with any password replaced, for log lines.
bo_pg_redact() {
    sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"
}

# _bo_pg_as CMD... — run CMD as the throw-away cluster's owner.
_bo_pg_as() {
    if [[ -z $BO_PG_RUN_AS ]]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        runuser -u "$BO_PG_RUN_AS" -- "$@"
    else
        su -s /bin/sh "$BO_PG_RUN_AS" -c "$(printf '%q ' "$@")"
    fi
}

# _bo_pg_pick_user — as root, pick (or create) the unprivileged cluster owner.
_bo_pg_pick_user() {
    BO_PG_RUN_AS=""
    bo_is_root || return 0
    if ! id -u "$BO_PG_TEST_USER" >/dev/null 2>&1; then
        if command -v useradd >/dev/null 2>&1 &&
            useradd --system --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin "$BO_PG_TEST_USER" >/dev/null 2>&1; then
            bo_log "created system user $BO_PG_TEST_USER to own the throw-away cluster"
        fi
    fi
    if id -u "$BO_PG_TEST_USER" >/dev/null 2>&1; then
        BO_PG_RUN_AS=$BO_PG_TEST_USER
    else
        BO_PG_RUN_AS=nobody
    fi
}

# _bo_pg_start_throwaway — initdb + pg_ctl start in a fresh temp dir; sets BO_PG_*.
_bo_pg_start_throwaway() {
    if ! BO_PG_BINDIR=$(bo_pg_find_bindir); then
        bo_log "no initdb/pg_ctl found; installing the postgresql package"
        bo_apt_install postgresql
        BO_PG_BINDIR=$(bo_pg_find_bindir) || bo_die "initdb/pg_ctl still not found after installing postgresql"
    fi
    _bo_pg_pick_user

    # /tmp explicitly: the cluster owner must be able to reach the directory, which
    # a TMPDIR under /root would not allow. Keep the path short (unix socket limit).
    BO_PG_DIR=$(mktemp -d /tmp/boxoffice-pg.XXXXXX)
    BO_PG_OWNED=1 # from here on bo_pg_teardown removes BO_PG_DIR
    mkdir -p "$BO_PG_DIR/sock"
    if [[ -n $BO_PG_RUN_AS ]]; then
        chown -R "$BO_PG_RUN_AS" "$BO_PG_DIR"
    fi
    bo_log "starting a throw-away PostgreSQL ($("$BO_PG_BINDIR/postgres" --version 2>/dev/null || echo "$BO_PG_BINDIR")) in $BO_PG_DIR${BO_PG_RUN_AS:+ as user $BO_PG_RUN_AS}"

    # initdb/pg_ctl resolve paths against the cwd, which the owner must be able to read.
    if ! (cd "$BO_PG_DIR" && _bo_pg_as "$BO_PG_BINDIR/initdb" -D "$BO_PG_DIR/data" \
        -U postgres --auth=trust --no-locale -E UTF8 --no-sync \
        >"$BO_PG_DIR/initdb.log" 2>&1); then
        cat "$BO_PG_DIR/initdb.log" >&2 || true
        bo_die "initdb failed (log above)"
    fi

    local attempt port started=0
    for attempt in 1 2 3 4 5; do
        port=$(bo_free_port)
        if (cd "$BO_PG_DIR" && _bo_pg_as "$BO_PG_BINDIR/pg_ctl" -D "$BO_PG_DIR/data" \
            -l "$BO_PG_DIR/server.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$BO_PG_DIR/sock -c max_connections=200" \
            start >"$BO_PG_DIR/pg_ctl.log" 2>&1); then
            started=1
            break
        fi
        bo_log "pg_ctl start on port $port failed (attempt $attempt of 5):"
        tail -n 20 "$BO_PG_DIR/pg_ctl.log" "$BO_PG_DIR/server.log" >&2 2>/dev/null || true
        # A half-started postmaster must not linger before the next attempt.
        (cd "$BO_PG_DIR" && _bo_pg_as "$BO_PG_BINDIR/pg_ctl" -D "$BO_PG_DIR/data" -m immediate -w -t 10 stop) >/dev/null 2>&1 || true
    done
    [[ $started -eq 1 ]] || bo_die "could not start the throw-away PostgreSQL"

    BO_PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
    local i
    for i in $(seq 1 60); do
        if bo_pg_url_works "$BO_PG_URL"; then
            BO_PG_SOURCE="throw-away cluster in $BO_PG_DIR (port $port)"
            return 0
        fi
        sleep 0.5
        : "$i"
    done
    tail -n 30 "$BO_PG_DIR/server.log" >&2 2>/dev/null || true
    bo_die "throw-away PostgreSQL did not become ready within 30 s"
}

# bo_pg_setup — choose or start the server (see the header); sets BO_PG_URL & co.
bo_pg_setup() {
    _bo_pg_ensure_client
    if [[ ${BOXOFFICE_TEST_FORCE_THROWAWAY_PG:-0} == 1 ]]; then
        bo_log "BOXOFFICE_TEST_FORCE_THROWAWAY_PG=1: not looking for an existing PostgreSQL"
    elif [[ -n ${BOXOFFICE_TEST_POSTGRES_URL:-} ]]; then
        if ! bo_pg_url_works "$BOXOFFICE_TEST_POSTGRES_URL"; then
            bo_die "BOXOFFICE_TEST_POSTGRES_URL=$(bo_pg_redact "$BOXOFFICE_TEST_POSTGRES_URL") does not answer, or its role may not create databases"
        fi
        BO_PG_URL=$BOXOFFICE_TEST_POSTGRES_URL
        BO_PG_OWNED=0
        BO_PG_SOURCE="BOXOFFICE_TEST_POSTGRES_URL"
    elif pg_isready -q -h 127.0.0.1 -p 5432 -t 3 >/dev/null 2>&1 &&
        bo_pg_url_works "postgres://postgres@127.0.0.1:5432/postgres"; then
        BO_PG_URL="postgres://postgres@127.0.0.1:5432/postgres"
        BO_PG_OWNED=0
        BO_PG_SOURCE="existing server at 127.0.0.1:5432"
    else
        bo_log "no usable PostgreSQL at 127.0.0.1:5432 (user postgres, CREATEDB); starting a throw-away one"
    fi
    if [[ -z $BO_PG_URL ]]; then
        _bo_pg_start_throwaway
    fi
    local version
    version=$(bo_pg_psql "$BO_PG_URL" -At -c 'show server_version' 2>/dev/null || echo '?')
    bo_log "using PostgreSQL $version: $(bo_pg_redact "$BO_PG_URL") ($BO_PG_SOURCE)"
}

# bo_pg_drop_databases_like LIKE_PATTERN — drop every database whose name matches
# (e.g. 'boxoffice\_test\_%'), forcing off open connections (PG 13+).
# Never fails the caller: it is cleanup.
bo_pg_drop_databases_like() {
    local pattern=$1 count sql
    [[ -n $BO_PG_URL ]] || return 0
    # psql variables (:'pat') are interpolated only in scripts read from stdin.
    if ! count=$(printf '%s\n' "select count(*) from pg_database where datname like :'pat';" |
        bo_pg_psql "$BO_PG_URL" -At -v pat="$pattern" 2>/dev/null); then
        bo_log "warning: could not list databases like '$pattern' for cleanup"
        return 0
    fi
    [[ $count =~ ^[0-9]+$ && $count -gt 0 ]] || return 0
    bo_log "dropping $count database(s) named like '$pattern'"
    # \gexec runs each generated statement on its own (DROP DATABASE cannot run in a
    # transaction block); ON_ERROR_STOP=0 so one stuck database does not keep the others.
    sql="select format('drop database if exists %I%s', datname,
              case when current_setting('server_version_num')::int >= 130000
                   then ' with (force)' else '' end)
         from pg_database where datname like :'pat' order by datname
\\gexec"
    if ! printf '%s\n' "$sql" |
        PGCONNECT_TIMEOUT=5 psql -X -w -q -v ON_ERROR_STOP=0 -v pat="$pattern" "$BO_PG_URL" >/dev/null; then
        bo_log "warning: dropping databases like '$pattern' failed"
    fi
    return 0
}

# bo_pg_teardown — stop and delete the throw-away cluster, if we started one.
# Idempotent; safe to call from an EXIT trap at any point of bo_pg_setup.
bo_pg_teardown() {
    [[ $BO_PG_OWNED -eq 1 && -n $BO_PG_DIR ]] || return 0
    if [[ -f $BO_PG_DIR/data/postmaster.pid ]]; then
        bo_log "stopping the throw-away PostgreSQL"
        if ! (cd "$BO_PG_DIR" && _bo_pg_as "$BO_PG_BINDIR/pg_ctl" -D "$BO_PG_DIR/data" -m fast -w -t 30 stop) >/dev/null 2>&1; then
            (cd "$BO_PG_DIR" && _bo_pg_as "$BO_PG_BINDIR/pg_ctl" -D "$BO_PG_DIR/data" -m immediate -w -t 10 stop) >/dev/null 2>&1 || true
        fi
        # Last resort: the postmaster's pid is the first line of postmaster.pid.
        local pid
        pid=$(head -n 1 "$BO_PG_DIR/data/postmaster.pid" 2>/dev/null || true)
        if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
            bo_log "postmaster $pid still running; killing it"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 1
        fi
    fi
    rm -rf -- "$BO_PG_DIR"
    BO_PG_DIR=""
    BO_PG_OWNED=0
    BO_PG_URL=""
}
