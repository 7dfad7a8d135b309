// The event page: keeps each ticket type's availability live while the buyer chooses,
// from the public API (same origin). Wired by data- attributes; the page works without it.
(function () {
  "use strict";
  var main = document.querySelector("main[data-event-id]");
  if (!main || !window.fetch) { return; }
  var eventId = main.getAttribute("data-event-id");
  var INTERVAL_MS = 10000;

  function update(ticketTypes) {
    ticketTypes.forEach(function (tt) {
      var row = document.querySelector("[data-testid='ticket-type'][data-ticket-type-id='" + tt.id + "']");
      if (!row) { return; }
      var available = row.querySelector("[data-testid='available']");
      if (available && available.textContent !== String(tt.available)) {
        available.textContent = String(tt.available);
      }
      var input = row.querySelector("[data-testid='qty']");
      if (input) { input.max = String(Math.max(0, Math.min(tt.available, tt.max_per_order))); }
    });
  }

  function refresh() {
    if (document.hidden) { return; }
    fetch("/api/v1/events/" + encodeURIComponent(eventId), { headers: { accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (event) { if (event && event.ticket_types) { update(event.ticket_types); } })
      .catch(function () { /* offline for a moment: the next refresh tries again */ });
  }

  setInterval(refresh, INTERVAL_MS);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) { refresh(); } });
})();
