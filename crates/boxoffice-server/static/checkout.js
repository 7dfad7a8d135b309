// The checkout page: the hold's live countdown, and releasing the hold when the buyer
// leaves the page — never while a payment is under way. Wired by data- attributes (the
// CSP forbids inline script); the page works without it (the server renders the state).
(function () {
  "use strict";
  var main = document.querySelector("main[data-hold-id]");
  if (!main) { return; }
  var holdId = main.getAttribute("data-hold-id");
  var active = main.getAttribute("data-hold-status") === "active";
  var countdown = document.querySelector("[data-testid='countdown']");
  var payForm = document.getElementById("pay-form");
  var paying = false;   // set once "Pay" is pressed: from then on leaving never releases the hold
  var expired = !active;
  var left = false;

  // "2030-06-01T19:30:00Z", or milliseconds since the epoch.
  function parseInstant(raw) {
    if (!raw) { return NaN; }
    return /^\d+$/.test(raw) ? Number(raw) : Date.parse(raw);
  }

  function showExpired() {
    if (expired) { return; }
    expired = true;
    var section = document.getElementById("hold-active");
    var template = document.getElementById("hold-expired-template");
    if (!section || !template) { return; }
    var content = template.content.cloneNode(true);
    template.remove();
    section.replaceWith(content);
    var heading = document.getElementById("expired-title");
    if (heading) { heading.focus(); }
  }

  if (active && countdown) {
    var expiresAt = parseInstant(countdown.getAttribute("data-expires-at"));
    var serverNow = parseInstant(countdown.getAttribute("data-server-now"));
    // The server's clock is the truth: correct for this device's clock being off.
    var skew = isNaN(serverNow) ? 0 : serverNow - Date.now();
    var announcer = document.getElementById("countdown-announcer");
    var lastAnnounced = null;
    var timer = null;
    var tick = function () {
      var remaining = Math.max(0, Math.floor((expiresAt - (Date.now() + skew)) / 1000));
      var minutes = Math.floor(remaining / 60);
      var seconds = remaining % 60;
      countdown.textContent = minutes + ":" + (seconds < 10 ? "0" : "") + seconds;
      // Screen readers hear the time left once a minute and in the last minute's key moments,
      // not every second.
      if (announcer && remaining > 0 && (seconds === 0 || remaining === 30 || remaining === 10)
          && lastAnnounced !== remaining) {
        lastAnnounced = remaining;
        announcer.textContent = minutes > 0
          ? minutes + (minutes === 1 ? " minute" : " minutes") + " left to pay."
          : remaining + " seconds left to pay.";
      }
      if (remaining <= 0 && !paying) {
        if (timer) { clearInterval(timer); }
        showExpired();
      }
    };
    if (!isNaN(expiresAt)) {
      tick();
      timer = setInterval(tick, 1000);
    }
  }

  if (payForm) {
    payForm.addEventListener("submit", function () {
      paying = true;
      var button = payForm.querySelector("button[type='submit']");
      if (button) {
        // Disabled after the submission was started, so the click still submits; a second
        // click does not (the server would answer it safely anyway).
        setTimeout(function () { button.disabled = true; button.textContent = "Paying…"; }, 0);
      }
    });
  }

  window.addEventListener("pagehide", function () {
    if (!active || paying || expired || left || !holdId) { return; }
    left = true;
    var url = "/checkout/" + encodeURIComponent(holdId) + "/leave";
    try {
      if (navigator.sendBeacon && navigator.sendBeacon(url)) { return; }
    } catch (ignored) { /* fall back to fetch */ }
    try {
      fetch(url, { method: "POST", keepalive: true, credentials: "same-origin" });
    } catch (ignored) { /* nothing more can be done */ }
  });

  // Back from the browser's page cache after leaving: the hold was released, so show the
  // page as the server sees it now.
  window.addEventListener("pageshow", function (event) {
    if (event.persisted && left) { window.location.reload(); }
  });
})();
