// The hall display: calls and waiting counts from /hall/<site>/live (SSE), each call announced by
// playing its voice clips one after another through one Audio element.
(function () {
  "use strict";
  var body = document.getElementById("hall");
  if (!body || !window.EventSource) return;
  var list = document.getElementById("hall-calls");
  var waiting = document.getElementById("hall-waiting");
  var none = document.getElementById("hall-none");
  var status = document.getElementById("hall-status");
  var soundButton = document.getElementById("hall-sound");
  var max = parseInt(list.getAttribute("data-max"), 10) || 6;
  var CLIP_TIMEOUT_MS = 8000; // a clip that never ends (broken file, no audio device) must not stall the rest

  // ----- the voice: a queue of clip URLs, played in order ---------------------------------------
  var audio = new Audio();
  audio.preload = "auto";
  var clips = [], playing = false, guard = null, turn = 0;
  // What was played, for whoever looks after the screen (and the tests): the clips in order, and
  // whether an announcement is still going.
  var voice = window.hallVoice = { spoken: [], busy: false };
  function next() {
    clearTimeout(guard);
    if (!clips.length) { playing = voice.busy = false; return; }
    playing = voice.busy = true;
    var mine = ++turn; // "ended", "error", a refused play() and the guard may all fire for one clip
    function done() { if (mine === turn) next(); }
    audio.onended = audio.onerror = done;
    audio.src = clips.shift();
    voice.spoken.push(audio.src);
    guard = setTimeout(done, CLIP_TIMEOUT_MS);
    var p = audio.play();
    if (p && p.catch) p.catch(function (err) {
      // Autoplay refused (a browser not started for a kiosk): offer a click, skip this clip.
      if (err && err.name === "NotAllowedError") soundButton.hidden = false;
      setTimeout(done, 50);
    });
  }
  soundButton.addEventListener("click", function () { soundButton.hidden = true; audio.play().catch(function () {}); });
  function announce(urls) {
    if (!urls || !urls.length) return;
    Array.prototype.push.apply(clips, urls);
    voice.busy = true;
    if (!playing) next();
  }

  // ----- the screen -----------------------------------------------------------------------------
  function span(cls, text) { var s = document.createElement("span"); s.className = cls; s.textContent = text; return s; }
  function addCall(c) {
    if (list.querySelector('li[data-id="' + c.id + '"]')) return;
    if (!c.ticket || c.ticket === "----") return;
    var li = document.createElement("li");
    li.setAttribute("data-id", c.id);
    li.setAttribute("data-ticket", c.ticket);
    li.setAttribute("data-counter", c.counter);
    if (c.recall) li.setAttribute("data-recall", "1");
    li.className = "new";
    li.appendChild(span("ticket", c.ticket));
    li.appendChild(span("arrow", "→"));
    li.appendChild(span("where", c.counter_name));
    list.insertBefore(li, list.firstChild);
    while (list.children.length > max) list.removeChild(list.lastChild);
    if (none) none.hidden = true;
    announce(c.clips);
  }
  function showWaiting(rows) {
    while (waiting.firstChild) waiting.removeChild(waiting.firstChild);
    rows.forEach(function (q) {
      var li = document.createElement("li");
      li.setAttribute("data-queue", q.queue);
      li.setAttribute("data-waiting", q.waiting);
      li.appendChild(span("name", q.name));
      li.appendChild(span("n", String(q.waiting)));
      waiting.appendChild(li);
    });
  }

  var url = body.getAttribute("data-live") + "?after=" + encodeURIComponent(body.getAttribute("data-after") || "0");
  var key = body.getAttribute("data-key");
  if (key) url += "&key=" + encodeURIComponent(key);
  var source = new EventSource(url);
  source.addEventListener("open", function () { status.classList.add("on"); });
  source.addEventListener("error", function () { status.classList.remove("on"); });
  source.addEventListener("call", function (e) {
    try { addCall(JSON.parse(e.data)); } catch (err) { /* a malformed message is skipped */ }
  });
  source.addEventListener("waiting", function (e) {
    try { showWaiting(JSON.parse(e.data)); } catch (err) { /* idem */ }
  });
})();
