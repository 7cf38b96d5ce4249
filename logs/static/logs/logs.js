// Live tail of the request log list (templates/logs/list.html): with "Live" on, each request
// that finishes and matches the page's filters arrives on /ws/logs/ and is put at the top.
// The server renders the row (logs/_row.html), so the page and the socket show the same thing.
(function () {
  "use strict";
  var toggle = document.getElementById("live-toggle");
  if (!toggle) return;
  var status = document.getElementById("live-status");
  var tbody = document.querySelector("#log-table tbody");
  var KEEP = 500; // rows kept on the page while live; older ones drop off the bottom
  var socket = null;
  var retry = 1000;
  var timer = null;
  // The summary atop the page is reloaded as rows arrive, at most once per SUMMARY_EVERY ms:
  // its figures come from the server (logs/_summary.html), so they are the overview's.
  var summary = document.querySelector("[data-summary-url]");
  var SUMMARY_EVERY = 2000;
  var summaryDue = null;

  function refreshSummary() {
    summaryDue = null;
    fetch(summary.dataset.summaryUrl, {credentials: "same-origin"}).then(function (response) {
      return response.ok ? response.text() : null;
    }).then(function (html) {
      var table = summary.querySelector("table.numbers");
      if (!html || !table) return;
      var template = document.createElement("template");
      template.innerHTML = html.trim();
      var fresh = template.content.querySelector("table.numbers");
      if (fresh) table.replaceWith(fresh);
    }).catch(function () { /* the next row tries again */ });
  }

  function summaryChanged() {
    if (summary && summaryDue === null) summaryDue = setTimeout(refreshSummary, SUMMARY_EVERY);
  }

  function show(text, state) {
    status.textContent = text;
    status.className = "live-status " + (state || "");
  }

  function prepend(html) {
    var template = document.createElement("template");
    template.innerHTML = html.trim();
    var row = template.content.firstElementChild;
    if (!row) return;
    var empty = tbody.querySelector("tr.empty");
    if (empty) empty.remove();
    row.classList.add("fresh");
    tbody.insertBefore(row, tbody.firstElementChild);
    if (window.localTimes) window.localTimes(row);
    while (tbody.rows.length > KEEP) tbody.deleteRow(-1);
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + toggle.dataset.socket);
    show("connecting…");
    socket.onopen = function () { retry = 1000; show("live", "on"); };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.type === "request") prepend(message.html);
      else if (message.type === "written") summaryChanged();
    };
    socket.onclose = function () {
      socket = null;
      if (!toggle.checked) return;
      // Reconnect with back-off: a restarted gateway or a dropped proxy connection heals itself.
      show("reconnecting…", "off");
      timer = setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    };
  }

  function stop() {
    clearTimeout(timer);
    if (socket) socket.close();
    socket = null;
    show("");
  }

  toggle.addEventListener("change", function () {
    try { localStorage.setItem("logs.live", toggle.checked ? "on" : "off"); } catch (e) { /* private mode */ }
    if (toggle.checked) connect(); else stop();
  });
  var remembered = null;
  try { remembered = localStorage.getItem("logs.live"); } catch (e) { /* private mode */ }
  if (remembered === "on") { toggle.checked = true; connect(); }
})();
