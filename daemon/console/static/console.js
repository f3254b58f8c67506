// The console's own script: what a page does better with JavaScript, never what it needs.
// Every form works without it.
(function () {
  "use strict";
  // "Use my location" fills the report's coordinates from the browser, when it has them.
  var locate = document.querySelector("[data-locate]");
  if (locate && "geolocation" in navigator) {
    locate.hidden = false;
    locate.addEventListener("click", function () {
      navigator.geolocation.getCurrentPosition(function (p) {
        document.getElementById("lat").value = p.coords.latitude.toFixed(6);
        document.getElementById("lon").value = p.coords.longitude.toFixed(6);
      });
    });
  }
})();

// A live page (an inbox, the wall): the server says when what it shows changed (Server-Sent
// Events); the page then reads itself again and puts the new part in place, without a reload.
(function () {
  "use strict";
  var part = document.querySelector("[data-live]");
  if (!part || !part.id || !("EventSource" in window)) return;
  var source = new EventSource(part.dataset.live);
  var refreshing = false;
  var again = false;
  function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(part.id);
        if (fresh) part.innerHTML = fresh.innerHTML;
      })
      .catch(function () {})
      .then(function () {
        refreshing = false;
        if (again) { again = false; refresh(); }
      });
  }
  source.addEventListener("changed", refresh);
  source.addEventListener("ended", function () { source.close(); window.location.reload(); });
})();
