/* notifyproject bell: a live unread badge, a dropdown with per-row triage (Done, snooze, read /
 * unread), toasts, opt-in desktop notifications — and one WebSocket per browser.
 *
 * Dependency-free, no build step. Notification text is only ever inserted with textContent;
 * icons are inline SVG built here from constant paths.
 * The protocol is described in DESIGN.md ("WebSocket protocol"); the page hooks
 * (data-notification-bell, -toggle, data-unread-count, data-notification-id, -mark-all,
 * -archive, -snooze, -unread, data-notification-toast) are a contract with site authors and
 * tests.
 *
 * One tab leads: it holds the Web Lock named for the user (the template tag renders an opaque
 * per-user key), keeps the WebSocket and passes every server frame to the other tabs over a
 * BroadcastChannel of the same name; they send their client frames through it. When the
 * leader goes, the next waiting tab gets the lock at once, connects and syncs from the cursor
 * it was told, so nothing is lost (and ids de-duplicate what comes twice). Without
 * BroadcastChannel or navigator.locks every tab keeps its own socket, as before.
 * The leader decides what is news and which tab shows its toast: the visible tab focused last;
 * when no tab is visible, the leader toasts and, if the user opted in, shows the desktop
 * pop-up — once per browser.
 *
 * Preferences (the settings page behind the panel's gear): the leader reads them once from the
 * JSON API (again after a reconnect, since a change made while it was offline sent its frame
 * to nobody) and follows the server's `preferences` frames, which reach the other tabs like
 * every frame; a snapshot carries them to a tab that joins. The leader also decides what is
 * too quiet to toast: a notification whose category has toasts off, or that arrives during
 * quiet hours (critical ones ignore both), gets no toast, no announcement and no desktop
 * pop-up — it is listed and counted all the same. Which categories the bell lists at all is
 * the server's business: it never pushes a muted one.
 *
 * Recalls, edits, expiries: a `recalled` or `expired` frame takes its ids out of the list (and
 * off the screen: toast, desktop pop-up) in every tab at once, an `updated` frame changes an
 * item's text, link and level in place (its read, Done and snooze state stay); a `missed`
 * answer carries the same for a page that was offline. What left this way stays out: a
 * later sync, snapshot or first page brings it back only if the server lists it again after
 * it left (a recalled one never is).
 *
 * Grouping: rows of one non-empty `group_key` that changed together (all its unread ones;
 * the ones read, archived or snoozed as one) are ONE item, as the server lists and counts
 * them: one row, the newest member with "Ana, Bo and 11 others" above its title and
 * data-notification-group-count. A push into an unread group updates its row in place; the
 * row's verbs act on the whole item ("group": true). See "grouping" below.
 *
 * Storm control, in the leader's toast decision: news waits ~300 ms (at most 1 s) so a burst
 * of pushes is decided together. A group is one item here too: it toasts at most once per
 * key in 5 s (its newest), its newer toast replacing the one on screen. More than three
 * items within a second become ONE summary toast ("12 new notifications", updated in place
 * while the storm lasts) and one desktop pop-up; critical ones always get their own toast.
 * One or two at a time toast as ever.
 *
 * Unread count: the server's number (hello, read/triage frames, the HTTP API) is the truth; a
 * live notification adds one, unless it joins an unread group held here (counted once). Items
 * that arrive in answer to the sync sent right after a hello are already in that hello's count
 * and add nothing.
 *
 * On a page without [data-notification-bell] this script only defines window.NotificationBell
 * (renderItem, formatTime, icon, send) for other scripts, e.g. the admin's preview.
 */
