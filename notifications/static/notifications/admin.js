/* The compose form: show only the target field the audience needs, keep the preview in step
   with what is typed (drawn by the bell's own NotificationBell.renderItem when bell.js offers
   it, else by a likeness in the page), and say how many people the audience reaches.
   Text goes in with textContent only. No dependencies. */
(function () {
  "use strict";

  var LEVELS = ["info", "success", "warning", "error"];
  // Typing in the recipient's id asks once the typing pauses, not per key.
  var REACH_DELAY = 250;

  function init() {
    var preview = document.querySelector("[data-notification-preview]");
    var reach = document.querySelector("[data-audience-reach]");
    var form = (preview || reach) && (preview || reach).closest("form");
    if (!form) return;

    function field(name) {
      return form.elements.namedItem(name);
    }

    function checked(name) {
      var input = form.querySelector('input[name="' + name + '"]:checked');
      if (input) return input;
      var select = field(name);
      return select && select.tagName === "SELECT" ? select : null;
    }

    function value(name) {
      var input = checked(name) || field(name);
      return input && typeof input.value === "string" ? input.value.trim() : "";
    }

    function labelOf(input) {
      if (!input) return "";
      if (input.tagName === "SELECT") {
        var option = input.options[input.selectedIndex];
        return option && option.value ? option.text.trim() : "";
      }
      // A radio's label is its parent; a text input (the recipient's id when the site has no
      // searchable user admin) is named by what was typed.
      if (input.type === "text" || input.type === "number") return input.value.trim();
      return input.parentElement ? input.parentElement.textContent.trim() : input.value;
    }

    function toggleTargets(audience) {
      [["recipient", "user"], ["group", "group"]].forEach(function (pair) {
        var row = form.querySelector(".form-row.field-" + pair[0]);
        // Only rows with an input: read-only rows of a sent notification stay as they are.
        if (row && field(pair[0])) row.hidden = audience !== pair[1];
      });
    }

    var previewUpdate = preview ? makePreview(preview, field, checked, labelOf) : function () {};
    var reachUpdate = reach ? makeReach(reach, value) : function () {};

    function update() {
      var audience = checked("audience");
      if (audience) toggleTargets(audience.value);
      previewUpdate();
      reachUpdate();
    }

    form.addEventListener("input", update);
    form.addEventListener("change", update);
    // The recipient autocomplete (select2) announces changes through jQuery only.
    if (window.django && window.django.jQuery) {
      window.django.jQuery(form).on("change", "select", update);
    }
    update();
  }

  // ---- the preview ------------------------------------------------------------------------

  function makePreview(preview, field, checked, labelOf) {
    var bell = window.NotificationBell;
    var canRender = !!(bell && typeof bell.renderItem === "function");
    var canToast = !!(bell && typeof bell.renderToast === "function");
    var bellBox = preview.querySelector("[data-preview-bell]");
    var bellList = preview.querySelector("[data-preview-bell-list]");
    var likeness = preview.querySelector("[data-preview-item]");
    var toastBox = preview.querySelector("[data-preview-toast-box]");
    var toastOut = preview.querySelector("[data-preview-toast]");
    var titleOut = preview.querySelector("[data-preview-title]");
    var bodyOut = preview.querySelector("[data-preview-body]");
    var levelOut = preview.querySelector("[data-preview-level]");
    var urlOut = preview.querySelector("[data-preview-url]");
    var urlText = preview.querySelector("[data-preview-url-text]");
    var audienceOut = preview.querySelector("[data-preview-audience]");
    var labelsNode = document.getElementById("nadmin-level-labels");
    var levelLabels = labelsNode ? JSON.parse(labelsNode.textContent) : {};

    // A preview is a picture: its link must neither navigate nor mark anything read.
    function inert(node) {
      Array.prototype.forEach.call(node.querySelectorAll("a, button"), function (el) {
        el.setAttribute("tabindex", "-1");
        el.addEventListener("click", function (event) { event.preventDefault(); event.stopPropagation(); }, true);
      });
      node.addEventListener("click", function (event) { event.preventDefault(); }, true);
      return node;
    }

    function text(name) {
      var input = field(name);
      return input && typeof input.value === "string" ? input.value : "";
    }

    function moment() {
      // A scheduled one shows at its publish time; otherwise "now".
      var date = text("publish_at_0").trim();
      var time = text("publish_at_1").trim();
      if (date && time) {
        var parsed = new Date(date + "T" + (time.length === 5 ? time + ":00" : time));
        if (!isNaN(parsed.getTime())) return parsed.toISOString();
      }
      return new Date().toISOString();
    }

    function notification() {
      var level = checked("level");
      var at = moment();
      return {
        id: 0,
        title: text("title").trim() || preview.dataset.emptyTitle,
        body: text("body"),
        level: level && LEVELS.indexOf(level.value) !== -1 ? level.value : "info",
        url: text("url").trim(),
        created_at: at,
        dispatched_at: at,
        read: false,
        archived: false,
        snoozed_until: null
      };
    }

    function drawWithBell(n) {
      try {
        var row = bell.renderItem(n);
        if (!row || !row.nodeType) return false;
        bellList.textContent = "";
        bellList.appendChild(inert(row));
        bellBox.hidden = false;
        likeness.hidden = true;
        if (canToast) {
          var toast = bell.renderToast(n);
          toastOut.textContent = "";
          if (toast && toast.nodeType) {
            toastOut.appendChild(inert(toast));
            toastBox.hidden = false;
          }
        }
        return true;
      } catch (error) {
        // A bell.js of another version: fall back to the likeness rather than show nothing.
        if (window.console) window.console.warn("notifications admin preview:", error);
        canRender = false;
        bellBox.hidden = true;
        likeness.hidden = false;
        return false;
      }
    }

    function drawLikeness(n) {
      titleOut.textContent = n.title;
      var first = n.body.trim().split(/\r?\n/)[0] || "";
      bodyOut.textContent = first;
      bodyOut.hidden = !first;
      urlText.textContent = n.url;
      urlOut.hidden = !n.url;
      LEVELS.forEach(function (name) {
        likeness.classList.toggle("nadmin-level-" + name, name === n.level);
        levelOut.classList.toggle("nadmin-level-" + name, name === n.level);
      });
      levelOut.textContent = levelLabels[n.level] || n.level;
    }

    return function update() {
      var n = notification();
      drawLikeness(n);
      if (canRender) drawWithBell(n);
      var audience = checked("audience");
      if (audience && audienceOut) {
        var label = labelOf(audience);
        var target = audience.value === "user" ? labelOf(field("recipient"))
          : audience.value === "group" ? labelOf(field("group")) : "";
        audienceOut.textContent = target ? label + ": " + target : label;
      }
    };
  }

  // ---- the audience's size ----------------------------------------------------------------

  function makeReach(reach, value) {
    var out = reach.querySelector("[data-audience-reach-text]");
    var confirmNote = reach.querySelector("[data-audience-reach-confirm]");
    var url = reach.getAttribute("data-url");
    var last = null;
    var timer = null;
    var controller = null;

    function ask(query) {
      if (controller) controller.abort();
      controller = typeof AbortController === "function" ? new AbortController() : null;
      reach.setAttribute("aria-busy", "true");
      fetch(url + "?" + query, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
        signal: controller ? controller.signal : undefined
      })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (data) {
          if (!data || query !== last) return;
          out.textContent = data.text;
          confirmNote.hidden = !data.confirm;
          reach.setAttribute("data-count", data.count === null ? "" : String(data.count));
          reach.removeAttribute("aria-busy");
        })
        .catch(function () { /* aborted or offline: the next change asks again */ });
    }

    return function update() {
      var params = new URLSearchParams();
      var audience = value("audience");
      params.set("audience", audience);
      if (audience === "user") params.set("recipient", value("recipient"));
      if (audience === "group") params.set("group", value("group"));
      var query = params.toString();
      if (query === last) return;
      last = query;
      clearTimeout(timer);
      timer = setTimeout(function () { ask(query); }, REACH_DELAY);
    };
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
