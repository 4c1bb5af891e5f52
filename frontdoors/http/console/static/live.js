// Live progress of a run page: polls /runs/ID/live every second until the run
// is final (or waits for a decision), then reloads once to show its actions.
(function () {
  "use strict";
  var root = document.getElementById("run");
  if (!root || root.dataset.final === "true") { return; }
  var url = "/runs/" + encodeURIComponent(root.dataset.run) + "/live";
  var shown = root.dataset.status;

  function set(el, text) { if (el && el.textContent !== String(text)) { el.textContent = String(text); } }

  function apply(run) {
    var counts = run.counts || {};
    root.querySelectorAll("[data-count]").forEach(function (el) {
      if (counts[el.dataset.count] !== undefined) { set(el, Number(counts[el.dataset.count]).toLocaleString("en-US")); }
    });
    var batches = run.batches || {};
    root.querySelectorAll("[data-batch]").forEach(function (el) {
      if (batches[el.dataset.batch] !== undefined) { set(el, Number(batches[el.dataset.batch]).toLocaleString("en-US")); }
    });
    var bar = document.getElementById("run-progress");
    if (bar) { bar.max = batches.total || 1; bar.value = batches.done || 0; }
    var message = document.getElementById("run-message");
    if (message) { set(message, run.message || ""); message.hidden = !run.message; }
    set(document.getElementById("run-status"), String(run.status).replace(/_/g, " "));
  }

  function poll() {
    fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin", cache: "no-store" })
      .then(function (answer) {
        if (!answer.ok || (answer.headers.get("content-type") || "").indexOf("json") < 0) { throw new Error("stopped"); }
        return answer.json();
      })
      .then(function (run) {
        apply(run);
        if (run.status !== shown && (run.final || run.status === "awaiting_approval")) {
          window.location.replace(window.location.pathname);  // drop ?done=
          return;
        }
        if (!run.final && run.status !== "awaiting_approval") { window.setTimeout(poll, 1000); }
      })
      .catch(function () { /* signed out or gone: the Refresh link still works */ });
  }
  window.setTimeout(poll, 1000);
})();
