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
