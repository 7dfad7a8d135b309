# shellcheck shell=bash
#
# scripts/lib/python_sdk.sh — a Python virtual environment with the official Sentry SDK,
# for the tests that report to boxoffice through it (SPEC §7: the official SDKs work
# unchanged). Sourced by scripts/test.sh; needs scripts/lib/common.sh.
#
# The venv lives in target/ (ignored by git, removed by `cargo clean`) and is reused while
# its pinned requirement is unchanged. `sentry-sdk` comes from PyPI; nothing else is
# downloaded. On success BOXOFFICE_TEST_PYTHON names its interpreter, and the SDK tests
# then fail rather than skip if the SDK cannot be imported.

# The SDK version the tests run against; bump deliberately.
BO_SENTRY_SDK_REQUIREMENT='sentry-sdk==2.*'

bo_python_sdk_setup() {
    local venv="$ROOT/target/python-sdk-venv"
    local stamp="$venv/.requirement"
    if [[ -x $venv/bin/python && -f $stamp && $(cat "$stamp") == "$BO_SENTRY_SDK_REQUIREMENT" ]] &&
        "$venv/bin/python" -c 'import sentry_sdk' 2>/dev/null; then
        bo_log "Python Sentry SDK: $("$venv/bin/python" -c 'import sentry_sdk; print(sentry_sdk.VERSION)') (cached in $venv)"
    else
        command -v python3 >/dev/null 2>&1 || bo_die "python3 is needed for the Sentry SDK tests"
        if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
            bo_apt_install python3-venv
        fi
        bo_log "creating $venv with $BO_SENTRY_SDK_REQUIREMENT"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$BO_SENTRY_SDK_REQUIREMENT"
        echo "$BO_SENTRY_SDK_REQUIREMENT" >"$stamp"
        bo_log "Python Sentry SDK: $("$venv/bin/python" -c 'import sentry_sdk; print(sentry_sdk.VERSION)')"
    fi
    export BOXOFFICE_TEST_PYTHON="$venv/bin/python"
}
