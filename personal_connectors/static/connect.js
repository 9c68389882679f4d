/* The hosted connect page: opens the provider's sign-in in a popup (or the whole page when a
 * popup is blocked), listens for the result, confirms and performs disconnects, and refreshes
 * the lists from the server so what is shown is always what is stored.
 * Served from this origin under a nonce CSP: no inline script, no third-party code. */
(function () {
  "use strict";

  var RESULT = "personal-connectors:result";
  var POPUP_NAME = "pc-connect";
  var root = document.getElementById("connect");
  if (!root) { return; }
  var origin = window.location.origin;
  var messageBox = document.getElementById("connect-message");
  var dialog = document.getElementById("confirm-disconnect");
  var dialogText = document.getElementById("confirm-text");
  var csrf = root.getAttribute("data-csrf") || "";
  var appOrigins = parseJSON(root.getAttribute("data-app-origins")) || [];
  var pending = null;      // the connect in progress: {key, name, popup, attempt, timer, …}
  var toConfirm = null;    // the disconnect form waiting for the dialog's answer
  var channel = null;

  function parseJSON(text) {
    try { return JSON.parse(text || "null"); } catch (e) { return null; }
  }

  function say(text, isError) {
    messageBox.setAttribute("role", isError ? "alert" : "status");
    messageBox.className = "message " + (isError ? "message-error" : "message-ok");
    messageBox.textContent = text;
  }

  function connectorName(key) {
    var item = document.querySelector('[data-connector="' + cssEscape(key) + '"]');
    var button = item && item.querySelector("[data-connector-name]");
    return button ? button.getAttribute("data-connector-name") : key;
  }

  function cssEscape(value) {
    return window.CSS && CSS.escape ? CSS.escape(value) : String(value).replace(/["\\]/g, "\\$&");
  }

  // Re-render the lists from the server's HTML (one source of truth for the markup).
  function refresh() {
    return fetch("/connect", {
      credentials: "same-origin", cache: "no-store", headers: { "Accept": "text/html" }
    }).then(function (response) {
      if (!response.ok) {
        say("This connect link has expired. Ask the app for a new one.", true);
        return;
      }
      return response.text().then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("connect-lists");
        var current = document.getElementById("connect-lists");
        if (fresh && current) { current.replaceWith(document.importNode(fresh, true)); }
      });
    }).catch(function () {
      say("The list could not be refreshed. Reload the page to see the latest state.", true);
    });
  }

  // The app that opened this page (if any) hears the same result, on its own origin only.
  function relay(data) {
    var opener = window.opener;
    if (!opener || opener === window) { return; }
    appOrigins.forEach(function (target) {
      try { opener.postMessage(data, target); } catch (e) { /* closed or navigated */ }
    });
  }

  function finishPending() {
    var current = pending;
    pending = null;
    if (current) { window.clearInterval(current.timer); }
    return current;
  }

  function onResult(data) {
    if (!data || data.type !== RESULT) { return; }
    var current = finishPending();
    var name = data.connector ? connectorName(data.connector) : (current && current.name);
    if (data.connected) {
      say(data.message || ((name || "Your account") + " is connected."), false);
    } else {
      say(data.message || ("Connecting " + (name || "the account") + " failed."), true);
    }
    if (current && current.popup && !current.popup.closed) {
      try { current.popup.close(); } catch (e) { /* not ours any more */ }
    }
    refresh();
    relay({ type: RESULT, connected: !!data.connected, connection_id: data.connection_id,
            error: data.error, connector: data.connector });
  }

  function newAttempt() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  // The server's word on the attempt, asked every second while it is in flight. The popup's
  // `closed` flag is only a hint: a provider whose Cross-Origin-Opener-Policy is same-origin
  // cuts the popup off from this page, which then sees it "closed" while the person is still
  // signing in. So failure is declared only by the server (failed, expired), never by the flag.
  function poll(current) {
    if (pending !== current || current.asking) { return; }
    current.asking = true;
    fetch("/connect/status?attempt=" + encodeURIComponent(current.attempt), {
      credentials: "same-origin", cache: "no-store", headers: { "Accept": "application/json" }
    }).then(function (response) {
      return response.ok ? response.json() : null;
    }).then(function (status) {
      current.asking = false;
      if (pending !== current || !status) { return; }
      if (status.result) { onResult(status.result); return; }
      var closed = current.popup.closed;
      if (status.state === "starting" && closed) {
        current.closedPolls += 1;
        if (current.closedPolls >= 3) {   // closed before the sign-in even began
          finishPending();
          say("The sign-in window was closed before " + current.name +
              " was connected. Nothing was changed.", true);
        }
        return;
      }
      if (status.state === "pending" && closed && !current.toldWaiting) {
        current.toldWaiting = true;
        say("Waiting for the sign-in to " + current.name + " to finish. If you closed that " +
            "window, you can start again.", false);
      }
    }).catch(function () { current.asking = false; });
  }

  function startConnect(button) {
    var key = button.getAttribute("data-connector-key");
    var name = button.getAttribute("data-connector-name") || key;
    var url = "/connect/start/" + encodeURIComponent(key);
    var previous = finishPending();
    if (previous && previous.popup && !previous.popup.closed) { previous.popup.close(); }
    var attempt = newAttempt();
    var popup = window.open(url + "?attempt=" + attempt, POPUP_NAME, "popup,width=520,height=720");
    if (!popup) {
      // Popup blocked: do the whole round trip in this page; it comes back with ?result=.
      say("Opening the sign-in page for " + name + "…", false);
      window.location.assign(url);
      return;
    }
    say("Finish connecting " + name + " in the window that opened.", false);
    var current = { key: key, name: name, popup: popup, attempt: attempt, timer: 0,
                    closedPolls: 0, asking: false, toldWaiting: false };
    pending = current;
    current.timer = window.setInterval(function () { poll(current); }, 1000);
  }

  function askDisconnect(form) {
    if (!dialog || typeof dialog.showModal !== "function") {
      if (window.confirm("Disconnect " + form.getAttribute("data-label") + "?")) { disconnect(form); }
      return;
    }
    toConfirm = form;
    dialogText.textContent = "Disconnect " + form.getAttribute("data-label") +
      "? The app will lose access to this account.";
    dialog.returnValue = "";
    dialog.showModal();
  }

  function disconnect(form) {
    var label = form.getAttribute("data-label");
    fetch(form.getAttribute("action"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRF-Token": csrf }
    }).then(function (response) {
      if (response.ok) {
        say(label + " was disconnected.", false);
        return refresh().then(function () {
          var heading = document.getElementById("connections-heading");
          if (heading) { heading.focus(); }
        });
      }
      return response.json().catch(function () { return null; }).then(function (body) {
        var text = body && body.error && body.error.message;
        say(text || ("Disconnecting " + label + " failed. Please try again."), true);
        return refresh();
      });
    }).catch(function () {
      say("Disconnecting " + label + " failed: the service could not be reached.", true);
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest(".connect-button") : null;
    if (button && !button.disabled) {
      event.preventDefault();
      startConnect(button);
    }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form && form.classList && form.classList.contains("disconnect-form")) {
      event.preventDefault();
      askDisconnect(form);
    }
  });

  if (dialog) {
    dialog.addEventListener("close", function () {
      var form = toConfirm;
      toConfirm = null;
      if (form && dialog.returnValue === "confirm") { disconnect(form); }
    });
  }

  window.addEventListener("message", function (event) {
    if (event.origin !== origin) { return; }   // only our own result pages speak to us
    onResult(event.data);
  });

  // A popup cut off from this page by its provider's COOP still reaches us on this channel
  // (and if not, the status poll does).
  if (typeof BroadcastChannel === "function") {
    channel = new BroadcastChannel("personal-connectors");
    channel.onmessage = function (event) {
      // Every tab of this origin hears the channel: only the result of our own attempt is ours.
      if (event.data && pending && event.data.attempt === pending.attempt) { onResult(event.data); }
    };
  }

  // Back from a full-page round trip: show it once, tell the app, and clean the address bar.
  var initial = parseJSON(root.getAttribute("data-result"));
  if (initial && initial.type === RESULT) { relay(initial); }
  if (window.location.search && window.history.replaceState) {
    window.history.replaceState(null, "", window.location.pathname);
  }
})();
