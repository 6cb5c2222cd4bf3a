// Live feed on the overview: server-sent events from /live, newest rating on top.
(function () {
  "use strict";
  var list = document.getElementById("live-feed");
  if (!list || !window.EventSource) return;
  var status = document.getElementById("live-status");
  var empty = document.getElementById("live-empty");
  var max = parseInt(list.getAttribute("data-max"), 10) || 50;
  function hue(score, scale) { return Math.round(120 * (score - 1) / Math.max(1, scale - 1)); }
  function span(cls, text) { var s = document.createElement("span"); s.className = cls; s.textContent = text; return s; }
  function add(r) {
    if (list.querySelector('li[data-seq="' + r.seq + '"]')) return;
    var li = document.createElement("li");
    li.setAttribute("data-seq", r.seq);
    li.setAttribute("data-score", r.score);
    li.setAttribute("data-scale", r.scale);
    li.setAttribute("data-counter", r.counter);
    li.setAttribute("data-officer", r.officer || "");
    li.className = "new" + (r.flagged ? " flagged" : "");
    var time = document.createElement("time");
    time.setAttribute("datetime", r.day + "T" + r.time);
    time.textContent = r.time;
    li.appendChild(time);
    var lvl = span("lvl", r.level);
    lvl.style.background = "hsl(" + hue(r.score, r.scale) + ",62%,45%)";
    li.appendChild(lvl);
    li.appendChild(span("who", r.officer_name));
    li.appendChild(span("where", r.counter_name));
    (r.flags || []).forEach(function (f) { li.appendChild(span("flag", f)); });
    list.insertBefore(li, list.firstChild);
    while (list.children.length > max) list.removeChild(list.lastChild);
    if (empty) empty.hidden = true;
  }
  var source = new EventSource("/live?after=" + encodeURIComponent(list.getAttribute("data-after") || "0"));
  source.addEventListener("open", function () { if (status) status.classList.add("on"); });
  source.addEventListener("error", function () { if (status) status.classList.remove("on"); });
  source.addEventListener("message", function (e) {
    try { add(JSON.parse(e.data)); } catch (err) { /* a malformed message is skipped */ }
  });
})();
