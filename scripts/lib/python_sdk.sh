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
    bo_pinned_venv "$venv" "$BO_SENTRY_SDK_REQUIREMENT" "python -c 'import sentry_sdk'"
    bo_log "Python Sentry SDK: $("$venv/bin/python" -c 'import sentry_sdk; print(sentry_sdk.VERSION)')"
    export BOXOFFICE_TEST_PYTHON="$venv/bin/python"
}
