/* The compose form: show only the target field the audience needs, and keep the preview in
   step with what is typed. Text goes in with textContent only. No dependencies. */
(function () {
  "use strict";

  var LEVELS = ["info", "success", "warning", "error"];

  function init() {
    var preview = document.querySelector("[data-notification-preview]");
    var form = preview && preview.closest("form");
    if (!form) return;

    var titleOut = preview.querySelector("[data-preview-title]");
    var bodyOut = preview.querySelector("[data-preview-body]");
    var levelOut = preview.querySelector("[data-preview-level]");
    var item = preview.querySelector("[data-preview-item]");
    var urlOut = preview.querySelector("[data-preview-url]");
    var urlText = preview.querySelector("[data-preview-url-text]");
    var audienceOut = preview.querySelector("[data-preview-audience]");

    function field(name) {
      return form.elements.namedItem(name);
    }

    function checked(name) {
      var input = form.querySelector('input[name="' + name + '"]:checked');
      if (input) return input;
      var select = field(name);
      return select && select.tagName === "SELECT" ? select : null;
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

    function setLevel(level) {
      if (LEVELS.indexOf(level) === -1) return;
      LEVELS.forEach(function (name) {
        item.classList.toggle("nadmin-level-" + name, name === level);
        levelOut.classList.toggle("nadmin-level-" + name, name === level);
      });
    }

    function toggleTargets(audience) {
      [["recipient", "user"], ["group", "group"]].forEach(function (pair) {
        var row = form.querySelector(".form-row.field-" + pair[0]);
        // Only rows with an input: read-only rows of a sent notification stay as they are.
        if (row && field(pair[0])) row.hidden = audience !== pair[1];
      });
    }

    function update() {
      var title = field("title");
      if (title) titleOut.textContent = title.value.trim() || preview.dataset.emptyTitle;
      var body = field("body");
      if (body) {
        var first = body.value.trim().split(/\r?\n/)[0] || "";
        bodyOut.textContent = first;
        bodyOut.hidden = !first;
      }
      var url = field("url");
      if (url) {
        urlText.textContent = url.value.trim();
        urlOut.hidden = !url.value.trim();
      }
      var level = checked("level");
      if (level) {
        setLevel(level.value);
        levelOut.textContent = labelOf(level);
      }
      var audience = checked("audience");
      if (audience) {
        toggleTargets(audience.value);
        var text = labelOf(audience);
        var target = audience.value === "user" ? labelOf(field("recipient"))
          : audience.value === "group" ? labelOf(field("group")) : "";
        audienceOut.textContent = target ? text + ": " + target : text;
      }
    }

    form.addEventListener("input", update);
    form.addEventListener("change", update);
    // The recipient autocomplete (select2) announces changes through jQuery only.
    if (window.django && window.django.jQuery) {
      window.django.jQuery(form).on("change", "select", update);
    }
    update();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
