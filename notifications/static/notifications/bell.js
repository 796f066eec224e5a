/* notifyproject bell: one WebSocket per tab, a live unread badge, a dropdown of the latest
 * ten, toasts, opt-in desktop notifications, and several tabs kept in step.
 *
 * Dependency-free, no build step. Notification text is only ever inserted with textContent.
 * The protocol is described in DESIGN.md ("WebSocket protocol"); the page hooks
 * (data-notification-bell, -toggle, data-unread-count, data-notification-id, -mark-all) are a
 * contract with site authors and tests.
 *
 * Unread count: the server's number (hello, read frames, the HTTP API) is the truth; a live
 * notification adds one. Items that arrive in answer to the sync sent right after a hello are
 * already in that hello's count and add nothing.
 */
(function () {
  "use strict";

  var root = document.querySelector("[data-notification-bell]");
  if (!root || root.hasAttribute("data-bell-ready")) return;
  root.setAttribute("data-bell-ready", "");

  var $ = function (sel) { return root.querySelector(sel); };
  var toggle = $("[data-notification-toggle]");
  var badge = $("[data-unread-count]");
  var panel = $("[data-notification-panel]");
  var list = $("[data-notification-list]");
  var loading = $("[data-notification-loading]");
  var empty = $("[data-notification-empty]");
  var markAllButton = $("[data-notification-mark-all]");
  var status = $("[data-notification-status]");
  var relogin = $("[data-notification-relogin]");
  var desktopButton = $("[data-notification-desktop]");
  var announcer = $("[data-notification-announcer]");
  var toastBox = $("[data-notification-toasts]");
  var stringsNode = document.getElementById(root.getAttribute("data-strings-id"));
  var S = stringsNode ? JSON.parse(stringsNode.textContent) : {};
  var lang = document.documentElement.lang || undefined;

  var MAX_ITEMS = 10;             // the dropdown shows the latest ten; the inbox has the rest
  var MAX_TOASTS = 3;             // more at once is noise; the rest are summed up in one toast
  var TOAST_MS = 6000;            // long enough to read a title and a line
  var BACKOFF_BASE = 500;         // first retry within half a second: most drops are blips
  var BACKOFF_CAP = 30000;        // never wait more than 30 s between attempts
  var THROTTLED_MIN = 15000;      // after 4429/4413 the server asked us to slow down
  // Notice a silently dead connection, or a lost push, within ~40 s (tests set it shorter).
  var PING_EVERY = Number(root.getAttribute("data-ping-every")) || 30000;
  var PONG_WAIT = 10000;
  var READ_CONFIRM_WAIT = 1500;   // how long a click waits for the server before following a link
  var ACK_DELAY = 250;            // batch acks: at most four frames a second, whatever arrives
  var MAX_IDS = 500;              // the server's per-frame cap (NOTIFICATIONS["MAX_IDS"])
  var STABLE_AFTER = 5000;        // a socket up this long resets the backoff
  var SYNC_GAP = 2000;            // flicking between tabs must not flood the server with syncs
  var DESKTOP_KEY = "notifyproject.bell.desktop";

  var items = new Map();          // id -> serialized notification
  // The sync cursor: the last id of the last `missed` answer (the server's dispatch order).
  // Only sync answers move it — a push that arrives after a lost one must not carry the
  // cursor past the hole.
  var lastId = null;
  var MAX_SYNC = Number(root.getAttribute("data-max-sync")) || 200;
  var unread = Number(badge.getAttribute("data-unread-count")) || 0;
  var loaded = false;             // the first list has arrived
  var socket = null;
  var attempt = 0;
  var retryTimer = null;
  var pingTimer = null;
  var pongTimer = null;
  var stableTimer = null;
  var stopped = false;
  var greeted = false;            // a hello has arrived on some connection of this page
  var syncQueue = [];             // per sync in flight: {counted: a hello or pong already
                                  // counted its items, since: the cursor it was sent with}
  var readWaiters = [];
  var lastVisibleSync = 0;
  var originalTitle = document.title.replace(/^\(\d+\+?\) /, "");

  // Test hook, off unless the page set window.__nbellTestHooks = true before this script ran
  // (the fault and browser tests do, with an init script): a frozen, read-only view of what
  // this bell holds — every id (the dropdown shows ten), which came by push and which by
  // sync, the sync cursor. It changes nothing and shows nothing the user's own API does not.
  var seen = null;                // only with the hook on: {push: Set, sync: Set, twice: N}
  var gapSyncs = 0;               // syncs sent because a pong named an id past the cursor
  if (window.__nbellTestHooks === true && !window.__nbell) {
    seen = { push: new Set(), sync: new Set(), twice: 0 };
    window.__nbell = Object.freeze({
      state: function () {
        return {
          ids: Array.from(items.keys()),
          pushed: Array.from(seen.push),
          synced: Array.from(seen.sync),
          duplicatePushes: seen.twice,
          cursor: lastId,
          unread: unread,
          gapSyncs: gapSyncs,
          connected: !!(socket && socket.readyState === WebSocket.OPEN)
        };
      }
    });
  }

  function arrivedVia(way, notifications) {
    if (!seen) return;
    notifications.forEach(function (n) {
      if (!n || typeof n.id !== "number") return;
      if (way === "push" && seen.push.has(n.id)) seen.twice += 1;
      seen[way].add(n.id);
    });
  }

  // ---- helpers -------------------------------------------------------------------------

  function t(key, params) {
    var text = S[key] || key;
    if (params) {
      text = text.replace(/%\((\w+)\)s/g, function (m, name) {
        return name in params ? String(params[name]) : m;
      });
    }
    return text;
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function firstLine(text) {
    return (text || "").split(/\r?\n/).filter(function (l) { return l.trim(); })[0] || "";
  }

  /* Return a URL safe to follow: a same-site path or http(s); anything else (javascript:,
   * data:, protocol-relative //host) is never followed. */
  function safeUrl(url) {
    if (typeof url !== "string" || !url) return null;
    if (/^\/(?![\/\\])/.test(url)) return url;
    if (/^https?:\/\//i.test(url)) {
      try {
        var parsed = new URL(url);
        if (parsed.protocol === "http:" || parsed.protocol === "https:") return parsed.href;
      } catch (e) { /* not a URL */ }
    }
    return null;
  }

  function levelOf(n) {
    return /^(info|success|warning|error)$/.test(n.level) ? n.level : "info";
  }

  var rtf = window.Intl && Intl.RelativeTimeFormat
    ? new Intl.RelativeTimeFormat(lang, { numeric: "auto", style: "long" }) : null;
  var UNITS = [["minute", 60, 3600], ["hour", 3600, 86400], ["day", 86400, 604800],
               ["week", 604800, 2629800]];

  function relativeTime(iso) {
    var when = Date.parse(iso);
    if (isNaN(when)) return "";
    var seconds = (when - Date.now()) / 1000;
    var abs = Math.abs(seconds);
    if (abs < 60) return t("justNow");
    if (rtf) {
      for (var i = 0; i < UNITS.length; i++) {
        if (abs < UNITS[i][2]) return rtf.format(Math.round(seconds / UNITS[i][1]), UNITS[i][0]);
      }
    }
    var date = new Date(when);
    var options = { month: "short", day: "numeric" };
    if (date.getFullYear() !== new Date().getFullYear()) options.year = "numeric";
    return date.toLocaleDateString(lang, options);
  }

  function absoluteTime(iso) {
    var when = Date.parse(iso);
    return isNaN(when) ? "" : new Date(when).toLocaleString(lang);
  }

  function announce(text) {
    // Clear first so the same words twice are announced twice.
    announcer.textContent = "";
    window.setTimeout(function () { announcer.textContent = text; }, 60);
  }

  function emit(name, detail) {
    // Hooks for the rest of the page (e.g. the inbox) to follow along.
    try {
      document.dispatchEvent(new CustomEvent("notifications:" + name, { detail: detail }));
    } catch (e) { /* very old browser */ }
  }

  // ---- unread count --------------------------------------------------------------------

  function setUnread(n) {
    unread = Math.max(0, Math.floor(Number(n)) || 0);
    badge.setAttribute("data-unread-count", String(unread));
    badge.textContent = unread > 99 ? "99+" : String(unread);
    badge.hidden = unread === 0;
    toggle.setAttribute("aria-label", unread
      ? t("notificationsUnread", { count: unread > 99 ? "99+" : unread }) : t("notifications"));
    markAllButton.disabled = unread === 0;
    document.title = (unread ? "(" + (unread > 99 ? "99+" : unread) + ") " : "") + originalTitle;
  }

  // ---- the list ------------------------------------------------------------------------

  /* Store a notification; return true if this page had not seen it before. */
  function remember(n) {
    if (!n || typeof n.id !== "number") return false;
    var known = items.get(n.id);
    if (known) {
      if (n.read && !known.read) known.read = true;
      return false;
    }
    items.set(n.id, n);
    return true;
  }

  function latest() {
    return Array.from(items.values())
      .sort(function (a, b) { return b.id - a.id; })
      .slice(0, MAX_ITEMS);
  }

  function buildItem(n) {
    var level = levelOf(n);
    var li = el("li", "nbell-item nbell-level-" + level + (n.read ? "" : " is-unread"));
    li.setAttribute("data-notification-id", String(n.id));
    var href = safeUrl(n.url);
    var link = el(href ? "a" : "button", "nbell-link");
    if (href) {
      link.href = href;
      if (!/^\//.test(href)) link.rel = "noopener noreferrer";
    } else {
      link.type = "button";
    }
    link.appendChild(el("span", "nbell-level-icon")).setAttribute("aria-hidden", "true");
    var text = el("span", "nbell-text");
    text.appendChild(el("span", "nbell-title", n.title));
    var line = firstLine(n.body);
    if (line) text.appendChild(el("span", "nbell-body", line));
    var meta = el("span", "nbell-meta");
    meta.appendChild(el("span", "nbell-level-label", (S.levels || {})[level] || level));
    meta.appendChild(el("span", "nbell-sep", "·")).setAttribute("aria-hidden", "true");
    var time = el("time", "nbell-time", relativeTime(n.created_at));
    time.setAttribute("datetime", n.created_at || "");
    time.title = absoluteTime(n.created_at);
    meta.appendChild(time);
    text.appendChild(meta);
    link.appendChild(text);
    if (!n.read) {
      var dot = el("span", "nbell-dot");
      dot.appendChild(el("span", "nbell-sr", t("unread")));
      link.appendChild(dot);
    }
    link.addEventListener("click", function (event) { activate(n, event); });
    link.addEventListener("auxclick", function (event) {
      if (event.button === 1 && href && !n.read) markRead([n.id]); // middle click: new tab
    });
    li.appendChild(link);
    return li;
  }

  function render() {
    var focusedId = null;
    if (list.contains(document.activeElement)) {
      var holder = document.activeElement.closest("[data-notification-id]");
      if (holder) focusedId = holder.getAttribute("data-notification-id");
    }
    var shown = latest();
    var fragment = document.createDocumentFragment();
    shown.forEach(function (n) { fragment.appendChild(buildItem(n)); });
    list.textContent = "";
    list.appendChild(fragment);
    loading.hidden = loaded;
    empty.hidden = !loaded || shown.length > 0;
    list.hidden = shown.length === 0;
    if (focusedId !== null) {
      var again = list.querySelector('[data-notification-id="' + focusedId + '"] .nbell-link');
      if (again) again.focus();
    }
  }

  function refreshTimes() {
    Array.prototype.forEach.call(root.querySelectorAll("time[datetime]"), function (node) {
      node.textContent = relativeTime(node.getAttribute("datetime"));
    });
  }

  // ---- talking to the server -----------------------------------------------------------

  function send(frame) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      try {
        socket.send(JSON.stringify(frame));
        return true;
      } catch (e) { return false; }
    }
    return false;
  }

  /* Ask for what was delivered after `since` (by default the cursor). */
  function sync(countedByHello, since) {
    var from = since === undefined ? lastId : since;
    if (send({ type: "sync", since: from })) {
      syncQueue.push({ counted: countedByHello, since: from });
    }
  }

  /* Acks are batched: a burst of notifications must not become a burst of frames (the server
   * closes a flooding socket with 4429). Unsent ids wait for the next connection. */
  var ackQueue = [];
  var ackTimer = null;
  function ack(ids) {
    ackQueue.push.apply(ackQueue, ids);
    if (ackQueue.length && ackTimer === null) ackTimer = window.setTimeout(flushAcks, ACK_DELAY);
  }

  function flushAcks() {
    window.clearTimeout(ackTimer);
    ackTimer = null;
    while (ackQueue.length) {
      if (!send({ type: "ack", ids: ackQueue.slice(0, MAX_IDS) })) return;
      ackQueue.splice(0, MAX_IDS);
    }
  }

  function csrfToken() {
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (match) return decodeURIComponent(match[1]);
    var field = document.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  function postRead(body) {
    return fetch(root.getAttribute("data-read-url"), {
      method: "POST",
      credentials: "same-origin",
      keepalive: true, // survives the navigation that often follows a click
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(body)
    }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    }).then(function (data) {
      if (typeof data.unread === "number") setUnread(data.unread);
    });
  }

  /* Mark read (ids, or all when ids is null): shown at once, confirmed by the server.
   * Resolves when the server confirmed, or after a short wait (then the HTTP API is asked
   * too, in case the socket was silently dead); never rejects. */
  function markRead(ids) {
    var changed = [];
    var before = unread;
    items.forEach(function (n) {
      if (!n.read && (ids === null || ids.indexOf(n.id) >= 0)) { n.read = true; changed.push(n); }
    });
    setUnread(ids === null ? 0 : unread - changed.length);
    render();
    var body = ids === null ? { all: true } : { ids: ids };
    var fallback = function () {
      return postRead(body).catch(function () {
        // Neither the socket nor HTTP got through: show things as they still are.
        changed.forEach(function (n) { n.read = false; });
        setUnread(before);
        render();
        toast(null, t("readFailed"), "error");
      });
    };
    if (!send(ids === null ? { type: "read_all" } : { type: "read", ids: ids })) return fallback();
    return new Promise(function (resolve) {
      var waiter = { done: resolve };
      waiter.timer = window.setTimeout(function () {
        readWaiters = readWaiters.filter(function (w) { return w !== waiter; });
        fallback().then(resolve, resolve);
      }, READ_CONFIRM_WAIT);
      readWaiters.push(waiter);
    });
  }

  function onReadFrame(msg) {
    (msg.ids || []).forEach(function (id) {
      var n = items.get(id);
      if (n) n.read = true;
    });
    setUnread(msg.unread);
    render();
    var waiters = readWaiters;
    readWaiters = [];
    waiters.forEach(function (w) { window.clearTimeout(w.timer); w.done(); });
    emit("read", { ids: msg.ids || [], unread: unread });
  }

  function activate(n, event) {
    var href = safeUrl(n.url);
    var newTab = event && (event.ctrlKey || event.metaKey || event.shiftKey || event.button === 1);
    if (href && newTab) {
      if (!n.read) markRead([n.id]);
      return; // the browser opens the link elsewhere; this page stays
    }
    if (event) event.preventDefault();
    var done = n.read ? Promise.resolve() : markRead([n.id]);
    if (href) done.then(function () { window.location.assign(href); });
  }

  // ---- new notifications: toasts, announcements, desktop -------------------------------

  function toast(n, text, level) {
    while (toastBox.children.length >= MAX_TOASTS) toastBox.removeChild(toastBox.firstChild);
    var box = el("div", "nbell-toast nbell-level-" + (n ? levelOf(n) : level || "info"));
    if (n) box.setAttribute("data-toast-id", String(n.id));
    var main = el(n ? "button" : "div", "nbell-toast-main");
    if (n) main.type = "button";
    main.appendChild(el("span", "nbell-level-icon")).setAttribute("aria-hidden", "true");
    var textBox = el("span", "nbell-text");
    textBox.appendChild(el("span", "nbell-title", n ? n.title : text));
    if (n && firstLine(n.body)) textBox.appendChild(el("span", "nbell-body", firstLine(n.body)));
    main.appendChild(textBox);
    box.appendChild(main);
    var close = el("button", "nbell-toast-close");
    close.type = "button";
    close.setAttribute("aria-label", t("dismiss"));
    close.appendChild(el("span", null, "×")).setAttribute("aria-hidden", "true");
    box.appendChild(close);
    box.appendChild(el("span", "nbell-toast-timer")).setAttribute("aria-hidden", "true");

    var remaining = TOAST_MS, startedAt = 0, timer = null;
    function remove() {
      window.clearTimeout(timer);
      if (box.parentNode) box.parentNode.removeChild(box);
    }
    function run() { startedAt = Date.now(); timer = window.setTimeout(remove, remaining); }
    function pause() {
      if (timer === null) return;
      window.clearTimeout(timer); timer = null;
      remaining = Math.max(1000, remaining - (Date.now() - startedAt));
      box.classList.add("is-paused");
    }
    function resume() {
      if (timer !== null || box.matches(":hover") || box.contains(document.activeElement)) return;
      box.classList.remove("is-paused");
      run();
    }
    box.addEventListener("mouseenter", pause);
    box.addEventListener("focusin", pause);
    box.addEventListener("mouseleave", resume);
    box.addEventListener("focusout", function () { window.setTimeout(resume, 0); });
    close.addEventListener("click", remove);
    if (n) main.addEventListener("click", function (event) { remove(); activate(n, event); });
    box.style.setProperty("--nbell-toast-ms", TOAST_MS + "ms");
    toastBox.appendChild(box);
    run();
  }

  function desktopSupported() { return "Notification" in window; }

  function desktopWanted() {
    try { return window.localStorage.getItem(DESKTOP_KEY) === "1"; } catch (e) { return false; }
  }

  function setDesktopWanted(on) {
    try {
      if (on) window.localStorage.setItem(DESKTOP_KEY, "1");
      else window.localStorage.removeItem(DESKTOP_KEY);
    } catch (e) { /* storage disabled: the choice lasts for this page only */ }
    desktopOn = on;
    updateDesktopButton();
  }

  var desktopOn = desktopWanted();

  function updateDesktopButton() {
    if (!desktopSupported()) { desktopButton.hidden = true; return; }
    desktopButton.hidden = false;
    var permission = window.Notification.permission;
    desktopButton.disabled = permission === "denied";
    desktopButton.textContent = permission === "denied" ? t("desktopBlocked")
      : desktopOn && permission === "granted" ? t("desktopDisable") : t("desktopEnable");
    desktopButton.setAttribute("aria-pressed", String(desktopOn && permission === "granted"));
  }

  function requestDesktop() {
    if (desktopOn && window.Notification.permission === "granted") {
      setDesktopWanted(false);
      return;
    }
    var answered = false;
    var answer = function (permission) {
      if (answered) return;
      answered = true;
      setDesktopWanted(permission === "granted");
    };
    var result = window.Notification.requestPermission(answer);
    if (result && typeof result.then === "function") result.then(answer);
  }

  function desktop(n) {
    if (!desktopSupported() || !desktopOn || window.Notification.permission !== "granted") return;
    if (document.visibilityState !== "hidden") return;
    try {
      // One tag per notification: several hidden tabs show it once.
      var shown = new window.Notification(n.title, {
        body: firstLine(n.body), tag: "notifyproject-" + n.id, lang: lang
      });
      shown.onclick = function () { window.focus(); shown.close(); activate(n, null); };
    } catch (e) { /* e.g. mobile browsers that require a service worker */ }
  }

  function arrived(fresh, counted) {
    var unreadFresh = fresh.filter(function (n) { return !n.read; });
    if (!counted) setUnread(unread + unreadFresh.length);
    if (!unreadFresh.length) return;
    unreadFresh.slice(-MAX_TOASTS).forEach(function (n) { toast(n); desktop(n); });
    if (unreadFresh.length > MAX_TOASTS) {
      toast(null, t("moreNotifications", { count: unreadFresh.length - MAX_TOASTS }));
    }
    announce(unreadFresh.length === 1
      ? t("newNotification", { title: unreadFresh[0].title })
      : t("newNotifications", { count: unreadFresh.length }));
    emit("new", { notifications: unreadFresh, unread: unread });
  }

  // ---- frames --------------------------------------------------------------------------

  function onFrame(msg) {
    switch (msg.type) {
      case "hello": {
        var again = greeted;
        // The backoff starts over only once a greeted socket has stayed up for a while: a
        // server that says hello and then drops every socket must not be hammered.
        window.clearTimeout(stableTimer);
        stableTimer = window.setTimeout(function () { attempt = 0; }, STABLE_AFTER);
        greeted = true;
        setState("open");
        setUnread(msg.unread);
        sync(true);
        flushAcks();
        if (again) refreshReadStates();
        break;
      }
      case "notification": {
        var n = msg.notification;
        arrivedVia("push", [n]);
        if (remember(n)) {
          ack([n.id]);
          render();
          arrived([n], false);
        }
        break;
      }
      case "missed": {
        var asked = syncQueue.length ? syncQueue.shift() : { counted: true, since: lastId };
        var counted = asked.counted;
        var first = !loaded;
        var list = msg.notifications || [];
        // The server says where the next sync starts: it stays behind rows too young to be
        // sure nothing can still appear below them (they come again; de-duplicated by id).
        // Only the answer to a sync sent from the cursor moves it: a later page (below) was
        // read past rows that may still be settling.
        var before = lastId;
        if (asked.since === lastId) {
          if ("cursor" in msg) { if (msg.cursor !== null) lastId = msg.cursor; }
          else if (list.length) lastId = list[list.length - 1].id;
          else if (lastId === null) lastId = 0;
        }
        arrivedVia("sync", list);
        var fresh = list.filter(remember);
        ack(fresh.map(function (n) { return n.id; }));
        loaded = true;
        render();
        // The first list of a page is history, not news: no toasts for it.
        if (!first) arrived(fresh, counted);
        // A full answer may not be all of it: ask for the rest, from its last item. (From
        // the cursor would return the same page while its rows are young: a burst of more
        // than MAX_SYNC whose pushes the layer dropped stayed half-shown for half a minute.)
        if (list.length >= MAX_SYNC) {
          if (asked.since !== null) sync(true, list[list.length - 1].id);
          else if (lastId !== before) sync(true);
        }
        break;
      }
      case "read":
        onReadFrame(msg);
        break;
      case "pong":
        window.clearTimeout(pongTimer);
        // Pushes travel at most once. The server names the last notification it delivered
        // to us and our unread count: if we never got that one, a push was lost — sync
        // (its items are already in this count, so they add nothing).
        if (typeof msg.unread === "number") setUnread(msg.unread);
        if (msg.last_id != null && msg.last_id !== lastId && !syncQueue.length) {
          gapSyncs += 1;
          sync(true);
        }
        break;
      case "error":
        if (window.console) console.warn("notifications:", msg.code, msg.detail);
        break;
    }
  }

  // ---- the connection ------------------------------------------------------------------

  function setState(state) {
    root.setAttribute("data-connection-state", state);
    var text = state === "reconnecting" ? t("reconnecting") : "";
    if (status.textContent !== text) status.textContent = text;
    relogin.hidden = state !== "closed";
  }

  function socketUrl() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    return scheme + window.location.host + root.getAttribute("data-ws-path");
  }

  function connect() {
    window.clearTimeout(retryTimer);
    retryTimer = null;
    if (stopped || socket) return;
    setState(greeted || attempt ? "reconnecting" : "connecting");
    var ws;
    try {
      ws = new WebSocket(socketUrl());
    } catch (e) {
      scheduleReconnect(0);
      return;
    }
    socket = ws;
    syncQueue = [];
    ws.onopen = function () {
      if (ws === socket) startPing();
    };
    ws.onmessage = function (event) {
      if (ws !== socket) return;
      var msg;
      try { msg = JSON.parse(event.data); } catch (e) { return; }
      if (msg && typeof msg.type === "string") onFrame(msg);
    };
    ws.onclose = function (event) {
      if (ws === socket) dropped(event.code);
    };
  }

  function dropped(code) {
    var ws = socket;
    socket = null;
    syncQueue = [];
    stopPing();
    window.clearTimeout(stableTimer);
    if (ws) { ws.onmessage = null; ws.onclose = null; }
    if (!loaded) loadOverHttp();
    if (stopped) return;
    if (code === 4401) {
      // The session is gone: retrying cannot help until the user logs in again.
      stopped = true;
      setState("closed");
      return;
    }
    var floor = code === 4429 || code === 4413 ? THROTTLED_MIN : 0;
    scheduleReconnect(floor);
  }

  function scheduleReconnect(floor) {
    setState("reconnecting");
    // Exponential backoff with full jitter, so a restarted server is not stampeded.
    var ceiling = Math.min(BACKOFF_CAP, BACKOFF_BASE * Math.pow(2, attempt));
    attempt = Math.min(attempt + 1, 16);
    var delay = floor ? floor + Math.random() * floor : Math.random() * ceiling;
    retryTimer = window.setTimeout(connect, delay);
  }

  function reconnectNow() {
    if (stopped || socket) return;
    connect();
  }

  function startPing() {
    stopPing();
    pingTimer = window.setInterval(function () {
      if (!send({ type: "ping" })) return;
      window.clearTimeout(pongTimer);
      pongTimer = window.setTimeout(function () {
        // No pong: the connection is dead even if the browser has not noticed.
        var ws = socket;
        dropped(1006);
        if (ws) try { ws.close(); } catch (e) { /* already closing */ }
      }, PONG_WAIT);
    }, PING_EVERY);
  }

  function stopPing() {
    window.clearInterval(pingTimer);
    window.clearTimeout(pongTimer);
  }

  /* Without a socket (yet), fill the list from the JSON API so the dropdown is never blank. */
  var httpLoading = false;
  function loadOverHttp() {
    if (httpLoading || loaded) return;
    httpLoading = true;
    fetch(root.getAttribute("data-api-url") + "?limit=" + MAX_ITEMS, {
      credentials: "same-origin", headers: { Accept: "application/json" }
    }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    }).then(function (data) {
      if (loaded) return;
      (data.results || []).forEach(remember);
      loaded = true;
      setUnread(data.unread);
      render();
    }).catch(function () { /* keep the server-rendered count */ }).then(function () {
      httpLoading = false;
    });
  }

  /* After a reconnect: items read in another tab while this one was offline lose their dot.
   * (sync brings only what is newer than lastId; the hello count is already right.) */
  function refreshReadStates() {
    if (!items.size) return;
    fetch(root.getAttribute("data-api-url") + "?limit=" + MAX_ITEMS, {
      credentials: "same-origin", headers: { Accept: "application/json" }
    }).then(function (response) {
      return response.ok ? response.json() : { results: [] };
    }).then(function (data) {
      var changed = false;
      (data.results || []).forEach(function (fresh) {
        var n = items.get(fresh.id);
        if (n && fresh.read && !n.read) { n.read = true; changed = true; }
      });
      if (changed) render();
    }).catch(function () { /* the next read frame will tell */ });
  }

  // ---- the dropdown --------------------------------------------------------------------

  function isOpen() { return !panel.hidden; }

  function open(focusFirst) {
    if (!isOpen()) {
      panel.hidden = false;
      toggle.setAttribute("aria-expanded", "true");
      root.classList.add("is-open");
      refreshTimes();
    }
    if (focusFirst) focusItem(0);
  }

  function close(returnFocus) {
    if (!isOpen()) return;
    panel.hidden = true;
    toggle.setAttribute("aria-expanded", "false");
    root.classList.remove("is-open");
    if (returnFocus) toggle.focus();
  }

  function links() { return Array.prototype.slice.call(list.querySelectorAll(".nbell-link")); }

  function focusItem(index) {
    var all = links();
    if (!all.length) return;
    all[(index + all.length) % all.length].focus();
  }

  toggle.setAttribute("role", "button");
  toggle.setAttribute("aria-expanded", "false");
  toggle.addEventListener("click", function (event) {
    event.preventDefault();
    if (isOpen()) close(false); else open(false);
  });
  toggle.addEventListener("keydown", function (event) {
    if (event.key === " " || event.key === "Spacebar") {
      event.preventDefault(); // a role=button link must answer Space like a button
      if (isOpen()) close(false); else open(false);
    } else if (event.key === "ArrowDown") {
      event.preventDefault();
      open(true);
    }
  });
  panel.addEventListener("keydown", function (event) {
    var all = links();
    var index = all.indexOf(document.activeElement);
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      focusItem(index < 0 ? 0 : index + (event.key === "ArrowDown" ? 1 : -1));
    } else if (event.key === "Home") {
      event.preventDefault(); focusItem(0);
    } else if (event.key === "End") {
      event.preventDefault(); focusItem(-1);
    }
  });
  document.addEventListener("keydown", function (event) {
    if ((event.key === "Escape" || event.key === "Esc") && isOpen()) {
      close(root.contains(document.activeElement));
    }
  });
  document.addEventListener("click", function (event) {
    // The path, not event.target: a click on an item re-renders the list and detaches it.
    var path = event.composedPath ? event.composedPath() : [event.target];
    if (isOpen() && path.indexOf(root) < 0 && !root.contains(event.target)) close(false);
  });
  root.addEventListener("focusout", function (event) {
    // Tabbing out of the dropdown closes it; clicks elsewhere are handled above.
    if (isOpen() && event.relatedTarget && !root.contains(event.relatedTarget)) close(false);
  });

  markAllButton.addEventListener("click", function () { markRead(null); });
  desktopButton.addEventListener("click", requestDesktop);

  // ---- page lifecycle ------------------------------------------------------------------

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState !== "visible") return;
    refreshTimes();
    if (socket && socket.readyState === WebSocket.OPEN) {
      if (Date.now() - lastVisibleSync > SYNC_GAP) { lastVisibleSync = Date.now(); sync(false); }
    } else if (!socket) {
      attempt = 0;
      reconnectNow();
    }
  });
  window.addEventListener("online", function () { attempt = 0; reconnectNow(); });
  window.addEventListener("pagehide", function () {
    stopped = true;
    window.clearTimeout(retryTimer);
    stopPing();
    var ws = socket;
    socket = null;
    if (ws) try { ws.close(1000); } catch (e) { /* closing */ }
  });
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted || root.getAttribute("data-connection-state") === "closed") return;
    // Back from the back/forward cache: the old socket is gone.
    stopped = false;
    attempt = 0;
    connect();
  });
  window.addEventListener("storage", function (event) {
    if (event.key === DESKTOP_KEY) { desktopOn = desktopWanted(); updateDesktopButton(); }
  });
  window.setInterval(refreshTimes, 60000);

  if ("WebSocket" in window) connect(); else loadOverHttp();
  setUnread(unread);
  updateDesktopButton();
  render();
})();
