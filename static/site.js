/* Site chrome: the user menu (<details>) closes on Escape and on a click elsewhere. */
(function () {
  "use strict";
  var menus = document.querySelectorAll("[data-user-menu]");
  if (!menus.length) return;
  document.addEventListener("click", function (event) {
    Array.prototype.forEach.call(menus, function (menu) {
      if (menu.open && !menu.contains(event.target)) menu.open = false;
    });
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    Array.prototype.forEach.call(menus, function (menu) {
      if (!menu.open) return;
      menu.open = false;
      menu.querySelector("summary").focus();
    });
  });
})();
