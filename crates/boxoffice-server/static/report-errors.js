// Reports JavaScript errors on boxoffice's pages to boxoffice's own error store
// (POST /_errors/browser), where they are scrubbed of personal data like every other
// error. Loaded on every page; no inline script (the CSP forbids it).
(function () {
  "use strict";
  var sent = 0;
  var MAX_PER_PAGE = 10; // a page stuck in an error loop must not flood the store
  function report(kind, message, stack) {
    if (sent >= MAX_PER_PAGE) { return; }
    sent += 1;
    var body = JSON.stringify({
      kind: kind,
      message: String(message || "unknown error").slice(0, 2000),
      stack: stack ? String(stack).slice(0, 8000) : null,
      url: location.pathname,
    });
    try {
      if (navigator.sendBeacon && navigator.sendBeacon("/_errors/browser", new Blob([body], { type: "application/json" }))) {
        return;
      }
    } catch (ignored) { /* fall back to fetch */ }
    try {
      fetch("/_errors/browser", { method: "POST", headers: { "content-type": "application/json" }, body: body, keepalive: true });
    } catch (ignored) { /* nothing more can be done */ }
  }
  window.addEventListener("error", function (event) {
    report("error", event.message, event.error && event.error.stack);
  });
  window.addEventListener("unhandledrejection", function (event) {
    var reason = event.reason;
    report("unhandledrejection", reason && reason.message ? reason.message : reason, reason && reason.stack);
  });
})();
