# shellcheck shell=bash
#
# scripts/lib/browser.sh — headless Chromium and its WebDriver, for the browser tests of
# the pages (crates/boxoffice-server/tests/pages_browser.rs). Sourced by scripts/test.sh;
# needs scripts/lib/common.sh.
#
# Debian's `chromium` and `chromium-driver` (installed when missing; browsers that download
# themselves do not work here). On success BOXOFFICE_TEST_CHROMEDRIVER names the driver,
# and the browser tests then fail rather than skip if it does not work.

bo_browser_setup() {
    if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
        # fonts-liberation: a Recommends of chromium that --no-install-recommends skips;
        # without a font, pages render as boxes in the screenshots.
        bo_apt_install chromium chromium-driver fonts-liberation
    fi
    local driver
    driver=$(command -v chromedriver) || bo_die "chromedriver not found after installing chromium-driver"
    bo_log "browser tests: $("$driver" --version 2>/dev/null | head -n 1) ($driver)"
    export BOXOFFICE_TEST_CHROMEDRIVER=$driver
}
