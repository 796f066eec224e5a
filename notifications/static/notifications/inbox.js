/* notifyproject inbox: multi-select, bulk and per-row triage without reloading, and a list
 * that follows the bell live (new rows, reads, Done, snoozes, from this tab and every other).
 *
 * Dependency-free, no build step. Without this script the page still works: every control
 * is a form that posts to the inbox URL. Notification text is only ever inserted with
 * textContent. Live frames come from bell.js, which dispatches
 * `notifications:frame` on document for every server frame it handles (DESIGN.md).
 */
(function () {
  "use strict";

  var root = document.querySelector("[data-ninbox]");
  if (!root || root.hasAttribute("data-ninbox-ready")) return;
  root.setAttribute("data-ninbox-ready", "");

  var $ = function (sel) { return root.querySelector(sel); };
  var $$ = function (sel) { return Array.prototype.slice.call(root.querySelectorAll(sel)); };
  var status = root.getAttribute("data-status") || "";
  var levelFilter = root.getAttribute("data-level") || "";
  var firstPage = root.hasAttribute("data-first-page");
  var zone = root.getAttribute("data-zone") || undefined;
  var renderedAt = Date.parse(root.getAttribute("data-rendered-at")) || Date.now();
  var apiUrl = root.getAttribute("data-api-url");
  var readUrl = root.getAttribute("data-read-url");
  var stringsNode = document.getElementById(root.getAttribute("data-strings-id"));
  var S = stringsNode ? JSON.parse(stringsNode.textContent) : {};
  var lang = document.documentElement.lang || undefined;

  var groupsBox = $("[data-ninbox-groups]");
  var empty = $("[data-ninbox-empty]");
  var bulk = $("[data-ninbox-bulk]");
  var selectAll = $("[data-ninbox-select-all]");
  var selectedLabel = $("[data-ninbox-selected]");
  var notice = $("[data-ninbox-notice]");
  var noticeText = $("[data-ninbox-notice-text]");
  var undoButton = $("[data-ninbox-undo]");
  var rowTemplate = document.getElementById("ninbox-row-template");
  var dayTemplate = document.getElementById("ninbox-day-template");
  var membersTemplate = document.getElementById("ninbox-members-template");
  // A members page (?group=<key>&bucket_of=<id>): one item's rows, each on its own.
  var membersOf = root.getAttribute("data-members-of");
  var bucketOf = Number(root.getAttribute("data-bucket-of")) || 0;

  var KIND = { read: "read", unread: "unread", archive: "archived", unarchive: "unarchived", snooze: "snoozed" };
  var UNDO = { archived: "unarchive", unarchived: "archive", read: "unread", unread: "read" };
  var EXCERPT_CHARS = 160;      // as the server cuts it (views.EXCERPT_CHARS)
  var PAGE_SIZE = 20;           // the page's own size (api.DEFAULT_PAGE_SIZE)
  var REFRESH_DELAY = 250;      // frames come in bursts (one per tab action): refetch once
  var LATER_MS = 3 * 3600 * 1000;
  var MORNING = 8;              // "Tomorrow" and "Next week" start at 08:00, as the server's do

  function fmt(template, values) {
    return String(template || "").replace(/%\((\w+)\)s/g, function (_, name) {
      return values[name] === undefined ? "" : String(values[name]);
    });
  }

  // ---- time in the user's zone ------------------------------------------------------------

  function formatter(options) {
    try { return new Intl.DateTimeFormat(lang, Object.assign({ timeZone: zone }, options)); }
    catch (e) { return new Intl.DateTimeFormat(lang, options); }  // an unknown zone name
  }
  var clock = formatter({ hour: "numeric", minute: "2-digit" });
  var full = formatter({ weekday: "long", day: "numeric", month: "long", year: "numeric",
    hour: "numeric", minute: "2-digit", timeZoneName: "short" });
  var dayName = formatter({ weekday: "long", day: "numeric", month: "long" });
  var dayKeyOf = (function () {
    var f = formatter({ year: "numeric", month: "2-digit", day: "2-digit" });
    return function (date) {
      var parts = {};
      f.formatToParts(date).forEach(function (p) { parts[p.type] = p.value; });
      return parts.year + "-" + parts.month + "-" + parts.day;
    };
  })();

  function dayLabel(key) {
    var now = new Date();
    if (key === dayKeyOf(now)) return S.today || "Today";
    if (key === dayKeyOf(new Date(now.getTime() - 86400000))) return S.yesterday || "Yesterday";
    var parts = key.split("-").map(Number);
    return dayName.format(new Date(Date.UTC(parts[0], parts[1] - 1, parts[2], 12)));
  }

  function localizeTimes(scope) {
    Array.prototype.forEach.call(scope.querySelectorAll("time.ninbox-time"), function (node) {
      var when = new Date(node.getAttribute("datetime"));
      if (isNaN(when)) return;
      node.textContent = clock.format(when);
      node.title = full.format(when);
    });
  }

  // ---- rows ---------------------------------------------------------------------------------

  function rowOf(id) { return $('.ninbox-groups [data-notification-id="' + Number(id) + '"]'); }
  function rows() { return $$(".ninbox-groups [data-notification-id]"); }
  // The page's own rows (heads and plain ones), without the members shown under a head.
  function topRows() { return $$(".ninbox-groups .ninbox-list > [data-notification-id]"); }
  function arrival(n) { return Date.parse(n.dispatched_at || n.created_at) || Date.now(); }

  // Would this view (status and level filter) list the notification as it is now?
  function belongs(n) {
    if (levelFilter && n.level !== levelFilter) return false;
    var snoozed = n.snoozed_until && Date.parse(n.snoozed_until) > Date.now();
    if (status === "archived") return !!n.archived;
    if (status === "snoozed") return !n.archived && !!snoozed;
    if (n.archived || snoozed) return false;
    return status === "unread" ? !n.read : true;
  }

  function excerpt(body) {
    var text = String(body || "").replace(/\s+/g, " ").trim();
    return text.length > EXCERPT_CHARS ? text.slice(0, EXCERPT_CHARS - 1).trim() + "…" : text;
  }

  function buildRow(n) {
    var li = rowTemplate.content.firstElementChild.cloneNode(true);
    var level = S.levels && S.levels[n.level] ? n.level : "info";
    var title = String(n.title || "");
    li.setAttribute("data-notification-id", String(n.id));
    li.setAttribute("data-level", level);
    li.setAttribute("data-arrived", new Date(arrival(n)).toISOString());
    li.className = "ninbox-item level-" + level + (n.read ? "" : " unread");
    var box = li.querySelector("[data-ninbox-select]");
    box.value = String(n.id);
    li.querySelector("[data-ninbox-select-label]").textContent = fmt(S.select, { title: title });
    var holder = li.querySelector(".ninbox-level");
    holder.className = "ninbox-level ninbox-level-" + level;
    holder.querySelector("use").setAttribute("href", "#ninbox-i-" + level);
    li.querySelector("[data-ninbox-level-label]").textContent = S.levels[level];
    var link = li.querySelector(".ninbox-title");
    if (n.url) {
      link.setAttribute("href", n.url);
    } else {
      var plain = document.createElement("span");
      plain.className = "ninbox-title";
      link.replaceWith(plain);
      link = plain;
    }
    link.textContent = title;
    li.querySelector(".ninbox-excerpt").textContent = excerpt(n.body);
    var time = li.querySelector("time.ninbox-time");
    time.setAttribute("datetime", new Date(arrival(n)).toISOString());
    // The row form's own id (the checkbox, also named "ids", comes first in the row).
    li.querySelector("[data-ninbox-row-form] input[name=ids]").value = String(n.id);
    var labels = {
      "[data-notification-read]": S.markRead, "[data-notification-unread]": S.markUnread,
      "[data-notification-snooze]": S.snooze, "[data-notification-archive]": S.done,
      "[data-notification-unarchive]": S.moveToInbox,
    };
    Object.keys(labels).forEach(function (sel) {
      var control = li.querySelector(sel);
      if (control) control.setAttribute("aria-label", fmt(labels[sel], { title: title }));
    });
    if (n.actor && n.actor.name) li.setAttribute("data-actor-name", String(n.actor.name));
    else li.removeAttribute("data-actor-name");
    drawGroup(li, {
      key: n.group_key, count: n.group_count, names: n.group_actors, actors: n.group_actor_count
    });
    localizeTimes(li);
    return li;
  }

  // ---- group items: a head stands for its item; its members open under it ------------------

  function groupCount(row) { return Math.max(1, Number(row && row.getAttribute("data-group-count")) || 1); }
  function isMember(row) { return !!(row && row.closest(".ninbox-members")); }
  // A head of more than itself: its verbs act on the whole item ("group": true).
  function isHead(row) { return !!row && !isMember(row) && groupCount(row) > 1; }
  function headOf(member) {
    var box = member && member.closest(".ninbox-members");
    var head = box && box.previousElementSibling;
    return head && head.matches("[data-notification-id]") ? head : null;
  }
  function membersBox(head) {
    var next = head && head.nextElementSibling;
    return next && next.matches(".ninbox-members") ? next : null;
  }
  function groupOf(row) {
    var names = [];
    try { names = JSON.parse(row.getAttribute("data-group-actors") || "[]"); } catch (e) { names = []; }
    return {
      key: row.getAttribute("data-group-key") || "", count: groupCount(row),
      names: Array.isArray(names) ? names : [], actors: Number(row.getAttribute("data-group-actor-count")) || 0
    };
  }

  /* "Ana", "Ana and Bo", "Ana, Bo and Cy", "Ana, Bo and 11 others", or "13 notifications" when
   * nobody is named: the rule of views.actor_line and of the bell's actorLine. */
  function actorLine(names, actorCount, count) {
    names = (Array.isArray(names) ? names : []).filter(function (name) { return typeof name === "string" && name; });
    var total = Math.max(names.length, Math.floor(Number(actorCount)) || 0);
    var p = { first: names[0], second: names[1], third: names[2] };
    if (!names.length) return fmt(S.groupNotifications, { n: count });
    if (total === 1) return names[0];
    if (names.length === 1) {
      return total === 2 ? fmt(S.groupOneOther, p) : fmt(S.groupOthers, { first: names[0], n: total - 1 });
    }
    if (total === 2) return fmt(S.groupTwo, p);
    if (total === 3) return names.length >= 3 ? fmt(S.groupThree, p) : fmt(S.groupTwoOneOther, p);
    p.n = total - 2;
    return fmt(S.groupTwoOthers, p);
  }

  /* Draw (or undo) a row's group parts: the actor line, the "12 more" expander and the form's
   * group field. A row of one keeps its key only (a push of the key merges into it). */
  function drawGroup(li, group) {
    var key = String(group.key || "");
    var count = Math.max(1, Math.floor(Number(group.count)) || 1);
    if (key) li.setAttribute("data-group-key", key); else li.removeAttribute("data-group-key");
    var line = li.querySelector("[data-ninbox-group-line]");
    var field = li.querySelector("[data-ninbox-group-field]");
    if (!key || count < 2 || isMember(li)) {
      ["data-group-count", "data-group-actors", "data-group-actor-count"].forEach(function (name) {
        li.removeAttribute(name);
      });
      li.classList.remove("ninbox-grouped");
      if (line) line.remove();
      if (field) field.remove();
      return;
    }
    if (!line) {
      line = rowTemplate.content.querySelector("[data-ninbox-group-line]").cloneNode(true);
      li.querySelector(".ninbox-main .ninbox-title").before(line);
    }
    if (!field) {
      field = rowTemplate.content.querySelector("[data-ninbox-group-field]").cloneNode(true);
      li.querySelector("[data-ninbox-row-form] input[name=ids]").after(field);
    }
    var names = (Array.isArray(group.names) ? group.names : []).slice(0, 3);
    var actors = Math.max(names.length, Math.floor(Number(group.actors)) || 0);
    var text = actorLine(names, actors, count);
    li.classList.add("ninbox-grouped");
    li.setAttribute("data-group-count", String(count));
    li.setAttribute("data-group-actors", JSON.stringify(names));
    li.setAttribute("data-group-actor-count", String(actors));
    line.querySelector("[data-ninbox-actors]").textContent = text;
    var more = line.querySelector("[data-ninbox-expand]");
    more.setAttribute("data-notification-group-count", String(count));
    more.setAttribute("href", membersUrl(key, li.getAttribute("data-notification-id")));
    more.querySelector("[data-ninbox-more-text]").textContent = fmt(S.more, { n: count - 1 });
    more.querySelector("[data-ninbox-more-of]").textContent = ": " + text;
    upgradeExpander(li);
  }

  function viewQuery() {
    return (status ? "&status=" + status : "") + (levelFilter ? "&level=" + levelFilter : "");
  }

  function membersUrl(key, id) {
    return location.pathname + "?group=" + encodeURIComponent(key) + "&bucket_of=" + Number(id) + viewQuery();
  }

  // With the script the expander is a disclosure button; without it, a link to the members.
  function upgradeExpander(head) {
    var more = head.querySelector("[data-ninbox-expand]");
    if (!more) return;
    var box = membersBox(head);
    more.setAttribute("role", "button");
    more.setAttribute("aria-expanded", box ? "true" : "false");
    if (box) more.setAttribute("aria-controls", box.id); else more.removeAttribute("aria-controls");
  }

  function toggleMembers(head) {
    var box = membersBox(head);
    if (box) { collapse(head); return; }
    box = membersTemplate.content.firstElementChild.cloneNode(true);
    box.id = "ninbox-members-" + head.getAttribute("data-notification-id");
    box.querySelector("[data-ninbox-member-list]").setAttribute("aria-label",
      fmt(S.membersOf, { who: head.querySelector("[data-ninbox-actors]").textContent }));
    head.after(box);
    upgradeExpander(head);
    loadMembers(head, null);
  }

  // Closing forgets the members (and their selection): opening again asks for them afresh.
  function collapse(head) {
    var box = membersBox(head);
    if (!box) return;
    var focused = box.contains(document.activeElement);
    box.remove();
    upgradeExpander(head);
    if (focused) head.querySelector("[data-ninbox-expand]").focus();
    changed();
  }

  function loadMembers(head, before) {
    var box = membersBox(head);
    var more = head.querySelector("[data-ninbox-expand]");
    var group = groupOf(head);
    var headId = head.getAttribute("data-notification-id");
    if (!box || !group.key) return Promise.resolve();
    more.setAttribute("aria-busy", "true");
    var query = "?group=" + encodeURIComponent(group.key) + "&bucket_of=" + headId + viewQuery() +
      "&limit=" + PAGE_SIZE + (before ? "&before=" + before : "");
    return fetch(apiUrl + query, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data || !Array.isArray(data.results) || !document.contains(box)) return;
        var list = box.querySelector("[data-ninbox-member-list]");
        data.results.forEach(function (n) {
          if (!n || String(n.id) === headId || rowOf(n.id)) return;
          var li = buildRow(Object.assign({}, n, { group_count: 1 }));
          li.classList.add("ninbox-member");
          list.appendChild(li);
        });
        var foot = box.querySelector(".ninbox-members-foot");
        foot.hidden = !data.next;
        foot.querySelector("[data-ninbox-members-more]").setAttribute("data-before", String(data.next || ""));
        changed();
      }, function () { say(null); })
      .then(function () { more.removeAttribute("aria-busy"); });
  }

  // One fewer in an item (a member went elsewhere): its head says so.
  function shrink(head) {
    if (!head || !head.getAttribute("data-group-key")) return;
    var group = groupOf(head);
    group.count -= 1;
    drawGroup(head, group);
    if (group.count < 2) { var box = membersBox(head); if (box) box.remove(); }
  }

  // A head that a newer member replaces: shown as the first of the members, if they are open.
  function demote(head, box) {
    var was = head.querySelector("[data-ninbox-select]").checked;
    head.remove();
    if (!box) return;
    head.classList.remove("ninbox-new");
    box.querySelector("[data-ninbox-member-list]").prepend(head);
    head.classList.add("ninbox-member");
    drawGroup(head, { key: groupOf(head).key });
    head.querySelector("[data-ninbox-select]").checked = was;
  }

  /* A new member of an item the page shows unread: its head becomes the new one, one more,
   * its actor first, on top (where its arrival puts it). ``n.group_count`` (a sync's entry,
   * the item's size) wins over counting. Returns whether it merged. */
  function merge(n, live) {
    if (!n.group_key || n.read || membersOf || (status && status !== "unread")) return false;
    var head = topRows().filter(function (row) {
      return row.getAttribute("data-group-key") === n.group_key && row.classList.contains("unread");
    })[0];
    if (!head) return false;
    var group = groupOf(head);
    if (group.count < 2) {  // a row of one: its actor is its own
      var own = head.getAttribute("data-actor-name");
      group.names = own ? [own] : [];
      group.actors = group.names.length;
    }
    var name = n.actor && n.actor.name;
    var listed = typeof n.group_count === "number" && n.group_count > 1;
    var count = listed ? n.group_count : group.count + 1;
    var names = listed && Array.isArray(n.group_actors) ? n.group_actors.slice(0, 3) : group.names.slice();
    var actors = listed ? n.group_actor_count : group.actors;
    if (!listed && name) {
      var at = names.indexOf(name);
      if (at !== -1) names.splice(at, 1); else actors += 1;
      names.unshift(name);
    }
    var box = membersBox(head);
    var selected = head.querySelector("[data-ninbox-select]").checked;
    var focused = head.contains(document.activeElement);
    var fresh = Object.assign({}, n, { group_count: count, group_actors: names.slice(0, 3), group_actor_count: actors });
    demote(head, box);
    insertRow(fresh, live);
    var next = rowOf(n.id);
    if (box) {
      next.after(box);
      box.id = "ninbox-members-" + n.id;
      upgradeExpander(next);
    }
    next.querySelector("[data-ninbox-select]").checked = selected;
    if (focused) next.querySelector("[data-ninbox-expand]").focus();
    changed();
    return true;
  }

  function dayList(key) {
    var sections = $$("[data-ninbox-day]");
    for (var i = 0; i < sections.length; i++) {
      var at = sections[i].getAttribute("data-ninbox-day");
      if (at === key) return sections[i].querySelector(".ninbox-list");
      if (at < key) return newDay(key, sections[i]);
    }
    return newDay(key, null);
  }

  function newDay(key, beforeNode) {
    var section = dayTemplate.content.firstElementChild.cloneNode(true);
    var id = "ninbox-day-" + key.replace(/-/g, "");
    section.setAttribute("data-ninbox-day", key);
    section.setAttribute("aria-labelledby", id);
    var heading = section.querySelector(".ninbox-day-title");
    heading.id = id;
    heading.textContent = dayLabel(key);
    groupsBox.insertBefore(section, beforeNode);
    return section.querySelector(".ninbox-list");
  }

  // Put a row where the server would: its day, newest arrival first.
  function insertRow(n, animate) {
    if (rowOf(n.id)) return;
    var li = buildRow(n);
    var at = arrival(n);
    var list = dayList(dayKeyOf(new Date(at)));
    var next = null;
    Array.prototype.some.call(list.children, function (other) {
      if (Date.parse(other.getAttribute("data-arrived")) <= at) { next = other; return true; }
      return false;
    });
    list.insertBefore(li, next);
    li.ninboxTouched = Date.now();
    if (animate) li.classList.add("ninbox-new");
    changed();
  }

  var focusWas = null;  // the row whose control was used, while its request is out

  function removeRow(row) {
    if (!row) return;
    var box = membersBox(row);
    var head = headOf(row);
    var focused = row.contains(document.activeElement) || row === focusWas ||
      !!(box && box.contains(document.activeElement));
    var neighbour = nextRow(row);
    var list = row.parentNode;
    list.removeChild(row);
    if (box) box.remove();  // a head goes with its members
    if (head) shrink(head);  // a member leaves its item
    var day = list.closest("[data-ninbox-day]");
    if (!list.children.length && !head && day) day.remove();
    if (focused) {
      var target = neighbour && neighbour.querySelector("[data-ninbox-select]");
      (target || selectAll || root).focus();
    }
    changed();
  }

  function nextRow(row) {
    var box = membersBox(row);
    var all = rows().filter(function (other) { return !(box && box.contains(other)); });
    var i = all.indexOf(row);
    return all[i + 1] || all[i - 1] || null;
  }

  function setRead(row, read) {
    if (!row) return;
    row.classList.toggle("unread", !read);
    row.ninboxTouched = Date.now();
  }

  // ---- counts ---------------------------------------------------------------------------------

  function setCount(name, value) {
    var node = $('[data-ninbox-count="' + name + '"]');
    if (!node || typeof value !== "number" || value < 0) return;
    node.textContent = String(value);
    if (name === "unread") {
      var markAll = $("[data-notification-mark-all]");
      if (markAll) markAll.closest("form").hidden = value === 0;
    }
  }

  function readCount(name) {
    var node = $('[data-ninbox-count="' + name + '"]');
    return node ? Number(node.textContent) || 0 : 0;
  }

  var refreshTimer = null;
  // Snoozed and archived counts, and rows this view gains (an unarchive seen from Inbox, an
  // unread seen from Unread), are known to the server only: ask it once a burst is over.
  function refreshSoon() {
    if (refreshTimer !== null) window.clearTimeout(refreshTimer);
    refreshTimer = window.setTimeout(refresh, REFRESH_DELAY);
  }

  function refresh() {
    refreshTimer = null;
    var started = Date.now();
    var query = "?limit=" + PAGE_SIZE + (status ? "&status=" + status : "") +
      (levelFilter ? "&level=" + levelFilter : "");
    fetch(apiUrl + query, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) return;
        if (typeof data.unread === "number") setCount("unread", data.unread);
        if (data.counts) setCounts(data.counts); else fetchCounts();
        // A members page names its item by one row, which a verb may have taken out of it:
        // its rows follow the frames only.
        if (firstPage && !membersOf && Array.isArray(data.results)) reconcile(data.results, started);
      })
      .catch(function () { /* the next frame or reload puts it right */ });
  }

  // Make the first page what the server says it is now: rows this view gained elsewhere (an
  // unarchive seen from Inbox, frames missed while the socket changed hands), rows it lost,
  // read or unread. The answer is in the server's order; a missing row goes after the row
  // before it there.
  function reconcile(results, started) {
    var full = results.length >= PAGE_SIZE;
    var oldest = results.length ? arrival(results[results.length - 1]) : Infinity;
    var wanted = {};
    var prev = null;
    results.forEach(function (n) {
      wanted[n.id] = true;
      var existing = rowOf(n.id);
      if (existing && isMember(existing)) return;  // shown under its head until it closes
      if (existing) {
        // A frame newer than this answer has the last word.
        if (!(existing.ninboxTouched > started)) {
          setRead(existing, !!n.read);
          regroup(existing, n);
        }
        prev = existing;
        return;
      }
      if (!belongs(n)) return;
      var key = dayKeyOf(new Date(arrival(n)));
      if (prev && prev.closest("[data-ninbox-day]").getAttribute("data-ninbox-day") === key) {
        var li = buildRow(n);
        prev.parentNode.insertBefore(li, prev.nextSibling);
        li.ninboxTouched = Date.now();
        prev = li;
        changed();
      } else {
        insertRow(n, false);
        prev = rowOf(n.id);
      }
    });
    topRows().forEach(function (row) {
      var id = row.getAttribute("data-notification-id");
      var at = Date.parse(row.getAttribute("data-arrived"));
      if (row.ninboxTouched > started) return;
      if (!wanted[id] && (!full || at > oldest)) removeRow(row);
    });
  }

  // The server's size and actors of a shown item (a list entry) replace the page's guess.
  function regroup(row, n) {
    if (typeof n.group_count !== "number") return;
    var box = membersBox(row);
    drawGroup(row, { key: n.group_key, count: n.group_count, names: n.group_actors, actors: n.group_actor_count });
    if (box && n.group_count < 2) box.remove();
    upgradeExpander(row);
  }

  function setCounts(counts) {
    Object.keys(counts).forEach(function (k) { setCount(k, counts[k]); });
  }

  function fetchCounts() {
    fetch(location.pathname + "?counts=1", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) { if (data && data.counts) setCounts(data.counts); })
      .catch(function () {});
  }

  // The bell's badge is the truth for the unread count whenever a bell is on the page.
  function followBell() {
    var badge = document.querySelector("[data-notification-bell] [data-unread-count]");
    if (!badge || !window.MutationObserver) return;
    new MutationObserver(function () {
      setCount("unread", Number(badge.getAttribute("data-unread-count")));
    }).observe(badge, { attributes: true, attributeFilter: ["data-unread-count"] });
  }

  // ---- frames (from the bell, and the answers to our own requests) ---------------------------

  function apply(frame) {
    if (!frame || typeof frame !== "object") return;
    var ids = Array.isArray(frame.ids) ? frame.ids : [];
    switch (frame.type) {
      case "notification":
        arrived([frame.notification], true);
        break;
      case "missed":
        arrived((frame.notifications || []).filter(function (n) {
          return n && arrival(n) > renderedAt;  // what came after the page was rendered
        }), false);
        // What was recalled or edited while the socket was away.
        (frame.recalled || []).forEach(function (id) { removeRow(rowOf(id)); });
        (frame.updated || []).forEach(updateRow);
        break;
      case "recalled":
      case "expired":
        // Recalled by an admin, or past its expiry: it is shown nowhere any more.
        ids.forEach(function (id) { removeRow(rowOf(id)); });
        refreshSoon();
        break;
      case "updated":
        updateRow(frame.notification);
        break;
      case "read":
        var grouped = false;
        ids.forEach(function (id) {
          var row = rowOf(id);
          grouped = grouped || !!(row && row.hasAttribute("data-group-key"));
          if (status === "unread") removeRow(row); else setRead(row, true);
        });
        // A member read on its own leaves its item: the server knows the sizes now.
        if (grouped) refreshSoon();
        break;
      case "unread":
        // Unread brings a row back to the inbox: out of Archived and Snoozed.
        ids.forEach(function (id) {
          var row = rowOf(id);
          if (status === "archived" || status === "snoozed") removeRow(row); else setRead(row, false);
        });
        refreshSoon();
        break;
      case "archived":
        ids.forEach(function (id) { if (status !== "archived") removeRow(rowOf(id)); });
        refreshSoon();
        break;
      case "unarchived":
        ids.forEach(function (id) { if (status === "archived") removeRow(rowOf(id)); });
        refreshSoon();
        break;
      case "snoozed":
        ids.forEach(function (id) { if (status !== "snoozed") removeRow(rowOf(id)); });
        refreshSoon();
        break;
      case "hello":
        // A (re)connected socket (this tab's or the leader's): what happened meanwhile
        // came as no frame.
        refreshSoon();
        break;
      case "pong":
        break;
      default:
        return;
    }
    if (typeof frame.unread === "number") setCount("unread", frame.unread);
  }

  /* An edit of a sent notification: its text, link and level change in place; the row
   * keeps its position, read state, selection and snooze time. */
  function updateRow(content) {
    if (!content || content.id === undefined) return;
    var row = rowOf(content.id);
    if (!row) return;
    var drawn = buildRow({
      id: content.id, title: content.title, body: content.body, level: content.level,
      url: content.url, read: true, dispatched_at: row.getAttribute("data-arrived")
    });
    var level = drawn.getAttribute("data-level");
    row.setAttribute("data-level", level);
    row.className = row.className.replace(/\blevel-\S+/, "level-" + level);
    [".ninbox-level", ".ninbox-title", ".ninbox-excerpt", "[data-ninbox-select-label]"]
      .forEach(function (selector) {
        var old = row.querySelector(selector), now = drawn.querySelector(selector);
        if (old && now) old.replaceWith(now);
      });
    ["[data-notification-read]", "[data-notification-unread]", "[data-notification-snooze]",
     "[data-notification-archive]", "[data-notification-unarchive]"].forEach(function (selector) {
      var old = row.querySelector(selector), now = drawn.querySelector(selector);
      if (old && now) old.setAttribute("aria-label", now.getAttribute("aria-label"));
    });
    row.ninboxTouched = Date.now();
  }

  function arrived(list, live) {
    var any = false;
    list.forEach(function (n) {
      if (!n || n.id === undefined) return;
      var row = rowOf(n.id);
      // A snooze that came due arrives as new: it leaves Snoozed, comes back on top.
      if (row && status === "snoozed") { removeRow(row); any = true; return; }
      if (row) { setRead(row, !!n.read); return; }
      if (firstPage && belongs(n) && !merge(n, live)) {
        if (!membersOf) insertRow(n, live);
        else if (joinsThisPage(n)) insertRow(Object.assign({}, n, { group_count: 1 }), live);
      }
      any = true;
    });
    if (any) refreshSoon();
  }

  // A members page of the unread item gains the key's new ones (they join that item).
  function joinsThisPage(n) {
    if (n.group_key !== membersOf || n.read || (status && status !== "unread")) return false;
    var named = rowOf(bucketOf);
    return !bucketOf || !named || named.classList.contains("unread");
  }

  document.addEventListener("notifications:frame", function (event) { apply(event.detail); });

  // ---- requests ------------------------------------------------------------------------------

  function csrfToken() {
    var field = root.querySelector("input[name=csrfmiddlewaretoken]");
    if (field && field.value) return field.value;
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function post(url, payload, keepalive) {
    return fetch(url, {
      method: "POST", credentials: "same-origin", keepalive: !!keepalive,
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(payload),
    }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    });
  }

  function snoozeUntil(preset) {
    var now = new Date();
    if (preset === "later") return new Date(now.getTime() + LATER_MS);
    var day = new Date(now.getFullYear(), now.getMonth(), now.getDate(), MORNING, 0, 0, 0);
    if (preset === "tomorrow") day.setDate(day.getDate() + 1);
    else day.setDate(day.getDate() + (((8 - day.getDay()) % 7) || 7));  // next Monday
    return day;
  }

  // The ids a verb on these rows changes, as far as the page knows: a head's item whole.
  function covered(ids) {
    var all = [];
    ids.forEach(function (id) {
      all.push(id);
      var row = rowOf(id);
      var box = isHead(row) && membersBox(row);
      if (box) {
        Array.prototype.forEach.call(box.querySelectorAll("[data-notification-id]"), function (member) {
          all.push(Number(member.getAttribute("data-notification-id")));
        });
      }
    });
    return all;
  }

  // How many notifications a verb on these rows touches (a head counts its whole item).
  function sizeOf(ids) {
    return ids.reduce(function (sum, id) {
      var row = rowOf(id);
      return sum + (isHead(row) ? groupCount(row) : 1);
    }, 0);
  }

  /* Heads go with "group": true (the whole item), the rest without; a member selected with
   * its own head is in that head's item already. */
  function split(ids) {
    var heads = [], plain = [];
    ids.forEach(function (id) {
      var row = rowOf(id);
      if (isHead(row)) heads.push(id);
    });
    ids.forEach(function (id) {
      var row = rowOf(id);
      if (isHead(row)) return;
      var head = isMember(row) ? headOf(row) : null;
      if (head && heads.indexOf(Number(head.getAttribute("data-notification-id"))) !== -1) return;
      plain.push(id);
    });
    return { heads: heads, plain: plain };
  }

  var busy = false;
  // ``parts`` ({heads, plain}) when the caller knows (an undo: its rows may be gone).
  function act(action, ids, preset, quiet, parts) {
    ids = ids.map(Number).filter(function (id) { return id > 0; });
    if (!ids.length || busy) return Promise.resolve();
    busy = true;
    parts = parts || split(ids);
    var until = action === "snooze" ? snoozeUntil(preset) : null;
    var url = action === "read" ? readUrl : apiUrl + action + "/";
    var count = sizeOf(parts.heads) + parts.plain.length;
    var requests = [[parts.heads, true], [parts.plain, false]].filter(function (part) {
      return part[0].length;
    }).map(function (part) {
      var payload = { ids: part[0] };
      if (part[1]) payload.group = true;
      if (until) payload.until = until.toISOString();
      return post(url, payload);
    });
    return Promise.all(requests).then(function (answers) {
      var changedIds = [];
      var unread;
      answers.forEach(function (data) {
        changedIds = changedIds.concat(data.ids || []);
        if (typeof data.unread === "number") unread = data.unread;
      });
      // Read answers with the count only; a triage verb names every row it changed.
      if (action === "read") changedIds = covered(parts.heads.concat(parts.plain));
      apply({ type: KIND[action], ids: changedIds, unread: unread, until: until && until.toISOString() });
      deselect(ids);
      if (!quiet) {
        // Undo: exactly the rows a triage verb changed, each on its own; a read's heads again
        // as their whole items (its answer names none).
        var undo = action === "read" ? { heads: parts.heads, plain: parts.plain } : { heads: [], plain: changedIds };
        say(KIND[action], changedIds, until, action === "read" ? count : changedIds.length, undo);
      }
    }, function () {
      say(null);
    }).then(function () { busy = false; });
  }

  var lastUndo = null;
  /* ``count``: how many it changed (a read of a head: its whole item); ``undo``: the rows an
   * undo acts on ({heads, plain}; by default the ids, each on its own). */
  function say(kind, ids, until, count, undo) {
    if (!notice) return;
    undoButton.hidden = true;
    lastUndo = null;
    if (kind === null) {
      noticeText.textContent = S.failed || "That did not go through. Try again.";
    } else {
      if (!ids.length) return;
      noticeText.textContent = fmt(S.results && S.results[kind], {
        n: count || ids.length, until: until ? formatter({ weekday: "short", hour: "numeric", minute: "2-digit" }).format(until) : "",
      });
      if (UNDO[kind]) {
        lastUndo = { action: UNDO[kind], parts: undo || { heads: [], plain: ids.slice() } };
        undoButton.hidden = false;
      }
    }
    notice.hidden = false;
  }

  if (undoButton) undoButton.addEventListener("click", function () {
    if (!lastUndo) return;
    var undo = lastUndo;
    notice.hidden = true;
    act(undo.action, undo.parts.heads.concat(undo.parts.plain), null, true, undo.parts);
  });

  // ---- selection ------------------------------------------------------------------------------

  function boxes() { return $$(".ninbox-groups [data-ninbox-select]"); }
  function selectedIds() {
    return boxes().filter(function (b) { return b.checked; }).map(function (b) { return Number(b.value); });
  }

  function deselect(ids) {
    boxes().forEach(function (b) { if (ids.indexOf(Number(b.value)) !== -1) b.checked = false; });
    changed();
  }

  function changed() {
    var all = boxes();
    var n = all.filter(function (b) {
      var row = b.closest(".ninbox-item");
      if (row) row.classList.toggle("ninbox-checked", b.checked);
      return b.checked;
    }).length;
    if (selectAll) {
      selectAll.checked = n > 0 && n === all.length;
      selectAll.indeterminate = n > 0 && n < all.length;
      selectAll.disabled = all.length === 0;
    }
    if (selectedLabel) selectedLabel.textContent = n ? fmt(S.selected, { n: n }) : (S.withSelected || "");
    $$("[data-ninbox-bulk-action]").forEach(function (control) {
      if (control.tagName === "BUTTON") control.disabled = n === 0;
      else control.setAttribute("aria-disabled", n === 0 ? "true" : "false");
    });
    if (!n) $$(".ninbox-toolbar details[open]").forEach(function (d) { d.open = false; });
    empty.hidden = rows().length > 0;
  }

  var lastClicked = null;
  root.addEventListener("click", function (event) {
    var box = event.target.closest && event.target.closest("[data-ninbox-select]");
    if (!box) return;
    // Shift-click selects the run between the last click and this one, as in a mail client.
    if (event.shiftKey && lastClicked && lastClicked !== box && document.contains(lastClicked)) {
      var all = boxes();
      var a = all.indexOf(lastClicked), b = all.indexOf(box);
      if (a !== -1 && b !== -1) {
        all.slice(Math.min(a, b), Math.max(a, b) + 1).forEach(function (x) { x.checked = box.checked; });
      }
    }
    lastClicked = box;
  });
  root.addEventListener("change", function (event) {
    if (event.target === selectAll) {
      boxes().forEach(function (b) { b.checked = selectAll.checked; });
    }
    changed();
  });

  // A summary is no button: keep a closed bulk menu shut while nothing is selected.
  root.addEventListener("click", function (event) {
    var summary = event.target.closest && event.target.closest("summary[aria-disabled=true]");
    if (summary) event.preventDefault();
  }, true);

  // ---- forms: the same verbs, without the reload ------------------------------------------------

  root.addEventListener("submit", function (event) {
    var form = event.target;
    var submitter = event.submitter;
    if (form.querySelector("[data-notification-mark-all]")) {
      event.preventDefault();
      post(readUrl, { all: true }).then(function (data) {
        rows().forEach(function (row) {
          if (status === "unread") removeRow(row); else setRead(row, true);
        });
        setCount("unread", data.unread);
      }, function () { say(null); });
      return;
    }
    if (!submitter || (!form.hasAttribute("data-ninbox-bulk") && !form.hasAttribute("data-ninbox-row-form"))) return;
    var preset = submitter.name === "snooze" ? submitter.value : null;
    var action = preset ? "snooze" : submitter.value;
    if (!KIND[action]) return;  // anything else goes to the server as a form
    event.preventDefault();
    var ids = form.hasAttribute("data-ninbox-bulk")
      ? selectedIds()
      : [Number(form.querySelector("input[name=ids]").value)];
    var menu = submitter.closest("details");
    var item = form.closest(".ninbox-item");
    // Closing the menu drops the focus: the row keeps it in mind for when it goes.
    if (item && item.contains(document.activeElement)) focusWas = item;
    if (menu) menu.open = false;
    act(action, ids, preset).then(function () { focusWas = null; });
  });

  // Escape closes an open menu and gives focus back to its button; a click outside closes it.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    $$("details[data-ninbox-menu][open]").forEach(function (d) {
      d.open = false;
      d.querySelector("summary").focus();
    });
  });
  document.addEventListener("click", function (event) {
    $$("details[data-ninbox-menu][open]").forEach(function (d) {
      if (!d.contains(event.target)) d.open = false;
    });
  });
  // One menu open at a time.
  root.addEventListener("toggle", function (event) {
    var d = event.target;
    if (d.matches && d.matches("details[data-ninbox-menu]") && d.open) {
      $$("details[data-ninbox-menu][open]").forEach(function (other) { if (other !== d) other.open = false; });
      var first = d.querySelector(".ninbox-menu-list button");
      if (first && d.contains(document.activeElement)) first.focus();
    }
  }, true);

  // ---- links mark read -------------------------------------------------------------------------

  function leaving(event) {
    var link = event.target.closest && event.target.closest("a[data-ninbox-link]");
    if (!link || (event.type === "auxclick" && event.button !== 1)) return;
    var row = link.closest("[data-notification-id]");
    if (!row || !row.classList.contains("unread")) return;
    var id = Number(row.getAttribute("data-notification-id"));
    // A head's link opens what its item is about: the whole item is read, as in the bell.
    var frame = isHead(row) ? { ids: [id], group: true } : { ids: [id] };
    covered([id]).forEach(function (each) { setRead(rowOf(each), true); });
    // keepalive: the request outlives this page, which is about to be left.
    post(readUrl, frame, true).catch(function () {
      if (window.NotificationBell && window.NotificationBell.send) {
        window.NotificationBell.send(Object.assign({ type: "read" }, frame));
      }
    });
  }
  root.addEventListener("click", leaving);
  root.addEventListener("auxclick", leaving);

  // ---- the expander: members open under their head -------------------------------------------

  root.addEventListener("click", function (event) {
    var more = event.target.closest && event.target.closest("[data-ninbox-expand]");
    if (more) {
      // A new tab (ctrl, cmd, shift, middle) still gets the members as a page.
      if (event.ctrlKey || event.metaKey || event.shiftKey || event.button) return;
      event.preventDefault();
      toggleMembers(more.closest("[data-notification-id]"));
      return;
    }
    var next = event.target.closest && event.target.closest("[data-ninbox-members-more]");
    if (next) {
      var box = next.closest(".ninbox-members");
      loadMembers(box.previousElementSibling, Number(next.getAttribute("data-before")) || null);
    }
  });
  // A link made a button answers Space as a button does (Enter is the link's own click).
  root.addEventListener("keydown", function (event) {
    var more = event.target.closest && event.target.closest("[data-ninbox-expand]");
    if (!more || (event.key !== " " && event.key !== "Spacebar")) return;
    event.preventDefault();
    toggleMembers(more.closest("[data-notification-id]"));
  });

  // ---- start -------------------------------------------------------------------------------------

  $$("[data-ninbox-js-only]").forEach(function (node) { node.hidden = false; });
  $$(".ninbox-groups [data-ninbox-expand]").forEach(function (more) {
    upgradeExpander(more.closest("[data-notification-id]"));
  });
  localizeTimes(root);
  followBell();
  changed();
  root.setAttribute("data-ninbox-live", "");
})();
