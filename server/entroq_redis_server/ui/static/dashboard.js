// The dashboard's own script (script-src 'self'; no inline handlers): selection in the
// quarantine list (shift-click ranges, select all per group or everything) and lease countdowns.
(function () {
  "use strict";
  var lastPicked = null;

  function picks(group) {
    var all = Array.prototype.slice.call(document.querySelectorAll("input.pick"));
    return group === "all" ? all : all.filter(function (box) { return box.dataset.group === group; });
  }

  document.addEventListener("click", function (event) {
    var box = event.target;
    if (!(box instanceof HTMLInputElement)) { return; }
    if (box.classList.contains("pick-all")) {
      picks(box.dataset.group).forEach(function (each) { each.checked = box.checked; });
      return;
    }
    if (!box.classList.contains("pick")) { return; }
    var all = picks("all");
    if (event.shiftKey && lastPicked !== null) {
      var from = all.indexOf(lastPicked), to = all.indexOf(box);
      if (from >= 0 && to >= 0) {
        all.slice(Math.min(from, to), Math.max(from, to) + 1).forEach(function (each) { each.checked = box.checked; });
      }
    }
    lastPicked = box;
  });

  var loaded = Date.now();
  function tick() {
    document.querySelectorAll(".countdown").forEach(function (node) {
      var left = Math.round((Number(node.dataset.leftMs) - (Date.now() - loaded)) / 1000);
      node.textContent = left > 0 ? left + " s" : "expired";
      node.classList.toggle("expired", left <= 0);
    });
  }
  setInterval(tick, 1000);
})();
