/* The end of a connect started from the connect page: hand the result to the page that opened
 * this popup (same origin only), then close; without such an opener (popup blocked, or cut off
 * by the provider's Cross-Origin-Opener-Policy), go back to the connect page, which shows it. */
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
    window.close();
    return;
  }
  if (typeof BroadcastChannel === "function") {
    try {
      var channel = new BroadcastChannel("personal-connectors");
      channel.postMessage(data.message);
      channel.close();
    } catch (e) { /* no channel: the page shows the result after the redirect anyway */ }
  }
  if (data.back) { window.location.replace(data.back); }
})();
