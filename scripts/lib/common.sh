# shellcheck shell=bash
#
# scripts/lib/common.sh — small helpers shared by the scripts in scripts/ and .ci/.
#
# Why it exists: test.sh, bench.sh and .ci/run all need the same few things
# (log to stderr, fail with a clear message, install a Debian package when we are
# root on a fresh CI machine, find a free TCP port on 127.0.0.1). Keeping them in one
# place keeps the behaviour identical everywhere.
#
# Source it; it defines functions only and changes no shell options or traps.

# Guard against double sourcing (postgres.sh sources this file too).
if [[ -n ${_BO_COMMON_SH_LOADED:-} ]]; then
    return 0
fi
_BO_COMMON_SH_LOADED=1

# Prefix for log lines: the name of the script that was started.
BO_LOG_PREFIX=${BO_LOG_PREFIX:-$(basename -- "${0:-boxoffice}")}

# bo_log MESSAGE... — one line to stderr.
bo_log() {
    printf '%s: %s\n' "$BO_LOG_PREFIX" "$*" >&2
}

# bo_die MESSAGE... — log and exit 1 (the caller's EXIT trap still runs).
bo_die() {
    bo_log "error: $*"
    exit 1
}

# bo_is_root — true when running as uid 0.
bo_is_root() {
    [[ $(id -u) -eq 0 ]]
}

# bo_apt_install PACKAGE... — install Debian packages non-interactively.
# Only as root (CI and the dev machines run as root); otherwise fail with a hint.
# Runs `apt-get update` once per script run, before the first install.
_BO_APT_UPDATED=0
bo_apt_install() {
    if ! bo_is_root; then
        bo_die "missing $*; install it (e.g. 'sudo apt-get install -y $*') and try again"
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        bo_die "missing $* and apt-get is not available to install it"
    fi
    if [[ $_BO_APT_UPDATED -eq 0 ]]; then
        bo_log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || bo_die "apt-get update failed"
        _BO_APT_UPDATED=1
    fi
    bo_log "apt-get install -y $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2 \
        || bo_die "apt-get install $* failed"
}

# bo_free_port — print a TCP port that is free on 127.0.0.1 right now.
# (There is an unavoidable race between this check and the real bind; callers
# that start a server retry with a new port when the start fails.)
bo_free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
        return
    fi
    # Fallback without python3: a random high port that nothing answers on.
    local port attempt
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            printf '%s\n' "$port"
            return 0
        fi
        : "$attempt"
    done
    bo_die "could not find a free TCP port on 127.0.0.1"
}

# bo_pinned_venv VENV REQUIREMENT CHECK — make sure VENV is a Python venv with exactly the pip
# REQUIREMENT installed (recorded in VENV/.requirement), recreating it when the requirement
# changed or the shell command CHECK (run with the venv's bin/ first on PATH) fails. Python
# and its venv module come from Debian when missing.
bo_pinned_venv() {
    local venv=$1 requirement=$2 check=$3 stamp="$1/.requirement"
    if [[ -x $venv/bin/python && -f $stamp && $(cat "$stamp") == "$requirement" ]] &&
        PATH="$venv/bin:$PATH" bash -c "$check" >/dev/null 2>&1; then
        bo_log "$requirement: cached in $venv"
        return 0
    fi
    command -v python3 >/dev/null 2>&1 || bo_apt_install python3
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        bo_apt_install python3-venv
    fi
    bo_log "creating $venv with $requirement"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$requirement"
    echo "$requirement" >"$stamp"
}
