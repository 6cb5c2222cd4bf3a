// Live feed on the overview: server-sent events from /live, the latest rating (by the time it was
// given) on top. Events arrive in storage order, so a counter's late backlog is put where its
// times belong, not on top; one older than every rating shown, in a full list, is left out.
(function () {
  "use strict";
  var list = document.getElementById("live-feed");
  if (!list || !window.EventSource) return;
  var status = document.getElementById("live-status");
  var empty = document.getElementById("live-empty");
  var max = parseInt(list.getAttribute("data-max"), 10) || 50;
  function hue(score, scale) { return Math.round(120 * (score - 1) / Math.max(1, scale - 1)); }
  function span(cls, text) { var s = document.createElement("span"); s.className = cls; s.textContent = text; return s; }
  // The first item given before r (ties: stored before it), which r goes above; null: r goes last.
  function before(r) {
    var items = list.children;
    for (var i = 0; i < items.length; i++) {
      var ts = Number(items[i].getAttribute("data-ts")), seq = Number(items[i].getAttribute("data-seq"));
      if (ts < r.ts || (ts === r.ts && seq < r.seq)) return items[i];
    }
    return null;
  }
  function add(r) {
    if (list.querySelector('li[data-seq="' + r.seq + '"]')) return;
    var li = document.createElement("li");
    li.setAttribute("data-seq", r.seq);
    li.setAttribute("data-ts", r.ts);
    li.setAttribute("data-score", r.score);
    li.setAttribute("data-scale", r.scale);
    li.setAttribute("data-counter", r.counter);
    li.setAttribute("data-officer", r.officer || "");
    li.className = "new" + (r.flagged ? " flagged" : "");
    var time = document.createElement("time");
    time.setAttribute("datetime", r.day + "T" + r.time);
    if (r.date) { time.appendChild(span("date", r.date)); time.appendChild(document.createTextNode(" ")); }
    time.appendChild(document.createTextNode(r.time));
    li.appendChild(time);
    var lvl = span("lvl", r.level);
    lvl.style.background = "hsl(" + hue(r.score, r.scale) + ",62%,45%)";
    li.appendChild(lvl);
    li.appendChild(span("who", r.officer_name));
    li.appendChild(span("where", r.counter_name));
    (r.flags || []).forEach(function (f) { li.appendChild(span("flag", f)); });
    var next = before(r);
    if (!next && list.children.length >= max) return;
    list.insertBefore(li, next);
    while (list.children.length > max) list.removeChild(list.lastChild);
    if (empty) empty.hidden = true;
  }
  var site = list.getAttribute("data-site");
  var source = new EventSource("/live?after=" + encodeURIComponent(list.getAttribute("data-after") || "0") +
                               (site ? "&site=" + encodeURIComponent(site) : ""));
  source.addEventListener("open", function () { if (status) status.classList.add("on"); });
  source.addEventListener("error", function () { if (status) status.classList.remove("on"); });
  source.addEventListener("message", function (e) {
    try { add(JSON.parse(e.data)); } catch (err) { /* a malformed message is skipped */ }
  });
})();
