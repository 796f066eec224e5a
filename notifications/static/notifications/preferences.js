/* notifyproject notification settings: each change saves at once through the JSON API.
 *
 * Dependency-free, no build step. Without this script (or without fetch/AbortController) the
 * page is a plain form that posts to its own URL and comes back with a message. With it, the
 * Save button goes away and every switch, time and day saves on change
 * (PUT /notifications/api/preferences/); the status line says "Saved", or why not. Saves run
 * one after the other, so the last change made is the one the server keeps. Changes made
 * elsewhere (another tab, another browser) arrive as the bell's `preferences` frame, which
 * bell.js re-dispatches as `notifications:frame` on document: the controls follow it.
 */
(function () {
  "use strict";

  var root = document.querySelector("[data-notification-preferences-page]");
  if (!root || root.hasAttribute("data-nprefs-ready")) return;
  var apiUrl = root.getAttribute("data-api-url");
  if (!apiUrl || !window.fetch || !window.AbortController) return; // the form posts instead
  root.setAttribute("data-nprefs-ready", "");

  var $ = function (sel) { return root.querySelector(sel); };
  var $$ = function (sel) { return Array.prototype.slice.call(root.querySelectorAll(sel)); };
  var form = $("[data-nprefs-form]");
  var saveButton = $("[data-nprefs-save]");
  var status = $("[data-nprefs-status]");
  var zoneLine = $("[data-nprefs-zone]");

  // A save that takes longer than this has failed as far as the user can tell; say so.
  var SAVE_DEADLINE = 10000;
  // "Saved" floats over the page's foot: long enough to be seen, then out of the way. (An
  // error stays until the next change.)
  var SAVED_SHOWN = 4000;

  function json(id, fallback) {
    var node = id && document.getElementById(id);
    if (!node) return fallback;
    try { return JSON.parse(node.textContent); } catch (e) { return fallback; }
  }
  var S = json(root.getAttribute("data-strings-id"), {});
  var saved = json(root.getAttribute("data-saved-id"), null); // the server's last word
  var pending = 0;                // saves on their way
  var queue = Promise.resolve();

  function t(key, params) {
    var text = typeof S[key] === "string" ? S[key] : key;
    return text.replace(/%\((\w+)\)s/g, function (m, name) {
      return params && name in params ? String(params[name]) : m;
    });
  }

  var sayTimer = null;
  var clearTimer = null;
  function say(text, kind) {
    root.setAttribute("data-nprefs-state", kind);
    status.className = "nprefs-status" + (kind ? " is-" + kind : "");
    window.clearTimeout(sayTimer);
    window.clearTimeout(clearTimer);
    // Cleared first, so "Saved" after "Saved" is announced again.
    status.textContent = "";
    sayTimer = window.setTimeout(function () {
      status.textContent = text;
      if (kind === "saved") {
        clearTimer = window.setTimeout(function () { status.textContent = ""; }, SAVED_SHOWN);
      }
    }, 30);
  }

  function csrfToken() {
    var field = form.querySelector("input[name=csrfmiddlewaretoken]");
    if (field && field.value) return field.value;
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  // ---- the controls <-> the API's shape ------------------------------------------------------

  function categoryBox(slug) {
    return $$("[data-nprefs-category]").filter(function (box) {
      return box.getAttribute("data-nprefs-category") === slug;
    })[0] || null;
  }

  function quietField(name) { return $('[data-nprefs-quiet-field="' + name + '"]'); }

  function quietValue() {
    return {
      enabled: quietField("enabled").checked,
      start: quietField("start").value.slice(0, 5),
      end: quietField("end").value.slice(0, 5),
      days: $$('[data-nprefs-quiet-field="day"]')
        .filter(function (box) { return box.checked; })
        .map(function (box) { return Number(box.value); })
    };
  }

  /* Show the server's preferences in the controls (after a save, a failure, another tab). */
  function show(prefs) {
    if (!prefs || typeof prefs !== "object") return;
    var categories = prefs.categories || {};
    Object.keys(categories).forEach(function (slug) {
      var box = categoryBox(slug);
      if (!box) return;
      var bell = box.querySelector('[data-nprefs-field="bell"]');
      var toasts = box.querySelector('[data-nprefs-field="toasts"]');
      if (bell && !bell.disabled) bell.checked = categories[slug].bell !== false;
      if (toasts) toasts.checked = categories[slug].toasts !== false;
    });
    var quiet = prefs.quiet_hours;
    if (quiet && typeof quiet === "object") {
      quietField("enabled").checked = !!quiet.enabled;
      ["start", "end"].forEach(function (name) {
        var input = quietField(name);
        // Never overwrite what the user is typing into.
        if (typeof quiet[name] === "string" && input !== document.activeElement) {
          input.value = quiet[name];
        }
      });
      var days = Array.isArray(quiet.days) ? quiet.days : [];
      $$('[data-nprefs-quiet-field="day"]').forEach(function (box) {
        box.checked = days.indexOf(Number(box.value)) >= 0;
      });
      if (quiet.time_zone && zoneLine) zoneLine.textContent = t("zone", { zone: quiet.time_zone });
    }
  }

  // ---- saving -------------------------------------------------------------------------------

  function put(change) {
    pending += 1;
    say(t("saving"), "saving");
    queue = queue.then(function () { return send(change); }).then(function () { pending -= 1; });
    return queue;
  }

  function send(change) {
    var controller = new AbortController();
    var timer = window.setTimeout(function () { controller.abort(); }, SAVE_DEADLINE);
    return fetch(apiUrl, {
      method: "PUT",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json",
                 "X-CSRFToken": csrfToken() },
      body: JSON.stringify(change),
      signal: controller.signal
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          var error = new Error((data && data.detail) || t("failed"));
          error.shown = !!(data && data.detail);
          throw error;
        }
        return data;
      });
    }).then(function (data) {
      saved = data;
      show(saved);
      if (pending <= 1) say(t("saved"), "saved");
    }, function (error) {
      // Not saved: the controls go back to what the server holds, and the line says why.
      show(saved);
      say(error && error.shown ? error.message : t("failed"), "error");
    }).then(function () { window.clearTimeout(timer); });
  }

  form.addEventListener("change", function (event) {
    var input = event.target;
    if (!input || !input.closest) return;
    var box = input.closest("[data-nprefs-category]");
    var field = input.getAttribute("data-nprefs-field");
    if (box && field) {
      var entry = {};
      entry[field] = input.checked;
      var categories = {};
      categories[box.getAttribute("data-nprefs-category")] = entry;
      put({ categories: categories });
      return;
    }
    if (input.closest("[data-nprefs-quiet]")) {
      var quiet = quietValue();
      if (!quiet.start || !quiet.end) {
        // A half-typed time: nothing to save yet.
        if (input.type === "time") { say(t("needTime"), "error"); return; }
        delete quiet.start;
        delete quiet.end;
      }
      put({ quiet_hours: quiet });
    }
  });

  // Enter in a time field submits the form: save the quiet hours rather than post the page.
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var quiet = quietValue();
    if (!quiet.start || !quiet.end) { say(t("needTime"), "error"); return; }
    put({ quiet_hours: quiet });
  });

  document.addEventListener("notifications:frame", function (event) {
    var frame = event.detail;
    // While a save is on its way its answer is the truth; a frame may be an older change's.
    if (!frame || frame.type !== "preferences" || pending) return;
    saved = frame.preferences || saved;
    show(saved);
  });

  saveButton.hidden = true;
  var error = $("[data-nprefs-error]");
  if (error) say(error.textContent, "error");
})();
