/* The end of a connect started from the connect page. In a popup: hand the result to the page
 * that opened it (same origin only; or, when the provider's Cross-Origin-Opener-Policy cut the
 * popup off from it, over a BroadcastChannel — the page also polls /connect/status), then
 * close; if the browser keeps the window open, it says the window can be closed and never
 * becomes a second connect page. After a full-page round trip (``back``): go back to the
 * connect page, which shows the result. */
(function () {
  "use strict";
  var node = document.getElementById("pc-result");
  if (!node) { return; }
  var data;
  try { data = JSON.parse(node.textContent); } catch (e) { return; }
  var origin = window.location.origin;
  var opener = window.opener;
  var sameOriginOpener = false;
  try { sameOriginOpener = !!opener && !opener.closed && opener.location.origin === origin; }
  catch (e) { sameOriginOpener = false; }   // a cross-origin opener: not ours to talk to
  if (sameOriginOpener) {
    opener.postMessage(data.message, origin);
  } else if (typeof BroadcastChannel === "function") {
    try {
      var channel = new BroadcastChannel("personal-connectors");
      channel.postMessage(data.message);
      channel.close();
    } catch (e) { /* no channel: the page's status poll or the redirect shows the result */ }
  }
  if (data.back) {
    window.location.replace(data.back);
    return;
  }
  window.close();
})();
