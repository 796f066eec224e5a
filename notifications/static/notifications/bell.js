/* notifyproject bell: one WebSocket per tab, a live unread badge and a dropdown.
 * Dependency-free. Notification text is only ever inserted with textContent. */
(function () {
  "use strict";

  var root = document.querySelector("[data-notification-bell]");
  if (!root || !("WebSocket" in window)) return;

  var toggle = root.querySelector("[data-notification-toggle]");
  var badge = root.querySelector("[data-unread-count]");
  var panel = root.querySelector("[data-notification-panel]");
  var list = root.querySelector("[data-notification-list]");
  var empty = root.querySelector("[data-notification-empty]");
  var markAll = root.querySelector("[data-notification-mark-all]");
  var status = root.querySelector("[data-notification-status]");

  var MAX_ITEMS = 10;
  var BACKOFF_MIN = 500, BACKOFF_MAX = 30000;
  var socket = null, attempt = 0, lastId = null, stopped = false, retryTimer = null;
  var items = new Map(); // id -> notification, newest first when rendered

  function setUnread(n) {
    n = Math.max(0, n | 0);
    badge.setAttribute("data-unread-count", String(n));
    badge.textContent = n > 99 ? "99+" : String(n);
    badge.hidden = n === 0;
  }

  function setStatus(text) {
    status.textContent = text || "";
    root.classList.toggle("nbell-offline", !!text);
  }

  function render() {
    var sorted = Array.from(items.values()).sort(function (a, b) { return b.id - a.id; });
    list.textContent = "";
    sorted.slice(0, MAX_ITEMS).forEach(function (n) {
      var li = document.createElement("li");
      li.className = "nbell-item nbell-" + n.level + (n.read ? "" : " nbell-unread");
      li.setAttribute("data-notification-id", String(n.id));
      var title = document.createElement("span");
      title.className = "nbell-title";
      title.textContent = n.title;
      li.appendChild(title);
      if (n.body) {
        var body = document.createElement("span");
        body.className = "nbell-body";
        body.textContent = n.body.split("\n")[0];
        li.appendChild(body);
      }
      li.tabIndex = 0;
      li.addEventListener("click", function () { openItem(n); });
      list.appendChild(li);
    });
    empty.hidden = sorted.length > 0;
  }

  function remember(n) {
    var known = items.get(n.id);
    items.set(n.id, n);
    if (lastId === null || n.id > lastId) lastId = n.id;
    return !known;
  }

  function send(frame) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  function csrfToken() {
    var m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  function markRead(ids, all) {
    var frame = all ? { type: "read_all" } : { type: "read", ids: ids };
    if (send(frame)) return;
    fetch(root.getAttribute("data-read-url"), {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(all ? { all: true } : { ids: ids })
    }).then(function (r) { return r.json(); }).then(function (data) {
      items.forEach(function (n) { if (all || ids.indexOf(n.id) >= 0) n.read = true; });
      setUnread(data.unread); render();
    });
  }

  function openItem(n) {
    if (!n.read) markRead([n.id], false);
    if (n.url && (n.url.charAt(0) === "/" || /^https?:\/\//i.test(n.url))) {
      window.location.assign(n.url);
    }
  }

  function onFrame(msg) {
    switch (msg.type) {
      case "hello":
        setUnread(msg.unread);
        setStatus("");
        send({ type: "sync", since: lastId });
        break;
      case "notification":
        if (remember(msg.notification)) {
          setUnread(Number(badge.getAttribute("data-unread-count")) + 1);
          send({ type: "ack", ids: [msg.notification.id] });
          render();
        }
        break;
      case "missed":
        var fresh = [];
        msg.notifications.forEach(function (n) { if (remember(n)) fresh.push(n.id); });
        if (fresh.length) send({ type: "ack", ids: fresh });
        render();
        break;
      case "read":
        msg.ids.forEach(function (id) { var n = items.get(id); if (n) n.read = true; });
        setUnread(msg.unread);
        render();
        break;
    }
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + root.getAttribute("data-ws-path"));
    socket.onopen = function () { attempt = 0; };
    socket.onmessage = function (e) {
      try { onFrame(JSON.parse(e.data)); } catch (err) { /* ignore a bad frame */ }
    };
    socket.onclose = function (e) {
      socket = null;
      if (e.code === 4401) { stopped = true; setStatus("Log in again to get notifications."); return; }
      if (stopped) return;
      setStatus("Reconnecting…");
      // Exponential backoff with full jitter: a restarted server is not stampeded.
      var ceiling = Math.min(BACKOFF_MAX, BACKOFF_MIN * Math.pow(2, attempt++));
      retryTimer = setTimeout(connect, ceiling / 2 + Math.random() * ceiling / 2);
    };
  }

  toggle.addEventListener("click", function (e) {
    e.preventDefault();
    var open = panel.hidden;
    panel.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
  });
  markAll.addEventListener("click", function () { markRead([], true); });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") send({ type: "sync", since: lastId });
  });
  window.addEventListener("pagehide", function () {
    stopped = true; clearTimeout(retryTimer); if (socket) socket.close(1000);
  });

  render();
  connect();
})();
