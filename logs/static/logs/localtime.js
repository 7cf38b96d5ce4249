// Times in the viewer's time zone: each <time datetime> shows local time, its title keeps UTC.
(function () {
  function pad(n, width) { return String(n).padStart(width || 2, "0"); }
  function localize(root) {
    (root || document).querySelectorAll("time[datetime]:not([data-local])").forEach(function (node) {
      var when = new Date(node.dateTime);
      if (isNaN(when)) return;
      var day = when.getFullYear() + "-" + pad(when.getMonth() + 1) + "-" + pad(when.getDate());
      var clock = pad(when.getHours()) + ":" + pad(when.getMinutes()) + ":" + pad(when.getSeconds());
      var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
      if (node.dataset.format === "row") {
        node.innerHTML = "";
        node.append(when.toLocaleString("en", {month: "short"}) + " " + when.getDate() + " ");
        var bold = document.createElement("b");
        bold.textContent = clock;
        node.append(bold);
      } else {
        var micro = node.dateTime.match(/\.(\d+)/);
        node.textContent = day + " " + clock + (micro && node.dataset.format === "precise" ? "." + micro[1] : "")
          + " " + zone;
      }
      node.dataset.local = "1";
    });
  }
  window.localTimes = localize;
  document.addEventListener("DOMContentLoaded", function () { localize(document); });
})();