(function () {
  "use strict";

  // ---- shared by every page: icons, strings, rows, times -------------------------------

  var SVG_NS = "http://www.w3.org/2000/svg";
  // 24×24 outline paths, drawn with currentColor, so they follow the text colour and never
  // depend on the fonts installed.
  var ICONS = {
    bell: "M6 8a6 6 0 1 1 12 0c0 7 3 9 3 9H3s3-2 3-9M10.3 21a1.94 1.94 0 0 0 3.4 0",
    info: "M12 22a10 10 0 1 0 0-20 10 10 0 0 0 0 20ZM12 16v-5M12 8h.01",
    success: "M12 22a10 10 0 1 0 0-20 10 10 0 0 0 0 20ZM8 12.5l2.5 2.5L16 9.5",
    warning: "M10.3 3.9 1.8 18a2 2 0 0 0 1.7 3h17a2 2 0 0 0 1.7-3L13.7 3.9a2 2 0 0 0-3.4 0ZM12 9v4M12 17h.01",
    error: "M12 22a10 10 0 1 0 0-20 10 10 0 0 0 0 20ZM15 9l-6 6M9 9l6 6",
    archive: "M20 6 9 17l-5-5",
    unarchive: "M3 7v6h6M21 17a9 9 0 0 0-15-6.7L3 13",
    snooze: "M12 22a9 9 0 1 0 0-18 9 9 0 0 0 0 18ZM12 9v4l2 2M5 3 2 6M22 6l-3-3",
    read: "M22 11.1V12a10 10 0 1 1-5.9-9.1M22 4 12 14l-3-3",
    unread: "M4 4h16a2 2 0 0 1 2 2v12a2 2 0 0 1-2 2H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2ZM22 6l-10 7L2 6",
    close: "M18 6 6 18M6 6l12 12",
    calendar: "M8 2v4M16 2v4M3 10h18M5 4h14a2 2 0 0 1 2 2v14a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2Z",
    inbox: "M22 12h-6l-2 3h-4l-2-3H2M5.45 5.11 2 12v6a2 2 0 0 0 2 2h16a2 2 0 0 0 2-2v-6l-3.45-6.89A2 2 0 0 0 16.76 4H7.24a2 2 0 0 0-1.79 1.11Z"
  };

  /* Return a fresh inline <svg> for ``name`` (aria-hidden: the control around it is named). */
  function icon(name, size) {
    var svg = document.createElementNS(SVG_NS, "svg");
    var px = String(size || 18);
    svg.setAttribute("class", "nbell-svg nbell-svg-" + (ICONS[name] ? name : "info"));
    svg.setAttribute("width", px);
    svg.setAttribute("height", px);
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("fill", "none");
    svg.setAttribute("stroke", "currentColor");
    svg.setAttribute("stroke-width", "2");
    svg.setAttribute("stroke-linecap", "round");
    svg.setAttribute("stroke-linejoin", "round");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var path = document.createElementNS(SVG_NS, "path");
    path.setAttribute("d", ICONS[name] || ICONS.info);
    svg.appendChild(path);
    return svg;
  }

  // English fallbacks; the template tag's json_script carries the translated ones.
  var S = {
    notifications: "Notifications", unread: "Unread", justNow: "just now",
    burstNotifications: "%(count)s new notifications",
    // A grouped row's actor line ("Ana, Bo and 11 others") and its size.
    groupNotifications: "%(count)s notifications",
    groupTwo: "%(first)s and %(second)s",
    groupThree: "%(first)s, %(second)s and %(third)s",
    groupOneOther: "%(first)s and one other",
    groupOthers: "%(first)s and %(count)s others",
    groupTwoOneOther: "%(first)s, %(second)s and one other",
    groupTwoOthers: "%(first)s, %(second)s and %(count)s others",
    levels: { info: "Info", success: "Success", warning: "Warning", error: "Error" }
  };
  function loadStrings(id) {
    var node = id && document.getElementById(id);
    if (!node) return;
    try {
      var given = JSON.parse(node.textContent);
      Object.keys(given).forEach(function (key) { S[key] = given[key]; });
    } catch (e) { /* keep the fallbacks */ }
  }

  function t(key, params) {
    var text = typeof S[key] === "string" ? S[key] : key;
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

  /* When it reached the user (dispatch), which is what lists sort and show by. */
  function whenOf(n) { return n.dispatched_at || n.created_at || ""; }

  var lang = document.documentElement.lang || undefined;
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

  /* How many rows a listed item stands for: the server's group_count (absent before the
   * server grouped, and on pushes: one). */
  function groupCountOf(n) {
    var count = Math.floor(Number(n && n.group_count));
    return count > 1 ? count : 1;
  }

  /* The actor line of a grouped item: "Ana", "Ana and Bo", "Ana, Bo and Cy", "Ana, Bo and 11
   * others" from up to three names (newest first) and the number of distinct actors; with no
   * actor at all, "12 notifications". Every shape is its own string, so translations can
   * order the names as their language does. */
  function actorLine(names, actorCount, count) {
    names = (Array.isArray(names) ? names : []).filter(function (name) {
      return typeof name === "string" && name;
    });
    var total = Math.max(names.length, Math.floor(Number(actorCount)) || 0);
    if (!names.length) return t("groupNotifications", { count: count });
    var p = { first: names[0], second: names[1], third: names[2] };
    if (total === 1) return names[0];
    if (names.length === 1) {
      return total === 2 ? t("groupOneOther", p)
        : t("groupOthers", { first: names[0], count: total - 1 });
    }
    if (total === 2) return t("groupTwo", p);
    if (total === 3) return names.length >= 3 ? t("groupThree", p) : t("groupTwoOneOther", p);
    p.count = total - 2;
    return t("groupTwoOthers", p);
  }

  /* The row markup, shared by the bell, the inbox's live rows and the admin's preview. A
   * group head (group_count > 1) gets the actor line above its title, its size in the meta
   * line and data-notification-group-count. */
  function rowFor(n, interactive) {
    var level = levelOf(n);
    var count = groupCountOf(n);
    var li = el("li", "nbell-item nbell-level-" + level + (n.read ? "" : " is-unread") +
      (count > 1 ? " is-group" : ""));
    li.setAttribute("data-notification-id", String(n.id));
    if (count > 1) li.setAttribute("data-notification-group-count", String(count));
    var href = safeUrl(n.url);
    var link = el(href ? "a" : interactive ? "button" : "div", "nbell-link");
    if (href) {
      link.href = href;
      if (!/^\//.test(href)) link.rel = "noopener noreferrer";
    } else if (interactive) {
      link.type = "button";
    }
    var badge = el("span", "nbell-level-icon");
    badge.setAttribute("aria-hidden", "true");
    badge.appendChild(icon(level, 18));
    link.appendChild(badge);
    var text = el("span", "nbell-text");
    var actors = count > 1 ? actorLine(n.group_actors, n.group_actor_count, count) : "";
    if (actors) text.appendChild(el("span", "nbell-actors", actors));
    text.appendChild(el("span", "nbell-title", n.title));
    var line = firstLine(n.body);
    if (line) text.appendChild(el("span", "nbell-body", line));
    var meta = el("span", "nbell-meta");
    meta.appendChild(el("span", "nbell-level-label", (S.levels || {})[level] || level));
    meta.appendChild(el("span", "nbell-sep", "·")).setAttribute("aria-hidden", "true");
    var iso = whenOf(n);
    var time = el("time", "nbell-time", relativeTime(iso));
    time.setAttribute("datetime", iso);
    time.title = absoluteTime(iso);
    meta.appendChild(time);
    var size = t("groupNotifications", { count: count });
    if (count > 1 && actors !== size) {
      // The actor line named people: the size goes here (else the actor line said it).
      meta.appendChild(el("span", "nbell-sep", "·")).setAttribute("aria-hidden", "true");
      meta.appendChild(el("span", "nbell-group-size", size));
    }
    text.appendChild(meta);
    link.appendChild(text);
    if (!n.read) {
      var dot = el("span", "nbell-dot");
      dot.appendChild(el("span", "nbell-sr", t("unread")));
      link.appendChild(dot);
    }
    li.appendChild(link);
    return li;
  }

  // ---- quiet hours (pure: the preferences' shape and a moment in, a yes or no out) -------

  var WEEK_MINUTES = 7 * 1440;
  var WEEKDAY_INDEX = { Mon: 0, Tue: 1, Wed: 2, Thu: 3, Fri: 4, Sat: 5, Sun: 6 };

  function minutesOf(hhmm) {
    var m = /^(\d{1,2}):(\d{2})/.exec(typeof hhmm === "string" ? hhmm : "");
    if (!m || Number(m[1]) > 23 || Number(m[2]) > 59) return NaN;
    return Number(m[1]) * 60 + Number(m[2]);
  }

  /* Return whether ``quiet`` ({enabled, start, end, days, time_zone}, the API's quiet_hours)
   * covers the moment ``when`` (a Date; now by default). A quiet period starts at ``start``
   * on each listed day (Monday = 0), in ``time_zone``'s wall-clock time, and lasts until the
   * next ``end``; start == end is the whole of each listed day (as the server's
   * preferences.in_quiet_hours has it). Throws RangeError for a zone this browser does not
   * know (the caller falls back to the server's ``active``). */
  function quietHoursActive(quiet, when) {
    if (!quiet || !quiet.enabled || !Array.isArray(quiet.days) || !quiet.days.length) return false;
    var start = minutesOf(quiet.start), end = minutesOf(quiet.end);
    if (isNaN(start) || isNaN(end)) return false;
    var parts = {};
    new Intl.DateTimeFormat("en-US", {
      timeZone: quiet.time_zone || undefined, weekday: "short", hour: "2-digit",
      minute: "2-digit", hourCycle: "h23"
    }).formatToParts(when || new Date()).forEach(function (p) { parts[p.type] = p.value; });
    var day = WEEKDAY_INDEX[parts.weekday];
    if (day === undefined) return false;
    // Some engines say 24 for midnight even with h23.
    var now = day * 1440 + (Number(parts.hour) % 24) * 60 + Number(parts.minute);
    var length = ((end - start) % 1440 + 1440) % 1440;
    if (!length) { start = 0; length = 1440; } // the listed days, midnight to midnight
    return quiet.days.some(function (d) {
      if (typeof d !== "number" || d < 0 || d > 6) return false;
      var since = ((now - (d * 1440 + start)) % WEEK_MINUTES + WEEK_MINUTES) % WEEK_MINUTES;
      return since < length;
    });
  }

  var bellImpl = null; // set below on a page with a bell
  var publicApi = {
    /* Send a client frame through this browser's socket (the leader's); false if not sent. */
    send: function (frame) { return bellImpl ? bellImpl.send(frame) : false; },
    renderItem: function (n) { return rowFor(n, false); },
    formatTime: relativeTime,
    icon: function (name) { return icon(name); }
  };
  if (!window.NotificationBell) window.NotificationBell = publicApi;

  var root = document.querySelector("[data-notification-bell]");
  if (!root || root.hasAttribute("data-bell-ready")) return;
  root.setAttribute("data-bell-ready", "");
  loadStrings(root.getAttribute("data-strings-id"));

  // ---- the bell's elements -------------------------------------------------------------

  var $ = function (sel) { return root.querySelector(sel); };
  var toggle = $("[data-notification-toggle]");
  var badge = $("[data-unread-count]");
  var panel = $("[data-notification-panel]");
  var list = $("[data-notification-list]");
  var scroller = $("[data-notification-scroll]") || list;
  var loading = $("[data-notification-loading]");
  var empty = $("[data-notification-empty]");
  var emptyUnread = $("[data-notification-empty-unread]");
  var markAllButton = $("[data-notification-mark-all]");
  var filterButtons = root.querySelectorAll("[data-notification-filter]");
  var status = $("[data-notification-status]");
  var relogin = $("[data-notification-relogin]");
  var desktopButton = $("[data-notification-desktop]");
  var announcer = $("[data-notification-announcer]");
  var toastBox = $("[data-notification-toasts]");

  var MAX_ITEMS = 10;             // the dropdown shows the latest ten; the inbox has the rest
  var MAX_TOASTS = 3;             // more at once is noise; the rest are summed up in one toast
  var TOAST_MS = 6000;            // long enough to read a title and a line
  var BACKOFF_BASE = 500;         // first retry within half a second: most drops are blips
  var BACKOFF_CAP = 30000;        // never wait more than 30 s between attempts
  var THROTTLED_MIN = 15000;      // after 4429/4413 the server asked us to slow down
  // Notice a silently dead connection, or a lost push, within ~40 s (tests set it shorter).
  var PING_EVERY = Number(root.getAttribute("data-ping-every")) || 30000;
  var PONG_WAIT = 10000;
  var PONG_GRACE = 2000;          // how long a push may trail the pong that names it
  var CONFIRM_WAIT = 1500;        // how long a change waits for the socket before asking HTTP
  var ACK_DELAY = 250;            // batch acks: at most four frames a second, whatever arrives
  // Plus up to this much at random: every browser gets a broadcast at once, and acks that all
  // came back 250 ms later met the server still pushing it to the rest (seen marks likewise).
  var ACK_SPREAD = 750;
  var EARLY_PING = 2000;          // after a hello: see the "hello" frame
  var SEEN_DELAY = 2000;          // seen ids are batched too; nothing waits for them
  var SEEN_SPREAD = 2000;
  var MAX_IDS = 500;              // the server's per-frame cap (NOTIFICATIONS["MAX_IDS"])
  var STABLE_AFTER = 5000;        // a socket up this long resets the backoff
  var SYNC_GAP = 2000;            // flicking between tabs must not flood the server with syncs
  var DESKTOP_KEY = "notifyproject.bell.desktop";
  // The preferences' GET is a nicety (without it everything toasts): never wait long for it.
  var PREFS_DEADLINE = 5000;
  var TZ_COOKIE = "tz";
  // Storm control (the leader's toast decision).
  var NEWS_DEBOUNCE = 300;        // news waits this long for more, so a burst is seen whole …
  var NEWS_MAX_WAIT = 1000;       // … but never longer than this after the first of it
  var BURST_COUNT = 3;            // more than this many within BURST_WINDOW: one summary toast
  var BURST_WINDOW = 1000;
  var GROUP_WINDOW = 5000;        // one toast per group_key in this long
  var apiUrl = root.getAttribute("data-api-url") || "";
  var prefsUrl = root.getAttribute("data-preferences-url") || "";

  var items = new Map();          // id -> serialized notification, shown in the bell
  var gone = new Map();           // id -> archived or snoozed here (restored by unarchive/unread)
  // The sync cursor: the last id of the last `missed` answer (the server's dispatch order).
  // Only sync answers move it — a push that arrives after a lost one must not carry the
  // cursor past the hole. Followers keep the leader's, to carry on from it if they lead.
  var lastId = null;
  var MAX_SYNC = Number(root.getAttribute("data-max-sync")) || 200;
  var unread = Number(badge.getAttribute("data-unread-count")) || 0;
  var unreadShown = false;
  var RENDER_EVERY = 50;          // ms: a burst of frames renders the list at most this often
  var renderTimer = null;
  var lastRenderAt = 0;        // setUnread has put the count on the badge, title and labels
  var loaded = false;             // the first list has arrived
  var filter = "all";             // the panel's All / Unread switch
  var socket = null;
  var attempt = 0;
  var retryTimer = null;
  var pingTimer = null;
  var pongTimer = null;
  var stableTimer = null;
  var stopped = false;
  var greeted = false;            // a hello has arrived on some connection of this page
  // The first hello's last id: what the page's first list holds after it was dispatched
  // after the page connected, and is news (undefined: no hello yet).
  var helloLast;
  var historyIds = new Set();     // ids the first list brought as history (not toasted)
  var syncQueue = [];             // per sync in flight: {counted: a hello or pong already
                                  // counted its items, since: the cursor it was sent with}
  var waiters = [];               // changes waiting for the server's frame: {type, ids, done}
  var lastVisibleSync = 0;
  var toasted = new Set();        // ids this tab has shown a toast for
  // The user's preferences (the API's shape), or null: none known yet, everything toasts.
  var prefs = null;
  var prefsLoading = null;        // the AbortController of the GET on its way
  var silenced = new Set();       // ids the leader kept quiet (category's toasts off, quiet hours)
  // Ids recalled or expired -> when they left (Date.now()). They stay out unless the server
  // lists them again in an answer asked for after that (a recalled one never is).
  var removed = new Map();
  var editSeen = new Map();       // id -> when an edit of it last came by frame
  var pendingNews = [];           // the leader's news waiting for the toast decision
  var newsTimer = null;
  var newsFirstAt = 0;
  var toastableAt = [];           // arrival times of recent news that may toast (burst rate)
  var groupToastAt = new Map();   // group_key -> when the leader last let one of it toast
  var lastSummaryAt = 0;          // when the leader last chose a summary toast
  var grouped = new Set();        // ids left without a toast: their group had one just now
  var summarized = new Set();     // ids counted in a summary toast instead of their own
  var arrivedAt = new Map();      // news id -> when it reached the leader
  var desktopShown = new Map();   // id -> the desktop pop-up on screen for it
  var summaryToast = null;        // the summary toast on screen: {box, ids, update}
  var snoozeOpenFor = null;       // the row whose snooze choices are open
  var snoozePicking = false;
  var originalTitle = document.title.replace(/^\(\d+\+?\) /, "");

  // ---- one socket per browser: leader and followers ------------------------------------

  var tabId = Math.random().toString(36).slice(2) + Date.now().toString(36);
  var userKey = root.getAttribute("data-bell-key") || "";
  var shared = !!(userKey && "BroadcastChannel" in window && navigator.locks &&
                  typeof navigator.locks.request === "function");
  var role = shared ? "follower" : "solo"; // "leader" once this tab holds the lock
  var channel = null;
  var leaderLock = "notifyproject-bell-leader:" + userKey;
  var tabLockPrefix = "notifyproject-bell-tab:" + userKey + ":";
  var releaseLeader = null;
  var leaderState = "connecting";  // a follower's view of the leader's connection
  var socketsOpened = 0;
  var peers = new Map();          // tab id -> {tab, visible, focused, at}
  var focusedAt = document.visibilityState === "visible" ? Date.now() : 0;

  function owner() { return role !== "follower"; }

  // Test hook, off unless the page set window.__nbellTestHooks = true before this script ran
  // (the fault and browser tests do, with an init script): a frozen, read-only view of what
  // this bell holds — every id (the dropdown shows ten), which came by push and which by
  // sync, the sync cursor, its role. It changes nothing and shows nothing the user's own API
  // does not.
  var seen = null;                // only with the hook on: {push: Set, sync: Set, twice: N}
  var gapSyncs = 0;               // syncs sent because a pong named an id past the cursor
  var reconciles = 0;             // first pages fetched because a pong's count drifted
  var heldPongs = 0;              // pongs judged PONG_GRACE later (they named an id not held)
  var pongGraceTimer = null;
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
          reconciles: reconciles,
          heldPongs: heldPongs,
          connected: owner() ? !!(socket && socket.readyState === WebSocket.OPEN)
            : leaderState === "open",
          role: role,
          tab: tabId,
          socketsOpened: socketsOpened,
          toasted: Array.from(toasted),
          silenced: Array.from(silenced),
          removed: Array.from(removed.keys()),
          grouped: Array.from(grouped),
          summarized: Array.from(summarized),
          preferences: prefs ? JSON.parse(JSON.stringify(prefs)) : null,
          loaded: loaded,
          // The items as the dropdown would show them (all of them, not only ten).
          groups: Array.from(groupItems().values()).map(function (g) {
            return { head: g.head.id, count: g.count, read: !!g.head.read,
                     members: g.members.map(function (m) { return m.id; }),
                     actors: g.names.slice(), actorCount: g.actorCount };
          })
        };
      },
      // The pure rule the leader applies, for tests to try on this browser's Intl.
      quietHoursActive: quietHoursActive
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

  function post(message) {
    if (!channel) return;
    message.from = tabId;
    try { channel.postMessage(message); } catch (e) { /* closed */ }
  }

  // ---- time zone -----------------------------------------------------------------------

  /* Tell the server the browser's zone (TimezoneMiddleware reads the cookie per request). */
  function rememberZone() {
    var zone;
    try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { return; }
    if (!zone) return;
    var match = document.cookie.match(/(?:^|;\s*)tz=([^;]*)/);
    var current = null;
    if (match) {
      try { current = decodeURIComponent(match[1]); } catch (e) { current = null; }
    }
    if (current === zone) return;
    document.cookie = TZ_COOKIE + "=" + encodeURIComponent(zone) + "; path=/; max-age=31536000" +
      "; SameSite=Lax" + (window.location.protocol === "https:" ? "; Secure" : "");
  }

  // ---- preferences: what may toast -----------------------------------------------------

  function setPreferences(value) {
    if (!value || typeof value !== "object" || typeof value.categories !== "object") return;
    prefs = value;
  }

  /* The owner reads the preferences from the API (a follower has the leader's). Bounded: a
   * server that does not answer leaves the last ones known (none: everything toasts). */
  function loadPreferences() {
    if (!prefsUrl || !window.fetch || !owner()) return;
    if (prefsLoading) prefsLoading.abort(); // a newer question; its answer is the fresher
    var controller = window.AbortController ? new AbortController() : null;
    prefsLoading = controller;
    var timer = controller
      ? window.setTimeout(function () { controller.abort(); }, PREFS_DEADLINE) : null;
    fetch(prefsUrl, {
      credentials: "same-origin", headers: { Accept: "application/json" },
      signal: controller ? controller.signal : undefined
    }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    }).then(function (data) {
      if (prefsLoading !== controller) return;
      setPreferences(data);
      post({ k: "prefs", preferences: prefs });
    }).catch(function () { /* keep what is known */ }).then(function () {
      window.clearTimeout(timer);
      if (prefsLoading === controller) prefsLoading = null;
    });
  }

  function quietNow(quiet) {
    try { return quietHoursActive(quiet, new Date()); }
    catch (e) { return !!(quiet && quiet.active); } // a zone unknown here: the server's word
  }

  /* Whether ``n`` must not interrupt: no toast, announcement or desktop pop-up. */
  function keptQuiet(n) {
    if (!n || n.critical === true || !prefs) return false;
    var category = prefs.categories[n.category];
    if (category && category.toasts === false) return true;
    return quietNow(prefs.quiet_hours);
  }

  // ---- unread count --------------------------------------------------------------------

  function setUnread(n) {
    var value = Math.max(0, Math.floor(Number(n)) || 0);
    // A burst sets the same count again and again (a group's pushes count once): the title
    // and labels are touched only when it changes.
    if (unreadShown && value === unread) return;
    unreadShown = true;
    unread = value;
    badge.setAttribute("data-unread-count", String(unread));
    badge.textContent = unread > 99 ? "99+" : String(unread);
    badge.hidden = unread === 0;
    toggle.setAttribute("aria-label", unread
      ? t("notificationsUnread", { count: unread > 99 ? "99+" : unread }) : t("notifications"));
    markAllButton.disabled = unread === 0;
    document.title = (unread ? "(" + (unread > 99 ? "99+" : unread) + ") " : "") + originalTitle;
  }

  // ---- the list ------------------------------------------------------------------------

  function hiddenNow(n) {
    if (n.archived) return true;
    var until = n.snoozed_until ? Date.parse(n.snoozed_until) : NaN;
    return !isNaN(until) && until > Date.now();
  }

  /* Store a notification; return true if this page had not shown it before (or it came back
   * from a snooze or the archive). */
  function remember(n) {
    if (!n || typeof n.id !== "number" || removed.has(n.id)) return false;
    if (hiddenNow(n)) {
      items.delete(n.id);
      gone.set(n.id, n);
      return false;
    }
    var known = items.get(n.id);
    if (known) {
      if (n.read && !known.read) known.read = true;
      copyGroupFields(known, n); // a later list's size of its item
      return false;
    }
    gone.delete(n.id);
    items.set(n.id, n);
    return true;
  }

  /* Whether this page has ``id``: listed, or gone from the list (Done, snoozed, recalled,
   * expired) after it had it. */
  function holds(id) {
    return items.has(id) || gone.has(id) || removed.has(id);
  }

  /* The server listed ``id`` in an answer asked for at ``askedAt``: if it left before that
   * question (expired, then given a later expiry), it is back. Return whether it may be
   * stored; an answer asked for before it left is older than its leaving. */
  function listedAgain(id, askedAt) {
    if (!removed.has(id)) return true;
    if (removed.get(id) >= askedAt) return false;
    removed.delete(id);
    return true;
  }

  /* Recalled or expired: ``ids`` leave the list, the toasts and pop-ups on screen and the
   * news still waiting for its toast. ``counted``: the frame brings the server's count (set
   * by the caller); otherwise each unread one this page held takes one off the badge. */
  function removeIds(ids, counted) {
    var now = Date.now();
    var before = unreadItems();
    var heads = 0;                // removed ones that stood for rows this page never held
    ids.forEach(function (id) {
      if (typeof id !== "number") return;
      removed.set(id, now);
      var n = items.get(id);
      if (n && groupCountOf(n) > 1) heads += 1;
      items.delete(id);
      gone.delete(id);
      historyIds.delete(id);
      arrivedAt.delete(id);
      if (seen) seen.push.delete(id);
      dropToast(id);
      closeDesktop(id);
    });
    pendingNews = pendingNews.filter(function (id) { return !removed.has(id); });
    var drop = before - unreadItems();
    if (!counted && drop) setUnread(unread - drop);
    // The rest of its item is still the user's: the first page names their new head.
    if (heads && owner() && loaded) fetchLatest(true);
  }

  var EDITABLE = ["title", "body", "level", "url"];

  /* An edit (an `updated` frame, or a sync's or the API's current content): the item's text,
   * link and level change in place, in the list and on its toast; its read, Done and snooze
   * state stay. An older edit than the one this page shows changes nothing, nor does a page
   * of the API asked for before the last edit frame came (``askedAt``). Returns whether
   * anything changed. */
  function applyEdit(content, askedAt) {
    if (!content || typeof content.id !== "number") return false;
    var n = items.get(content.id) || gone.get(content.id);
    if (!n) return false;
    if (content.edited_at && n.edited_at && content.edited_at < n.edited_at) return false;
    if (askedAt !== undefined && (editSeen.get(content.id) || 0) >= askedAt) return false;
    if (askedAt === undefined) editSeen.set(content.id, Date.now());
    var changed = false;
    EDITABLE.forEach(function (key) {
      if (key in content && content[key] !== n[key]) { n[key] = content[key]; changed = true; }
    });
    if (content.edited_at) n.edited_at = content.edited_at;
    if (changed) updateToast(n);
    return changed;
  }

  /* Newest arrival first, then the higher id. The server's times are all ISO 8601 in UTC,
   * so comparing them as text keeps their microseconds (Date.parse would cut them to ms and
   * order two arrivals of one millisecond unlike the server's lists). */
  function order(a, b) {
    var x = whenOf(a), y = whenOf(b);
    return x < y ? 1 : x > y ? -1 : b.id - a.id;
  }

  // ---- grouping: one row per (group_key, bucket) -----------------------------------------
  //
  // The server lists a group once (its newest row, with group_count / group_actors /
  // group_actor_count) and counts it once in the badge; pushes stay single notifications.
  // So the bell groups what it holds the same way: rows of one non-empty group_key that
  // changed together are one item. Unread rows share the bucket "u"; rows read together
  // share a token (nbellBucket, carried on the notification so snapshots take it to the
  // followers): "l…" when this tab read them, "f…" when a server frame said so (the leader
  // stamps its token on the frame it relays, so every tab ends with the same one); a read row
  // with no token (the server listed it read) is an item of its own.

  var bucketSeq = 0;
  function newBucket(prefix) { return prefix + tabId + "." + (++bucketSeq); }

  function bucketOf(n) {
    return n.read ? n.nbellBucket || "i" + n.id : "u";
  }

  /* The key of the item ``n`` belongs to: its group and bucket, or its own id. */
  function itemKeyOf(n) {
    var key = groupKeyOf(n);
    return key ? "g:" + key + "\u0000" + bucketOf(n) : "n:" + n.id;
  }

  /* Every item held in ``from`` (items by default): key -> {key, head, members (newest
   * first), count, names, actorCount}. */
  function groupItems(from) {
    var byKey = new Map();
    (from || items).forEach(function (n) {
      var key = itemKeyOf(n);
      var group = byKey.get(key);
      if (!group) byKey.set(key, group = { key: key, members: [] });
      group.members.push(n);
    });
    byKey.forEach(function (group) {
      group.members.sort(order);
      group.head = group.members[0];
      sizeUp(group);
    });
    return byKey;
  }

  /* The size and actors of an item. The newest member the server listed (``covering``)
   * counted the rows of the item up to it, held or not; members newer than it (pushes since)
   * add one each and their actors merge in; without one, the held members are all there
   * is. Never fewer than the members held. */
  function sizeUp(group) {
    var covering = null;
    var newer = [];
    group.members.forEach(function (n) {
      if (covering) return;
      if ("group_count" in n) covering = n; else newer.push(n);
    });
    var names = [];
    var addName = function (name) {
      if (typeof name === "string" && name && names.indexOf(name) < 0) names.push(name);
    };
    (covering ? newer : group.members).forEach(function (n) { addName(n.actor && n.actor.name); });
    var count = group.members.length;
    var actorCount = names.length;
    if (covering) {
      var listed = Array.isArray(covering.group_actors) ? covering.group_actors : [];
      // Counted already: the list's three names, and the actor of any member held from
      // before it (the list counted those rows). Any other pushed actor is taken as new.
      var known = listed.slice();
      group.members.forEach(function (n) {
        if (order(n, covering) >= 0 && n.actor && n.actor.name) known.push(n.actor.name);
      });
      var added = names.filter(function (name) { return known.indexOf(name) < 0; }).length;
      listed.forEach(addName);
      count = Math.max(count, groupCountOf(covering) + newer.length);
      actorCount = Math.max(names.length,
        (Math.floor(Number(covering.group_actor_count)) || 0) + added);
    }
    group.count = count;
    group.names = names.slice(0, 3);
    group.actorCount = actorCount;
  }

  /* Whether the item ``n`` joined may count an actor twice: the server named fewer actors
   * than it counted, so a pushed actor it did not name may be one of them. */
  function actorsUncertain(n) {
    if (!(n.actor && n.actor.name)) return false;
    var group = groupOf(n);
    var covering = null;
    group.members.forEach(function (m) { if (!covering && "group_count" in m) covering = m; });
    if (!covering) return false;
    var named = Array.isArray(covering.group_actors) ? covering.group_actors.length : 0;
    return (Math.floor(Number(covering.group_actor_count)) || 0) > named;
  }

  /* Ask the API's first page again, once, GROUP_REFRESH after the first push that needed it:
   * it lists the group's new head with the server's count of its actors. A storm of one key
   * costs one request per GROUP_REFRESH, not one per push. */
  var GROUP_REFRESH = 1000;
  var groupRefreshTimer = null;
  function refreshGroupsSoon() {
    if (groupRefreshTimer !== null) return;
    groupRefreshTimer = window.setTimeout(function () {
      groupRefreshTimer = null;
      fetchLatest(false);
    }, GROUP_REFRESH);
  }

  /* The item ``n`` is in now (among what this page holds). */
  function groupOf(n) {
    var key = itemKeyOf(n);
    var members = [];
    items.forEach(function (m) { if (itemKeyOf(m) === key) members.push(m); });
    if (!members.length) members.push(n);
    var group = { key: key, members: members.sort(order) };
    group.head = group.members[0];
    sizeUp(group);
    return group;
  }

  /* Unread items held, as the server counts them: each group once. Local changes move the
   * badge by the difference this makes (the server's frame then sets it exactly). */
  function unreadItems() {
    var keys = new Set();
    items.forEach(function (n) { if (!n.read) keys.add(itemKeyOf(n)); });
    return keys.size;
  }

  /* Whether a push of ``n`` joins an unread item this page holds (counted already). */
  function joinsUnread(n) {
    var key = groupKeyOf(n);
    if (!key || n.read) return false;
    var joins = false;
    items.forEach(function (m) {
      if (!joins && m.id !== n.id && !m.read && groupKeyOf(m) === key) joins = true;
    });
    return joins;
  }

  /* The ids of ``ids`` and every member held in their items: a verb "as one" applies to all
   * of them here at once (the server expands the same way and its frame lists them all). */
  function withMembers(ids) {
    var all = [];
    ids.forEach(function (id) {
      var n = items.get(id) || gone.get(id);
      if (!n) { all.push(id); return; }
      var key = itemKeyOf(n);
      var from = items.has(id) ? items : gone;
      from.forEach(function (m) { if (itemKeyOf(m) === key && all.indexOf(m.id) < 0) all.push(m.id); });
      if (all.indexOf(id) < 0) all.push(id);
    });
    return all;
  }

  var GROUP_FIELDS = ["group_count", "group_actors", "group_actor_count"];

  /* A list entry's group_* (the server's size of the item, as of that list) onto the held
   * copy. Pushes carry none and change nothing. */
  function copyGroupFields(known, fresh) {
    if (!("group_count" in fresh)) return false;
    var changed = false;
    GROUP_FIELDS.forEach(function (key) {
      if (JSON.stringify(known[key]) !== JSON.stringify(fresh[key])) changed = true;
      if (key in fresh) known[key] = fresh[key]; else delete known[key];
    });
    return changed;
  }

  /* What a row shows: the head, with the item's size and actors. */
  function rowView(group) {
    var view = {};
    Object.keys(group.head).forEach(function (key) { view[key] = group.head[key]; });
    view.group_count = group.count;
    view.group_actors = group.names;
    view.group_actor_count = group.actorCount;
    return view;
  }

  /* The items the dropdown shows: the ten newest (by their heads). */
  function latest() {
    return Array.from(groupItems().values())
      .filter(function (g) { return filter === "all" || !g.head.read; })
      .sort(function (a, b) { return order(a.head, b.head); })
      .slice(0, MAX_ITEMS);
  }

  function actionButton(name, attr, label, iconName) {
    var button = el("button", "nbell-action nbell-action-" + name);
    button.type = "button";
    button.setAttribute(attr, "");
    button.setAttribute("data-action", name);
    button.setAttribute("aria-label", label);
    button.title = label;
    button.appendChild(icon(iconName, 16));
    return button;
  }

  /* One row of the dropdown for ``group`` (an item: one notification, or a group shown by
   * its newest member). Every verb of a group's row acts on the whole item ("as one"). */
  function buildItem(group) {
    var n = group.head;
    var asOne = group.count > 1;
    var li = rowFor(asOne ? rowView(group) : n, true);
    var link = li.querySelector(".nbell-link");
    link.setAttribute("data-action", "open");
    var href = safeUrl(n.url);
    link.addEventListener("click", function (event) { activate(n, event); });
    link.addEventListener("auxclick", function (event) {
      if (event.button === 1 && href && !n.read) markRead([n.id], asOne); // middle click: new tab
    });
    var actions = el("div", "nbell-actions");
    actions.setAttribute("role", "group");
    actions.setAttribute("aria-label", t("actionsFor", { title: n.title }));
    var done = actionButton("archive", "data-notification-archive", t("archive"), "archive");
    done.addEventListener("click", function () { triage("archive", [n.id], undefined, asOne); });
    var snooze = actionButton("snooze", "data-notification-snooze", t("snooze"), "snooze");
    var menuId = "nbell-snooze-" + n.id;
    // Open for the item, not its head: a push into the group keeps the choices open.
    snooze.setAttribute("aria-expanded", String(snoozeOpenFor === group.key));
    snooze.setAttribute("aria-controls", menuId);
    snooze.addEventListener("click", function () {
      snoozePicking = false;
      snoozeOpenFor = snoozeOpenFor === group.key ? null : group.key;
      render();
      var first = list.querySelector("#" + menuId + " button");
      if (first) first.focus();
    });
    var readToggle = n.read
      ? actionButton("unread", "data-notification-unread", t("markUnread"), "unread")
      : actionButton("read", "data-notification-read", t("markRead"), "read");
    readToggle.addEventListener("click", function () {
      if (n.read) triage("unread", [n.id], undefined, asOne); else markRead([n.id], asOne);
    });
    actions.appendChild(done);
    actions.appendChild(snooze);
    actions.appendChild(readToggle);
    li.appendChild(actions);
    if (snoozeOpenFor === group.key) {
      li.setAttribute("data-snooze-open", "");
      li.appendChild(snoozeMenu(n, menuId, asOne));
    }
    return li;
  }

  // ---- snooze choices ------------------------------------------------------------------

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  /* ISO 8601 in the browser's zone, with its offset (what the server parses). */
  function isoLocal(date) {
    var offset = -date.getTimezoneOffset();
    var sign = offset >= 0 ? "+" : "-";
    var abs = Math.abs(offset);
    return date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) +
      "T" + pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds()) +
      sign + pad(Math.floor(abs / 60)) + ":" + pad(abs % 60);
  }

  function inputValue(date) {
    return isoLocal(date).slice(0, 19);
  }

  function snoozeChoices(now) {
    var later = new Date(now.getTime() + 3 * 3600 * 1000);
    var tomorrow = new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1, 9, 0, 0);
    var toMonday = (8 - now.getDay()) % 7 || 7; // getDay: Sunday = 0
    var week = new Date(now.getFullYear(), now.getMonth(), now.getDate() + toMonday, 9, 0, 0);
    return [["later", t("snoozeLater"), later], ["tomorrow", t("snoozeTomorrow"), tomorrow],
            ["week", t("snoozeWeek"), week]];
  }

  function whenLabel(date, now) {
    var sameDay = date.toDateString() === now.toDateString();
    var options = sameDay ? { hour: "numeric", minute: "2-digit" }
      : { weekday: "short", hour: "numeric", minute: "2-digit" };
    try { return date.toLocaleString(lang, options); } catch (e) { return date.toString(); }
  }

  function snoozeMenu(n, menuId, asOne) {
    var box = el("div", "nbell-snooze");
    box.id = menuId;
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", t("snoozeUntil"));
    var now = new Date();
    snoozeChoices(now).forEach(function (choice) {
      var button = el("button", "nbell-snooze-choice");
      button.type = "button";
      button.setAttribute("data-snooze-choice", choice[0]);
      button.setAttribute("data-action", "snooze-" + choice[0]);
      button.appendChild(el("span", "nbell-snooze-label", choice[1]));
      button.appendChild(el("span", "nbell-snooze-when", whenLabel(choice[2], now)));
      button.addEventListener("click", function () { snooze(n.id, choice[2], asOne); });
      box.appendChild(button);
    });
    var pick = el("button", "nbell-snooze-choice");
    pick.type = "button";
    pick.setAttribute("data-snooze-choice", "pick");
    pick.setAttribute("data-action", "snooze-pick");
    pick.setAttribute("aria-expanded", String(snoozePicking));
    pick.appendChild(icon("calendar", 16));
    pick.appendChild(el("span", "nbell-snooze-label", t("snoozePick")));
    pick.addEventListener("click", function () {
      snoozePicking = !snoozePicking;
      render();
      var input = list.querySelector("#" + menuId + " input");
      if (input) input.focus();
    });
    box.appendChild(pick);
    if (snoozePicking) {
      var form = el("form", "nbell-snooze-pick");
      var label = el("label", "nbell-snooze-pick-label");
      var inputId = menuId + "-at";
      label.setAttribute("for", inputId);
      label.textContent = t("snoozeUntil");
      var input = el("input", "nbell-snooze-input");
      input.type = "datetime-local";
      input.id = inputId;
      input.step = "1";
      input.required = true;
      input.min = inputValue(now).slice(0, 16);
      input.value = inputValue(new Date(now.getTime() + 3600 * 1000)).slice(0, 16);
      input.setAttribute("data-action", "snooze-input");
      input.setAttribute("data-snooze-input", "");
      var submit = el("button", "nbell-snooze-submit", t("snoozeSubmit"));
      submit.type = "submit";
      submit.setAttribute("data-action", "snooze-submit");
      submit.setAttribute("data-snooze-submit", "");
      var error = el("p", "nbell-snooze-error");
      error.setAttribute("role", "alert");
      form.appendChild(label);
      form.appendChild(input);
      form.appendChild(submit);
      form.appendChild(error);
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        // datetime-local has no zone: it is the browser's, which new Date() assumes too.
        var when = input.value ? new Date(input.value) : null;
        if (!when || isNaN(when.getTime()) || when.getTime() <= Date.now()) {
          error.textContent = t("snoozeFuture");
          input.focus();
          return;
        }
        snooze(n.id, when, asOne);
      });
      box.appendChild(form);
    }
    return box;
  }

  function closeSnooze(returnFocus) {
    var key = snoozeOpenFor;
    if (key === null) return false;
    snoozeOpenFor = null;
    snoozePicking = false;
    render();
    var group = returnFocus ? groupItems().get(key) : null;
    if (group) {
      var button = list.querySelector('[data-notification-id="' + group.head.id + '"] [data-notification-snooze]');
      if (button) button.focus();
    }
    return true;
  }

  function snooze(id, date, asOne) {
    snoozeOpenFor = null;
    snoozePicking = false;
    triage("snooze", [id], isoLocal(date), asOne);
  }

  // ---- rendering -----------------------------------------------------------------------

  /* Render now, or, within RENDER_EVERY of the last render, once that has passed: a lone
   * push shows at once, a burst of them (100 a second, one group_key) re-renders the list
   * 20 times a second instead of once per frame. Rebuilding the list per frame cost the
   * browser ~12 ms of its main thread per push (measured with Chromium's profiler: a
   * 150-push burst took 1.8 s of tasks), on the same cores as everything else. */
  function renderSoon() {
    if (renderTimer !== null) return;
    var wait = RENDER_EVERY - (Date.now() - lastRenderAt);
    if (wait <= 0) { render(); return; }
    renderTimer = window.setTimeout(render, wait);
  }

  function render() {
    window.clearTimeout(renderTimer);
    renderTimer = null;
    lastRenderAt = Date.now();
    var focus = null;
    if (list.contains(document.activeElement)) {
      var holder = document.activeElement.closest("[data-notification-id]");
      if (holder) {
        var held = items.get(Number(holder.getAttribute("data-notification-id")));
        // By item: a push into a group gives its row a new head, the focus stays on it.
        focus = { id: holder.getAttribute("data-notification-id"), key: held && itemKeyOf(held),
                  action: document.activeElement.getAttribute("data-action") || "open" };
      }
    }
    var scrollTop = scroller.scrollTop;
    var picked = list.querySelector("[data-snooze-input]");
    var pickedValue = picked ? picked.value : null;
    var shown = latest();
    if (snoozeOpenFor !== null &&
        !shown.some(function (g) { return g.key === snoozeOpenFor; })) snoozeOpenFor = null;
    var fragment = document.createDocumentFragment();
    shown.forEach(function (g) { fragment.appendChild(buildItem(g)); });
    list.textContent = "";
    list.appendChild(fragment);
    var picker = list.querySelector("[data-snooze-input]");
    if (picker && pickedValue !== null) picker.value = pickedValue;
    scroller.scrollTop = scrollTop;
    loading.hidden = loaded;
    var anything = items.size > 0;
    empty.hidden = !loaded || shown.length > 0 || (filter === "unread" && anything && !!emptyUnread);
    if (emptyUnread) emptyUnread.hidden = !loaded || shown.length > 0 || filter !== "unread" || !anything;
    list.hidden = shown.length === 0;
    if (focus !== null) {
      shown.forEach(function (g) { if (focus.key && g.key === focus.key) focus.id = g.head.id; });
      var row = list.querySelector('[data-notification-id="' + focus.id + '"]');
      var target = row && (row.querySelector('[data-action="' + focus.action + '"]') ||
                           row.querySelector(".nbell-link"));
      if (target) target.focus();
    }
    updateScrollHints();
    if (isOpen()) {
      // A group's row shows all of it: its members held here are seen too.
      var ids = [];
      shown.forEach(function (g) { g.members.forEach(function (m) { ids.push(m.id); }); });
      markSeen(ids);
    }
  }

  function updateScrollHints() {
    var box = scroller.parentNode && scroller.parentNode.classList &&
      scroller.parentNode.classList.contains("nbell-scroll") ? scroller.parentNode : null;
    if (!box) return;
    var above = scroller.scrollTop > 1;
    var below = scroller.scrollTop + scroller.clientHeight < scroller.scrollHeight - 1;
    box.classList.toggle("has-above", above);
    box.classList.toggle("has-below", below);
  }

  function refreshTimes() {
    Array.prototype.forEach.call(root.querySelectorAll("time[datetime]"), function (node) {
      node.textContent = relativeTime(node.getAttribute("datetime"));
    });
  }

  function setFilter(value) {
    filter = value === "unread" ? "unread" : "all";
    Array.prototype.forEach.call(filterButtons, function (button) {
      button.setAttribute("aria-pressed",
        String(button.getAttribute("data-notification-filter") === filter));
    });
    snoozeOpenFor = null;
    render();
  }

  // ---- talking to the server -----------------------------------------------------------

  function send(frame) {
    if (!owner()) {
      if (leaderState !== "open") return false;
      post({ k: "send", frame: frame });
      return true;
    }
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
    if (ackQueue.length && ackTimer === null) {
      ackTimer = window.setTimeout(flushAcks, ACK_DELAY + Math.random() * ACK_SPREAD);
    }
  }

  function flushAcks() {
    window.clearTimeout(ackTimer);
    ackTimer = null;
    while (ackQueue.length) {
      if (!send({ type: "ack", ids: ackQueue.slice(0, MAX_IDS) })) return;
      ackQueue.splice(0, MAX_IDS);
    }
  }

  /* Ids shown in an open dropdown or a toast, batched, each told once. */
  var seenSent = new Set();
  var seenQueue = [];
  var seenTimer = null;
  function markSeen(ids) {
    ids.forEach(function (id) {
      if (seenSent.has(id)) return;
      seenSent.add(id);
      seenQueue.push(id);
    });
    if (seenQueue.length && seenTimer === null) {
      seenTimer = window.setTimeout(flushSeen, SEEN_DELAY + Math.random() * SEEN_SPREAD);
    }
  }

  function flushSeen() {
    window.clearTimeout(seenTimer);
    seenTimer = null;
    while (seenQueue.length) {
      if (!send({ type: "seen", ids: seenQueue.slice(0, MAX_IDS) })) {
        seenTimer = window.setTimeout(flushSeen, SEEN_DELAY * 5);
        return;
      }
      seenQueue.splice(0, MAX_IDS);
    }
  }

  function csrfToken() {
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (match) return decodeURIComponent(match[1]);
    var field = document.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  function postJson(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      keepalive: true, // survives the navigation that often follows a click
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(body)
    }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    }).then(function (data) {
      if (data && typeof data.unread === "number") setUnread(data.unread);
      return data;
    });
  }

  /* Wait for the server's frame of ``type`` naming any of ``ids`` (null: any frame of the
   * type); resolve true on it, false after CONFIRM_WAIT. */
  function confirmed(type, ids) {
    return new Promise(function (resolve) {
      var waiter = { type: type, ids: ids, done: function () { resolve(true); } };
      waiter.timer = window.setTimeout(function () {
        waiters = waiters.filter(function (w) { return w !== waiter; });
        resolve(false);
      }, CONFIRM_WAIT);
      waiters.push(waiter);
    });
  }

  function settle(type, ids) {
    var keep = [];
    waiters.forEach(function (w) {
      var hit = w.type === type && (w.ids === null || !ids ||
        w.ids.some(function (id) { return ids.indexOf(id) >= 0; }));
      if (hit) { window.clearTimeout(w.timer); w.done(); } else keep.push(w);
    });
    waiters = keep;
  }

  /* Send ``frame`` over the socket; if no answer comes, POST ``body`` to ``url`` (the socket
   * may be silently dead). Resolves when either got through; rejects when neither did. */
  function deliver(frame, answer, ids, url, body) {
    var wait = send(frame) ? confirmed(answer, ids) : Promise.resolve(false);
    return wait.then(function (ok) { return ok ? null : postJson(url, body); });
  }

  /* Mark read (ids, or all when ids is null): shown at once, confirmed by the server.
   * ``asOne``: each id stands for its whole item (a group's row): every member held here is
   * read now, and the server, told "group", reads the rest. What is read together shares a
   * bucket, so a group read as one stays one row.
   * Resolves when the server confirmed, or after a short wait (then the HTTP API is asked
   * too, in case the socket was silently dead); never rejects. */
  function markRead(ids, asOne) {
    var changed = [];
    var before = unread;
    var held = unreadItems();
    var local = ids === null ? null : asOne ? withMembers(ids) : ids;
    var bucket = newBucket("l");
    items.forEach(function (n) {
      if (!n.read && (local === null || local.indexOf(n.id) >= 0)) {
        changed.push({ n: n, bucket: n.nbellBucket });
        n.read = true;
        n.nbellBucket = bucket;
      }
    });
    setUnread(ids === null ? 0 : unread - (held - unreadItems()));
    render();
    var frame = ids === null ? { type: "read_all" } : { type: "read", ids: ids };
    var body = ids === null ? { all: true } : { ids: ids };
    if (ids !== null && asOne) { frame.group = true; body.group = true; }
    return deliver(frame, "read", null, root.getAttribute("data-read-url"), body)
      .catch(function () {
        // Neither the socket nor HTTP got through: show things as they still are.
        changed.forEach(function (c) { c.n.read = false; c.n.nbellBucket = c.bucket; });
        setUnread(before);
        render();
        toast(null, t("readFailed"), "error");
      });
  }

  var ANSWERS = { archive: "archived", unarchive: "unarchived", unread: "unread", snooze: "snoozed" };

  /* Archive, unarchive, mark unread or snooze ``ids`` here at once; the server's frame (to
   * every tab) confirms it, HTTP is the fallback, and a change neither took is undone.
   * ``asOne``: each id stands for its whole item, as in markRead. The badge moves by the
   * unread items this changes (a group counts once). */
  function triage(kind, ids, until, asOne) {
    var before = unread;
    var held = unreadItems();
    var focusIndex = focusedRowIndex();
    var undo = [];
    (asOne ? withMembers(ids) : ids).forEach(function (id) {
      var n = items.get(id) || gone.get(id);
      if (!n) return;
      undo.push({ n: n, read: n.read, archived: n.archived, snoozed: n.snoozed_until,
                  shown: items.has(id), bucket: n.nbellBucket });
      if (kind === "archive" || kind === "snooze") {
        if (kind === "archive") n.archived = true; else n.snoozed_until = until;
        items.delete(id);
        gone.set(id, n);
        if (seen) seen.push.delete(id);
      } else if (kind === "unread") {
        n.read = false;
        n.archived = false;
        n.snoozed_until = null;
        delete n.nbellBucket;
        gone.delete(id);
        items.set(id, n);
      } else if (kind === "unarchive") {
        n.archived = false;
        gone.delete(id);
        items.set(id, n);
      }
    });
    setUnread(unread + unreadItems() - held);
    render();
    if (focusIndex !== null) focusRowAfterChange(focusIndex);
    var frame = { type: kind, ids: ids };
    var body = { ids: ids };
    if (asOne) { frame.group = true; body.group = true; }
    if (kind === "snooze") { frame.until = until; body.until = until; }
    return deliver(frame, ANSWERS[kind], ids, apiUrl + kind + "/", body).catch(function () {
      undo.forEach(function (u) {
        u.n.read = u.read;
        u.n.archived = u.archived;
        u.n.snoozed_until = u.snoozed;
        u.n.nbellBucket = u.bucket;
        if (u.shown) { gone.delete(u.n.id); items.set(u.n.id, u.n); }
        else { items.delete(u.n.id); gone.set(u.n.id, u.n); }
      });
      setUnread(before);
      render();
      toast(null, t("triageFailed"), "error");
    });
  }

  function focusedRowIndex() {
    if (!list.contains(document.activeElement)) return null;
    var row = document.activeElement.closest("[data-notification-id]");
    var index = Array.prototype.indexOf.call(list.children, row);
    return index < 0 ? null : index;
  }

  /* After a row left the list, keep the keyboard where it was: the row that took its place. */
  function focusRowAfterChange(index) {
    if (list.contains(document.activeElement)) return;
    var all = links();
    if (all.length) all[Math.min(index, all.length - 1)].focus();
    else toggle.focus();
  }

  /* Follow ``n`` (a row's head, a toast's or a pop-up's notification): it is read first,
   * with the rest of its item when it is in a group (the bell shows and counts it as one). */
  function activate(n, event) {
    var href = safeUrl(n.url);
    var newTab = event && (event.ctrlKey || event.metaKey || event.shiftKey || event.button === 1);
    var asOne = !n.read && groupOf(n).count > 1;
    if (href && newTab) {
      if (!n.read) markRead([n.id], asOne);
      return; // the browser opens the link elsewhere; this page stays
    }
    if (event) event.preventDefault();
    var done = n.read ? Promise.resolve() : markRead([n.id], asOne);
    if (href) done.then(function () { window.location.assign(href); });
  }

  // ---- server frames every tab applies ---------------------------------------------------

  function apply(msg) {
    var ids = Array.isArray(msg.ids) ? msg.ids : [];
    switch (msg.type) {
      case "read": {
        // What one frame read was read together: one bucket. The first tab to apply the frame
        // (the leader) names it on the frame, which it then relays, so all tabs agree. A row
        // read earlier keeps its bucket, unless this tab only just read it (its own token,
        // awaiting this frame).
        var bucket = msg.nbellBucket || (msg.nbellBucket = newBucket("f"));
        var readNow = function (n) {
          if (n.read && !/^l/.test(n.nbellBucket || "")) return;
          n.read = true;
          n.nbellBucket = bucket;
        };
        ids.forEach(function (id) {
          var n = items.get(id) || gone.get(id);
          if (n) readNow(n);
        });
        if (!ids.length && msg.all) items.forEach(readNow);
        emit("read", { ids: ids, unread: msg.unread });
        break;
      }
      case "archived":
      case "snoozed":
        ids.forEach(function (id) {
          var n = items.get(id) || gone.get(id);
          if (!n) return;
          if (msg.type === "archived") n.archived = true;
          else n.snoozed_until = msg.until || n.snoozed_until;
          items.delete(id);
          gone.set(id, n);
          if (seen) seen.push.delete(id);
        });
        break;
      case "unarchived":
      case "unread": {
        var unknown = [];
        ids.forEach(function (id) {
          var n = items.get(id) || gone.get(id);
          if (!n) { unknown.push(id); return; }
          n.archived = false;
          if (msg.type === "unread") { n.read = false; n.snoozed_until = null; delete n.nbellBucket; }
          if (!hiddenNow(n)) { gone.delete(id); items.set(id, n); }
        });
        if (unknown.length && owner()) fetchLatest(true);
        break;
      }
      case "recalled":
      case "expired":
        // With `unread` (a recall of one user's notification) the server's count follows
        // below; without, each unread one held here takes one off (the next pong corrects).
        removeIds(ids, typeof msg.unread === "number");
        break;
      case "updated":
        applyEdit(msg.notification);
        break;
      case "preferences":
        // The server's word after the latest change: a GET still on its way may be older (a
        // later change sends a frame of its own).
        if (prefsLoading) { prefsLoading.abort(); prefsLoading = null; }
        setPreferences(msg.preferences);
        return true;
      default:
        return false;
    }
    if (typeof msg.unread === "number") setUnread(msg.unread);
    settle(msg.type, ids);
    return true;
  }

  // ---- new notifications: toasts, announcements, desktop -------------------------------

  /* News reached this tab (every tab hears of it; the toaster shows it). */
  function heardNews(ids) {
    var fresh = ids.map(function (id) { return items.get(id); }).filter(Boolean);
    if (fresh.length) emit("new", { notifications: fresh, unread: unread });
  }

  /* The leader's news waits a moment for more (a burst of pushes arrives frame by frame),
   * then the toast decision takes all of it at once. */
  function queueNews(ids) {
    var now = Date.now();
    ids.forEach(function (id) {
      if (pendingNews.indexOf(id) >= 0) return;
      pendingNews.push(id);
      arrivedAt.set(id, now);
    });
    if (!pendingNews.length) return;
    if (!newsTimer) newsFirstAt = now;
    window.clearTimeout(newsTimer);
    var wait = Math.max(0, Math.min(NEWS_DEBOUNCE, newsFirstAt + NEWS_MAX_WAIT - now));
    newsTimer = window.setTimeout(decideNews, wait);
  }

  function decideNews() {
    window.clearTimeout(newsTimer);
    newsTimer = null;
    var batch = pendingNews;
    pendingNews = [];
    if (batch.length) chooseToaster(batch);
  }

  function groupKeyOf(n) {
    return typeof n.group_key === "string" && n.group_key.trim() ? n.group_key.trim() : "";
  }

  /* Storm control: which of ``ids`` (news that may toast) get a toast of their own and which
   * are summed up in one. Critical ones always toast. A group is one item, as in the list:
   * of its news only the newest may toast, and none when its key toasted within
   * GROUP_WINDOW (the rest are listed and counted: "grouped"). More than BURST_COUNT items
   * within BURST_WINDOW (or more news while a summary is still up): the rest are one
   * summary, so a storm of one key is one toast and "1000 new notifications" never shows
   * for what the badge counts as one. */
  function planToasts(ids) {
    var now = Date.now();
    var news = ids.map(function (id) { return items.get(id); })
      .filter(function (n) { return n && !n.read; });
    var plan = { own: [], summary: [] };
    var newestOfKey = new Map();
    news.forEach(function (n) {
      var key = n.critical === true ? "" : groupKeyOf(n);
      var other = key && newestOfKey.get(key);
      if (key && (!other || order(n, other) < 0)) newestOfKey.set(key, n);
    });
    var counted = [];             // critical ones and the rest: they count towards a burst
    var rest = [];
    news.forEach(function (n) {
      var key = n.critical === true ? "" : groupKeyOf(n);
      if (n.critical === true) { plan.own.push(n.id); counted.push(n); return; }
      if (key && (newestOfKey.get(key) !== n ||
                  now - (groupToastAt.get(key) || -Infinity) < GROUP_WINDOW)) {
        grouped.add(n.id); // listed and counted; its group toasts once
        return;
      }
      rest.push(n);
      counted.push(n);
    });
    var latest = 0;
    arrivedAt.forEach(function (at, id) { if (at < now - 60000) arrivedAt.delete(id); });
    counted.forEach(function (n) {
      var at = arrivedAt.get(n.id) || now;
      toastableAt.push(at);
      if (at > latest) latest = at;
    });
    toastableAt = toastableAt.filter(function (at) { return at > now - 2 * BURST_WINDOW - NEWS_MAX_WAIT; });
    var recent = toastableAt.filter(function (at) { return at >= latest - BURST_WINDOW; }).length;
    var storming = recent > BURST_COUNT &&
      (rest.length > 1 || (rest.length && now - lastSummaryAt < TOAST_MS));
    rest.forEach(function (n) {
      var key = groupKeyOf(n);
      if (storming) {
        plan.summary.push(n.id);
        summarized.add(n.id);
      } else {
        plan.own.push(n.id);
      }
      if (key) groupToastAt.set(key, now);
    });
    if (plan.summary.length) lastSummaryAt = now;
    return plan;
  }

  /* The leader's choice: the visible tab focused last shows the toasts; when none is
   * visible the leader does, and pops up the desktop notification. */
  function chooseToaster(news) {
    var ids = news.filter(function (id) {
      if (!keptQuiet(items.get(id))) return true;
      silenced.add(id);
      arrivedAt.delete(id);
      return false;
    });
    if (!ids.length) return;
    var plan = planToasts(ids);
    if (!plan.own.length && !plan.summary.length) return;
    if (role === "solo") { showNews(plan, true); return; }
    liveTabs(function (live) {
      var best = null;
      peers.set(tabId, presence());
      peers.forEach(function (p, id) {
        if (live && id !== tabId && !live.has(id)) { peers.delete(id); return; }
        if (!p.visible) return;
        if (!best || (p.focused && !best.focused) ||
            (p.focused === best.focused && (p.at > best.at || (p.at === best.at && p.tab > best.tab)))) {
          best = p;
        }
      });
      var toaster = best ? best.tab : tabId;
      post({ k: "toast", plan: plan, toaster: toaster });
      if (toaster === tabId) showNews(plan, !best);
    });
  }

  function liveTabs(callback) {
    if (!navigator.locks || typeof navigator.locks.query !== "function") { callback(null); return; }
    navigator.locks.query().then(function (snapshot) {
      var live = new Set();
      (snapshot.held || []).concat(snapshot.pending || []).forEach(function (lock) {
        if (lock.name && lock.name.indexOf(tabLockPrefix) === 0) {
          live.add(lock.name.slice(tabLockPrefix.length));
        }
      });
      callback(live);
    }, function () { callback(null); });
  }

  /* Show the leader's plan in this tab: {own: ids with a toast each, summary: ids summed up
   * in one toast}. What was read, recalled or toasted here meanwhile is left out. */
  function showNews(plan, nobodyLooks) {
    var pick = function (ids) {
      return (Array.isArray(ids) ? ids : []).map(function (id) { return items.get(id); })
        .filter(function (n) { return n && !n.read && !toasted.has(n.id); });
    };
    var own = pick(plan.own);
    var summed = pick(plan.summary);
    if (summed.length === 1) { own = own.concat(summed); summed = []; } // no "1 new notifications"
    var all = own.concat(summed);
    if (!all.length) return;
    all.forEach(function (n) { toasted.add(n.id); });
    if (toastsCovered()) {
      // The open panel lists them (and is in the way): no toast over it.
      markSeen(own.map(function (n) { return n.id; }));
    } else {
      if (summed.length) showSummary(summed);
      own.slice(-MAX_TOASTS).forEach(function (n) { toast(n); });
      if (own.length > MAX_TOASTS) {
        toast(null, t("moreNotifications", { count: own.length - MAX_TOASTS }));
      }
    }
    if (nobodyLooks && owner()) {
      // Only what arrived after the user opted in (the decision comes a moment later).
      var since = function (n) { return (arrivedAt.get(n.id) || Date.now()) >= desktopSince; };
      own.filter(since).forEach(desktop);
      var poppable = summed.filter(since);
      if (poppable.length > 1) desktopSummary(poppable.length);
      else poppable.forEach(desktop);
    }
    all.forEach(function (n) { arrivedAt.delete(n.id); });
    announce(all.length === 1
      ? t("newNotification", { title: all[0].title })
      : t("newNotifications", { count: all.length }));
  }

  /* One toast for a burst: "12 new notifications", a button that opens the panel. More of
   * the storm while it is up adds to its count and starts its time again. */
  function showSummary(notifications) {
    if (summaryToast && summaryToast.box.parentNode === toastBox) {
      notifications.forEach(function (n) { summaryToast.ids.add(n.id); });
      summaryToast.update();
      return;
    }
    var ids = new Set(notifications.map(function (n) { return n.id; }));
    var box = toast(null, "", "info", function () { open(false); });
    box.classList.add("nbell-toast-summary");
    var mark = box.querySelector(".nbell-level-icon");
    mark.textContent = "";
    mark.appendChild(icon("bell", 18));
    summaryToast = {
      box: box, ids: ids,
      update: function () {
        var count = ids.size;
        if (!count) { box.nbellRemove(); return; }
        box.setAttribute("data-toast-summary", String(count));
        box.querySelector(".nbell-title").textContent = t("burstNotifications", { count: count });
        box.nbellRestart();
      }
    };
    summaryToast.update();
  }

  /* Recalled or expired: its toast leaves the screen; a summary counts one fewer. */
  function dropToast(id) {
    Array.prototype.forEach.call(
      toastBox.querySelectorAll('[data-toast-id="' + id + '"]'),
      function (box) { if (box.nbellRemove) box.nbellRemove(); else box.parentNode.removeChild(box); }
    );
    if (summaryToast && summaryToast.ids.delete(id)) {
      if (summaryToast.box.parentNode === toastBox) summaryToast.update();
    }
  }

  /* Edited: the toast on screen shows the new title, line and level. */
  function updateToast(n) {
    var box = toastBox.querySelector('[data-toast-id="' + n.id + '"]');
    if (!box) return;
    var lvl = levelOf(n);
    box.className = box.className.replace(/\bnbell-level-\w+/, "nbell-level-" + lvl);
    var mark = box.querySelector(".nbell-toast-main .nbell-level-icon");
    if (mark) { mark.textContent = ""; mark.appendChild(icon(lvl, 18)); }
    var textBox = box.querySelector(".nbell-toast-main .nbell-text");
    if (textBox) fillText(textBox, n.title, n.body);
  }

  function fillText(textBox, title, body) {
    textBox.textContent = "";
    textBox.appendChild(el("span", "nbell-title", title));
    if (firstLine(body)) textBox.appendChild(el("span", "nbell-body", firstLine(body)));
  }

  /* A toast for ``n`` (or a message ``text`` of ``level``; ``onClick`` makes it a button).
   * Returns its box, with nbellRemove() and nbellRestart() (its time from the start). At most
   * MAX_TOASTS at once: the oldest goes first, a critical one last. */
  function toast(n, text, level, onClick) {
    // A group is one item: its newer toast (a storm of it, once per GROUP_WINDOW) replaces
    // the one still on screen rather than stacking up beside it.
    var groupKey = n ? groupKeyOf(n) : "";
    if (groupKey) {
      Array.prototype.slice.call(toastBox.children).forEach(function (other) {
        if (other.nbellGroupKey === groupKey && other.nbellRemove &&
            !other.hasAttribute("data-critical")) other.nbellRemove();
      });
    }
    while (toastBox.children.length >= MAX_TOASTS) {
      var victim = toastBox.querySelector(".nbell-toast:not([data-critical])") || toastBox.firstChild;
      if (victim.nbellRemove) victim.nbellRemove(); else toastBox.removeChild(victim);
    }
    var lvl = n ? levelOf(n) : level || "info";
    var box = el("div", "nbell-toast nbell-level-" + lvl);
    box.nbellGroupKey = groupKey;
    box.setAttribute("data-notification-toast", n ? String(n.id) : "");
    if (n) box.setAttribute("data-toast-id", String(n.id));
    if (n && n.critical === true) box.setAttribute("data-critical", "");
    var clickable = !!(n || onClick);
    var main = el(clickable ? "button" : "div", "nbell-toast-main");
    if (clickable) main.type = "button";
    var mark = el("span", "nbell-level-icon");
    mark.setAttribute("aria-hidden", "true");
    mark.appendChild(icon(lvl, 18));
    main.appendChild(mark);
    var textBox = el("span", "nbell-text");
    fillText(textBox, n ? n.title : text, n ? n.body : "");
    main.appendChild(textBox);
    box.appendChild(main);
    var close = el("button", "nbell-toast-close");
    close.type = "button";
    close.setAttribute("aria-label", t("dismiss"));
    close.appendChild(icon("close", 16));
    box.appendChild(close);
    var bar = box.appendChild(el("span", "nbell-toast-timer"));
    bar.setAttribute("aria-hidden", "true");

    var remaining = TOAST_MS, startedAt = 0, timer = null;
    function remove() {
      window.clearTimeout(timer);
      timer = null;
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
      if (timer !== null || !box.parentNode || box.matches(":hover") ||
          box.contains(document.activeElement)) return;
      box.classList.remove("is-paused");
      run();
    }
    box.nbellRemove = remove;
    box.nbellRestart = function () {
      remaining = TOAST_MS;
      // The timer bar starts over too (a new element restarts its animation).
      var fresh = el("span", "nbell-toast-timer");
      fresh.setAttribute("aria-hidden", "true");
      box.replaceChild(fresh, bar);
      bar = fresh;
      if (timer !== null) { window.clearTimeout(timer); run(); }
    };
    box.addEventListener("mouseenter", pause);
    box.addEventListener("focusin", pause);
    box.addEventListener("mouseleave", resume);
    box.addEventListener("focusout", function () { window.setTimeout(resume, 0); });
    close.addEventListener("click", remove);
    if (n) main.addEventListener("click", function (event) { remove(); activate(n, event); });
    else if (onClick) main.addEventListener("click", function () { remove(); onClick(); });
    box.style.setProperty("--nbell-toast-ms", TOAST_MS + "ms");
    toastBox.appendChild(box);
    placeToasts();
    run();
    if (n) markSeen([n.id]);
    return box;
  }

  /* Toasts never cover the open panel: beside it when there is room, else none at all. */
  var TOAST_GAP = 12;
  function toastsCovered() {
    if (!isOpen()) return false;
    var rect = panel.getBoundingClientRect();
    var width = toastBox.offsetWidth || 352;
    return rect.left < width + 2 * TOAST_GAP;
  }

  function placeToasts() {
    if (!isOpen()) {
      toastBox.style.right = "";
      toastBox.hidden = false;
      return;
    }
    if (toastsCovered()) {
      toastBox.textContent = ""; // their rows are in the list that is now open
      toastBox.hidden = true;
      return;
    }
    toastBox.hidden = false;
    var rect = panel.getBoundingClientRect();
    toastBox.style.right = Math.max(0, window.innerWidth - rect.left + TOAST_GAP) + "px";
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
    setDesktopOn(on);
    updateDesktopButton();
  }

  var desktopOn = desktopWanted();
  var desktopSince = 0;           // when desktop pop-ups were last turned on here

  function setDesktopOn(on) {
    if (on && !desktopOn) desktopSince = Date.now();
    desktopOn = on;
  }

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
      // One tag per notification: should two browsers' leaders show it, it shows once.
      var shown = new window.Notification(n.title, {
        body: firstLine(n.body), tag: "notifyproject-" + n.id, lang: lang
      });
      shown.onclick = function () { window.focus(); shown.close(); activate(n, null); };
      shown.onclose = function () {
        if (desktopShown.get(n.id) === shown) desktopShown.delete(n.id);
      };
      desktopShown.set(n.id, shown);
    } catch (e) { /* e.g. mobile browsers that require a service worker */ }
  }

  /* A burst, while nobody looks: one pop-up, "12 new notifications" (one tag, so the next
   * burst's replaces it); a click opens the panel. */
  function desktopSummary(count) {
    if (!desktopSupported() || !desktopOn || window.Notification.permission !== "granted") return;
    if (document.visibilityState !== "hidden") return;
    try {
      var shown = new window.Notification(t("burstNotifications", { count: count }), {
        tag: "notifyproject-burst", lang: lang
      });
      shown.onclick = function () { window.focus(); shown.close(); open(false); };
    } catch (e) { /* as above */ }
  }

  /* Recalled or expired: its pop-up, if this tab showed one, goes too. */
  function closeDesktop(id) {
    var shown = desktopShown.get(id);
    if (!shown) return;
    desktopShown.delete(id);
    try { shown.close(); } catch (e) { /* gone already */ }
  }

  // ---- frames from the socket (this tab owns it) ---------------------------------------

  function onFrame(msg) {
    var news = [];
    switch (msg.type) {
      case "hello": {
        var again = greeted;
        // The backoff starts over only once a greeted socket has stayed up for a while: a
        // server that says hello and then drops every socket must not be hammered.
        window.clearTimeout(stableTimer);
        stableTimer = window.setTimeout(function () { attempt = 0; }, STABLE_AFTER);
        if (!greeted) helloLast = msg.last_id === undefined ? NaN : msg.last_id;
        greeted = true;
        setState("open");
        setUnread(msg.unread);
        window.clearTimeout(pongGraceTimer); // this sync brings what a held pong named
        pongGraceTimer = null;
        sync(true);
        // One early ping: its pong's count and last id put right what was dispatched while
        // this socket joined its groups (a new leader taking over), without waiting a
        // whole PING_EVERY.
        window.setTimeout(function () {
          if (socket && socket.readyState === WebSocket.OPEN) send({ type: "ping" });
        }, EARLY_PING);
        flushAcks();
        flushSeen();
        if (again) { fetchLatest(false); loadPreferences(); }
        break;
      }
      case "notification": {
        var n = msg.notification;
        arrivedVia("push", [n]);
        // Into an unread item of its group held here: that row updates in place, and the
        // server counted the group once already.
        var joins = n && joinsUnread(n);
        if (remember(n)) {
          ack([n.id]);
          if (!n.read) { if (!joins) setUnread(unread + 1); news.push(n.id); }
          if (joins && actorsUncertain(n)) refreshGroupsSoon();
        } else if (historyIds.has(n.id)) {
          // Pushed, so dispatched just now: the first list, read meanwhile, already held it
          // (and counted it) as history. It is news all the same.
          historyIds.delete(n.id);
          if (items.has(n.id) && !items.get(n.id).read) news.push(n.id);
        }
        break;
      }
      case "missed": {
        var asked = syncQueue.length ? syncQueue.shift() : { counted: true, since: lastId };
        var first = !loaded;
        var got = msg.notifications || [];
        // The server says where the next sync starts: it stays behind rows too young to be
        // sure nothing can still appear below them (they come again; de-duplicated by id).
        // Only the answer to a sync sent from the cursor moves it: a later page (below) was
        // read past rows that may still be settling.
        var before = lastId;
        if (asked.since === lastId) {
          if ("cursor" in msg) { if (msg.cursor !== null) lastId = msg.cursor; }
          else if (got.length) lastId = got[got.length - 1].id;
          else if (lastId === null) lastId = 0;
        }
        arrivedVia("sync", got);
        applyChanges(msg);
        var heldBefore = unreadItems();
        var fresh = got.filter(remember);
        ack(fresh.map(function (x) { return x.id; }));
        loaded = true;
        // The first list of a page is history, not news: no toasts for it, except for what
        // was dispatched after the page's first hello (listed after its last id, or all
        // when it had none) — the page may have connected before it, or lost that socket
        // before the list came.
        if (first) {
          var mark = helloLast === null ? 0 : got.findIndex(function (x) { return x.id === helloLast; }) + 1;
          var listedNew = mark > 0 || helloLast === null ? got.slice(mark) : [];
          news = listedNew.filter(function (x) { return !x.read && fresh.indexOf(x) >= 0; })
            .map(function (x) { return x.id; });
          fresh.forEach(function (x) { if (news.indexOf(x.id) < 0) historyIds.add(x.id); });
        } else {
          var unreadFresh = fresh.filter(function (x) { return !x.read; });
          if (typeof msg.unread !== "number" && !asked.counted) {
            setUnread(unread + unreadItems() - heldBefore); // a group counts once
          }
          news = unreadFresh.map(function (x) { return x.id; });
        }
        // The server's count, read after the list: a hello's was read before the socket
        // joined its groups and misses what was dispatched in between (a handover's push).
        if (typeof msg.unread === "number") setUnread(msg.unread);
        // A full answer may not be all of it: ask for the rest, from its last item. (From
        // the cursor would return the same page while its rows are young: a burst of more
        // than MAX_SYNC whose pushes the layer dropped stayed half-shown for half a minute.)
        // The server says so with ``next`` (its list leaves a group's older members out, and
        // a frame holds 64 KiB), where the next page starts; an older one by a full list.
        if (typeof msg.next === "number") {
          sync(true, msg.next);
        } else if (got.length >= MAX_SYNC) {
          if (asked.since !== null) sync(true, got[got.length - 1].id);
          else if (lastId !== before) sync(true);
        }
        break;
      }
      case "pong":
        window.clearTimeout(pongTimer);
        if (overtakes(msg)) holdPong(msg);
        else judgePong(msg);
        break;
      case "error":
        if (window.console) console.warn("notifications:", msg.code, msg.detail);
        break;
      default:
        apply(msg);
    }
    renderSoon();
    post({ k: "frame", frame: msg, news: news, unread: unread, cursor: lastId, loaded: loaded });
    emit("frame", msg);
    if (news.length) { heardNews(news); queueNews(news); }
  }

  /* Pushes travel at most once. The server names the last notification it delivered to us
   * and our unread count: if we never got that one, a push was lost — sync (its items are
   * already in this count, so they add nothing). */
  function judgePong(msg) {
    var drifted = typeof msg.unread === "number" && msg.unread !== unread;
    // More unread than this page can explain: something reached the server and not the
    // page (a hole before a push that did arrive, a burst the layer dropped).
    var countShort = typeof msg.unread === "number" && msg.unread > unread;
    if (typeof msg.unread === "number") setUnread(msg.unread);
    var syncing = syncQueue.length > 0; // its answer will bring what is new, as news
    // A push was lost if the pong names a last id this page does not hold, or counts
    // more unread than the page does (a hole before a push that arrived). Comparing
    // with the cursor alone, which stays behind rows younger than SYNC_SETTLE_SECONDS,
    // sent nearly every pong after a push syncing: a query and a write per browser per
    // minute of news, for nothing.
    var gap = msg.last_id != null && msg.last_id !== lastId &&
      (!holds(msg.last_id) || countShort) && !syncing;
    if (gap) {
      gapSyncs += 1;
      sync(true);
    }
    if (drifted && loaded) {
      // A count we cannot explain: a read, Done, snooze or unarchive elsewhere whose push
      // was lost (they travel at most once, like pushes). The API's first page puts the
      // list right: what it no longer lists leaves; what it lists again returns (unless
      // a sync is on its way, whose answer brings new ones as news).
      reconciles += 1;
      fetchLatest(!gap && !syncing);
    }
  }

  /* Whether a pong names a notification this page does not hold (and no sync is on its way
   * to bring it): the push may still be coming. A broadcast's rows are in the database as
   * soon as it is recorded; the last of thousands of sockets gets the push a while later. */
  function overtakes(msg) {
    return msg.last_id != null && msg.last_id !== lastId && !holds(msg.last_id) &&
      syncQueue.length === 0;
  }

  /* Judge such a pong PONG_GRACE later: by then the push has come, with its count (nothing
   * to do), or it was lost (sync; the answer brings the count). Judged at once, every
   * browser whose pong fell inside a broadcast's fan-out synced, a query each in the middle
   * of the fan-out they slowed down, and took a count the push then added to again. */
  function holdPong(msg) {
    heldPongs += 1;
    // One judgement at a time, the first pong's: later pongs must not keep postponing it.
    if (pongGraceTimer !== null) return;
    pongGraceTimer = window.setTimeout(function () {
      pongGraceTimer = null;
      if (!overtakes(msg)) return;
      gapSyncs += 1;
      sync(true);
    }, PONG_GRACE);
  }

  /* A `missed` answer's recalls and edits of late (a page that was offline, or lost their
   * push). Its `unread` is the server's count, which already leaves the recalled out: the
   * caller sets it, nothing is subtracted. */
  function applyChanges(msg) {
    if (Array.isArray(msg.recalled)) removeIds(msg.recalled, typeof msg.unread === "number");
    if (Array.isArray(msg.updated)) msg.updated.forEach(function (c) { applyEdit(c); });
  }

  // ---- frames relayed by the leader (this tab follows) ---------------------------------

  function onRelayedFrame(m) {
    var msg = m.frame || {};
    if (msg.type === "notification") {
      arrivedVia("push", [msg.notification]);
      remember(msg.notification);
    } else if (msg.type === "missed") {
      arrivedVia("sync", msg.notifications || []);
      applyChanges({ recalled: msg.recalled, updated: msg.updated, unread: m.unread });
      (msg.notifications || []).forEach(remember);
    } else {
      apply(msg);
    }
    if (m.loaded) loaded = true;
    if (m.cursor !== undefined) lastId = m.cursor;
    if (typeof m.unread === "number") setUnread(m.unread);
    renderSoon();
    emit("frame", msg);
    if (m.news && m.news.length) heardNews(m.news);
  }

  function snapshot() {
    return {
      items: Array.from(items.values()), unread: unread, cursor: lastId, loaded: loaded,
      state: root.getAttribute("data-connection-state"), preferences: prefs
    };
  }

  function applySnapshot(m, replace) {
    // The leader's list: it applied every recall and expiry before it sent this (the channel
    // keeps its order), so what it holds is listed again, as the server said.
    (m.items || []).forEach(function (n) { if (n && typeof n.id === "number") removed.delete(n.id); });
    if (replace) {
      items.clear();
      (m.items || []).forEach(function (n) { items.set(n.id, n); gone.delete(n.id); });
    } else {
      (m.items || []).forEach(function (n) {
        var known = items.get(n.id);
        if (!known) { remember(n); return; }
        known.read = n.read;
        known.nbellBucket = n.nbellBucket;
        copyGroupFields(known, n);
        EDITABLE.forEach(function (key) { if (key in n) known[key] = n[key]; });
      });
    }
    if (m.cursor !== undefined) lastId = m.cursor;
    if (m.loaded) loaded = true;
    if (typeof m.unread === "number") setUnread(m.unread);
    if (m.state) followState(m.state);
    if (m.preferences) setPreferences(m.preferences);
    render();
  }

  function presence() {
    return { tab: tabId, visible: document.visibilityState === "visible",
             focused: document.hasFocus(), at: focusedAt };
  }

  function sayPresence() {
    var mine = presence();
    peers.set(tabId, mine);
    post({ k: "presence", presence: mine });
  }

  function onChannel(event) {
    var m = event.data;
    if (!m || typeof m !== "object" || m.from === tabId) return;
    if (m.presence) peers.set(m.from, m.presence);
    switch (m.k) {
      case "hi":
        if (owner()) post({ k: "state", to: m.from, snapshot: snapshot() });
        break;
      case "leader":
        sayPresence();
        break;
      case "bye":
        peers.delete(m.from);
        break;
      case "state":
        if (!owner() && (m.to === tabId || m.to === "*")) {
          applySnapshot(m.snapshot || {}, m.to === tabId || !loaded);
        }
        break;
      case "conn":
        if (!owner()) followState(m.state);
        break;
      case "prefs":
        if (!owner()) setPreferences(m.preferences);
        break;
      case "frame":
        if (!owner()) onRelayedFrame(m);
        break;
      case "toast":
        if (m.toaster === tabId && m.plan && typeof m.plan === "object") showNews(m.plan, false);
        break;
      case "send":
        if (owner() && m.frame && typeof m.frame.type === "string") {
          if (m.frame.type === "sync") break; // the leader keeps its own cursor
          send(m.frame);
        }
        break;
      case "visible":
        if (owner()) syncOnVisible();
        break;
    }
  }

  function followState(state) {
    leaderState = state;
    showState(state);
    if (state === "open") { flushSeen(); }
  }

  // ---- the connection ------------------------------------------------------------------

  function showState(state) {
    root.setAttribute("data-connection-state", state);
    var text = state === "reconnecting" ? t("reconnecting") : "";
    if (status.textContent !== text) status.textContent = text;
    relogin.hidden = state !== "closed";
  }

  function setState(state) {
    showState(state);
    if (role === "leader") post({ k: "conn", state: state });
  }

  function socketUrl() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    return scheme + window.location.host + root.getAttribute("data-ws-path");
  }

  function connect() {
    window.clearTimeout(retryTimer);
    retryTimer = null;
    if (stopped || socket || !owner()) return;
    setState(greeted || attempt ? "reconnecting" : "connecting");
    var ws;
    try {
      ws = new WebSocket(socketUrl());
    } catch (e) {
      scheduleReconnect(0);
      return;
    }
    socketsOpened += 1;
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
    if (stopped || socket || !owner()) return;
    connect();
  }

  function startPing() {
    stopPing();
    // Each ping ±15% of PING_EVERY: pages that reconnected together (a daphne restart)
    // drift apart instead of pinging the server all in the same instant every period.
    pingTimer = window.setTimeout(function () {
      startPing();
      if (!send({ type: "ping" })) return;
      pongTimer = window.setTimeout(function () {
        // No pong: the connection is dead even if the browser has not noticed.
        var ws = socket;
        dropped(1006);
        if (ws) try { ws.close(); } catch (e) { /* already closing */ }
      }, PONG_WAIT);
    }, PING_EVERY * (0.85 + Math.random() * 0.3));
  }

  function stopPing() {
    window.clearTimeout(pingTimer);
    window.clearTimeout(pongTimer);
  }

  function syncOnVisible() {
    if (socket && socket.readyState === WebSocket.OPEN) {
      if (Date.now() - lastVisibleSync > SYNC_GAP) { lastVisibleSync = Date.now(); sync(false); }
    } else if (!socket) {
      attempt = 0;
      reconnectNow();
    }
  }

  function getList() {
    return fetch(apiUrl + "?limit=" + MAX_ITEMS * 2, {
      credentials: "same-origin", headers: { Accept: "application/json" }
    }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    });
  }

  /* Without a socket (yet), fill the list from the JSON API so the dropdown is never blank. */
  var httpLoading = false;
  function loadOverHttp() {
    if (httpLoading || loaded) return;
    httpLoading = true;
    var askedAt = Date.now();
    getList().then(function (data) {
      if (loaded) return;
      (data.results || []).forEach(function (n) {
        if (n && listedAgain(n.id, askedAt)) remember(n);
      });
      loaded = true;
      setUnread(data.unread);
      render();
      post({ k: "state", to: "*", snapshot: snapshot() });
    }).catch(function () { /* keep the server-rendered count */ }).then(function () {
      httpLoading = false;
    });
  }

  /* After a reconnect (items read, archived or snoozed elsewhere while this one was offline)
   * or an unarchive of something this page no longer holds: the latest page from the API. */
  function fetchLatest(addUnknown) {
    if (!items.size && !addUnknown) return;
    var askedAt = Date.now();
    getList().then(function (data) {
      var changed = false;
      var listed = new Set();
      var results = data.results || [];
      results.forEach(function (fresh) {
        if (!fresh || !listedAgain(fresh.id, askedAt)) return;
        listed.add(fresh.id);
        var n = items.get(fresh.id);
        if (n) {
          if (fresh.read !== n.read) { n.read = fresh.read; changed = true; }
          if (!n.read) delete n.nbellBucket;
          if (copyGroupFields(n, fresh)) changed = true;
          // The current text (an edit older than the sync's seven days, too).
          if (applyEdit(fresh, askedAt)) changed = true;
        } else if (addUnknown && !toasted.has(fresh.id) && remember(fresh)) {
          changed = true;
        }
      });
      if (followHeads(results, data.next === null || data.next === undefined)) changed = true;
      if (typeof data.unread === "number") setUnread(data.unread);
      if (changed) {
        render();
        post({ k: "state", to: "*", snapshot: snapshot() });
      }
    }).catch(function () { /* the next frame will tell */ });
  }

  /* The API's page lists a group by its head only, so a read elsewhere whose frame this
   * page missed would leave the held members behind: a stale unread group. All unread rows
   * of a key are one item, so a held unread member that the page leaves out, within the
   * page's range (``complete``: the page is all there is), is still unread only if a newer
   * unread head of its key is listed; otherwise it was read, and goes with the nearest newer
   * read head listed (rows read as one share its bucket). Read members stay as they are:
   * which read item one is in cannot be told from heads. Returns whether anything changed. */
  function followHeads(results, complete) {
    var listed = new Set(results.map(function (r) { return r && r.id; }));
    var oldest = results.length ? results[results.length - 1] : null;
    var changed = false;
    items.forEach(function (n) {
      var key = groupKeyOf(n);
      if (!key || n.read || listed.has(n.id) || !oldest) return;
      if (!complete && order(n, oldest) > 0) return; // older than the page: not its business
      var readHead = null;
      var unreadHead = false;
      results.forEach(function (r) {
        if (!r || groupKeyOf(r) !== key || order(r, n) >= 0) return;
        if (!r.read) unreadHead = true;
        else if (!readHead || order(r, readHead) > 0) readHead = r;
      });
      var held = !unreadHead && readHead && items.get(readHead.id);
      if (!held || !held.read) return;
      if (!held.nbellBucket) held.nbellBucket = "s" + held.id;
      n.read = true;
      n.nbellBucket = held.nbellBucket;
      changed = true;
    });
    return changed;
  }

  // ---- leading -------------------------------------------------------------------------

  function lead() {
    if (!shared) { loadPreferences(); connect(); return; }
    channel = new BroadcastChannel("notifyproject-bell:" + userKey);
    channel.onmessage = onChannel;
    // Held while this tab lives: the leader prunes tabs that went without saying goodbye.
    navigator.locks.request(tabLockPrefix + tabId, function () {
      return new Promise(function () { /* until the page goes */ });
    }).catch(function () { /* no matter */ });
    sayPresence();
    post({ k: "hi", presence: presence() });
    var request;
    try {
      request = navigator.locks.request(leaderLock, function () {
        return new Promise(function (release) {
          releaseLeader = release;
          becomeLeader();
        });
      });
    } catch (e) {
      request = Promise.reject(e);
    }
    request.catch(function () {
      // No lock to be had here (e.g. a sandboxed frame): a socket of this tab's own.
      if (role === "follower") {
        role = "solo";
        loadPreferences();
        connect();
      }
    });
  }

  function becomeLeader() {
    role = "leader";
    stopped = false;
    post({ k: "leader" });
    sayPresence();
    loadPreferences();
    if ("WebSocket" in window) connect(); else loadOverHttp();
  }

  function resign() {
    if (role !== "leader") return;
    var release = releaseLeader;
    releaseLeader = null;
    role = "follower";
    if (release) release();
  }

  // ---- the dropdown --------------------------------------------------------------------

  function isOpen() { return !panel.hidden; }

  function open(focusFirst) {
    if (!isOpen()) {
      panel.hidden = false;
      toggle.setAttribute("aria-expanded", "true");
      root.classList.add("is-open");
      refreshTimes();
      render();
      placeToasts();
    }
    if (focusFirst) focusItem(0);
  }

  function close(returnFocus) {
    if (!isOpen()) return;
    panel.hidden = true;
    snoozeOpenFor = null;
    snoozePicking = false;
    toggle.setAttribute("aria-expanded", "false");
    root.classList.remove("is-open");
    placeToasts();
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
    if (event.target && event.target.tagName === "INPUT") return;
    var all = links();
    var row = document.activeElement && document.activeElement.closest
      ? document.activeElement.closest("[data-notification-id]") : null;
    var index = row ? all.indexOf(row.querySelector(".nbell-link")) : -1;
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
      // Escape closes the innermost thing: the snooze choices, then the panel.
      if (closeSnooze(list.contains(document.activeElement))) return;
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
  scroller.addEventListener("scroll", updateScrollHints, { passive: true });
  window.addEventListener("resize", function () { updateScrollHints(); placeToasts(); });

  Array.prototype.forEach.call(filterButtons, function (button) {
    button.addEventListener("click", function () {
      setFilter(button.getAttribute("data-notification-filter"));
    });
  });
  markAllButton.addEventListener("click", function () { markRead(null); });
  desktopButton.addEventListener("click", requestDesktop);

  // ---- page lifecycle ------------------------------------------------------------------

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") focusedAt = Date.now();
    sayPresence();
    if (document.visibilityState !== "visible") return;
    refreshTimes();
    if (owner()) syncOnVisible(); else post({ k: "visible" });
  });
  window.addEventListener("focus", function () { focusedAt = Date.now(); sayPresence(); });
  window.addEventListener("blur", sayPresence);
  window.addEventListener("online", function () { attempt = 0; reconnectNow(); });
  window.addEventListener("pagehide", function () {
    stopped = true;
    window.clearTimeout(retryTimer);
    stopPing();
    var ws = socket;
    socket = null;
    if (ws) try { ws.close(1000); } catch (e) { /* closing */ }
    post({ k: "bye" });
    resign(); // the next tab takes over at once
  });
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted || root.getAttribute("data-connection-state") === "closed") return;
    // Back from the back/forward cache: the old socket (and perhaps the lead) is gone.
    stopped = false;
    attempt = 0;
    if (!shared || role === "solo") { connect(); return; }
    sayPresence();
    post({ k: "hi", presence: presence() });
    navigator.locks.request(leaderLock, function () {
      return new Promise(function (release) { releaseLeader = release; becomeLeader(); });
    }).catch(function () { /* stays a follower */ });
  });
  window.addEventListener("storage", function (event) {
    if (event.key === DESKTOP_KEY) { setDesktopOn(desktopWanted()); updateDesktopButton(); }
  });
  window.setInterval(refreshTimes, 60000);

  bellImpl = { send: send };
  if (shared) showState("connecting");
  rememberZone();
  setUnread(unread);
  updateDesktopButton();
  setFilter("all");
  if (!("WebSocket" in window)) { role = "solo"; loadPreferences(); loadOverHttp(); }
  else lead();
})();
