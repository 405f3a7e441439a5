// What the server-rendered pages share in the browser: the phone menu, one confirmation dialog for
// htmx's hx-confirm and for plain forms with data-confirm, copy buttons, and buttons that are
// aria-disabled (focusable, explained, but inert). No framework, no inline handlers (CSP), and
// every page works without it: this only adds to the HTML.
(function () {
  "use strict";
  var root = document.documentElement;
  root.classList.add("js");

  function announce(text) {
    var live = document.getElementById("live-status");
    if (!live) return;
    live.textContent = "";
    window.setTimeout(function () { live.textContent = text; }, 50);
  }

  // The confirmation dialog. Falls back to the browser's confirm() where <dialog> is missing.
  function confirmThen(question, proceed) {
    var dialog = document.getElementById("confirm-dialog");
    if (!dialog || typeof dialog.showModal !== "function") {
      if (window.confirm(question)) proceed();
      return;
    }
    dialog.querySelector("#confirm-dialog-message").textContent = question;
    dialog.returnValue = "";
    var opener = document.activeElement;
    dialog.addEventListener("close", function onClose() {
      dialog.removeEventListener("close", onClose);
      if (opener && typeof opener.focus === "function") opener.focus();
      if (dialog.returnValue === "ok") proceed();
    });
    dialog.showModal();
  }

  document.addEventListener("htmx:confirm", function (event) {
    var question = event.detail.question;
    if (!question) return;
    event.preventDefault();
    confirmThen(question, function () { event.detail.issueRequest(true); });
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (event.defaultPrevented || !form.hasAttribute("data-confirm") || form.dataset.confirmed) return;
    event.preventDefault();
    var submitter = event.submitter;
    confirmThen(form.getAttribute("data-confirm"), function () {
      form.dataset.confirmed = "1";
      if (typeof form.requestSubmit === "function") form.requestSubmit(submitter || undefined);
      else form.submit();
      delete form.dataset.confirmed;
    });
  });

  // aria-disabled buttons stay focusable so their reason can be read; they must not act.
  document.addEventListener("click", function (event) {
    var inert = event.target.closest && event.target.closest('[aria-disabled="true"]');
    if (inert) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    // Plain http on the intranet has no Clipboard API: the old way still works there.
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "sr-only";
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(area);
      if (ok) resolve(); else reject(new Error("copy failed"));
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy]");
    if (!button) return;
    var messages = document.body.dataset;
    copyText(button.getAttribute("data-copy")).then(
      function () { announce(messages.msgCopied || "Copied"); button.classList.add("copied"); },
      function () { announce(messages.msgCopyFailed || "Copy failed"); }
    );
  });

  // A row's "Actions" menu ([data-menu-toggle]): a link to the record's page (without JavaScript)
  // that htmx makes fetch the actions into the element it controls. Here it becomes a disclosure
  // button: Space or Enter opens it, pressing it again or Escape closes it (each opening asks the
  // server again, so the reasons shown are today's), and aria-expanded says which.
  function toggles(root) {
    return root.querySelectorAll ? root.querySelectorAll("[data-menu-toggle]") : [];
  }

  function menuOf(toggle) {
    return document.getElementById(toggle.getAttribute("aria-controls"));
  }

  function closeMenu(toggle) {
    var menu = menuOf(toggle);
    if (menu) menu.replaceChildren();
    toggle.setAttribute("aria-expanded", "false");
  }

  document.addEventListener("htmx:load", function (event) {
    var found = toggles(event.detail.elt);
    for (var i = 0; i < found.length; i++) {
      found[i].setAttribute("role", "button");
      if (!found[i].hasAttribute("aria-expanded")) found[i].setAttribute("aria-expanded", "false");
    }
  });

  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (event.key === " " && target.hasAttribute && target.hasAttribute("data-menu-toggle")) {
      event.preventDefault();  // a button answers Space; a link would scroll the page
      target.click();
      return;
    }
    if (event.key !== "Escape" || !target.closest) return;
    var cell = target.closest("td, li");
    var toggle = cell && cell.querySelector('[data-menu-toggle][aria-expanded="true"]');
    if (toggle && !document.querySelector("dialog[open]")) {
      closeMenu(toggle);
      toggle.focus();
    }
  });

  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    if (elt.hasAttribute("data-menu-toggle") && elt.getAttribute("aria-expanded") === "true") {
      event.preventDefault();  // pressed again: close, nothing to fetch
      closeMenu(elt);
      return;
    }
    // A self-refreshing part (hx-trigger "every ...") waits while one of its menus is open or the
    // confirmation dialog asks: its swap would take the menu, or the form being confirmed, away
    // from under the user. It refreshes again at the next tick after the menu is closed.
    var polling = /^\s*every\s/.test(elt.getAttribute("hx-trigger") || "");
    if (polling && (elt.querySelector('[data-menu-toggle][aria-expanded="true"]') || document.querySelector("dialog[open]"))) {
      event.preventDefault();
    }
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    var elt = event.detail.elt;
    if (elt.hasAttribute && elt.hasAttribute("data-menu-toggle") && event.detail.successful) {
      elt.setAttribute("aria-expanded", "true");
    }
  });

  // A row replaced by the answer to one of its menu's buttons: the focus, which was on that button,
  // goes to the new row's menu control instead of falling back to the top of the page.
  document.addEventListener("htmx:afterSettle", function (event) {
    var elt = event.target;  // the new row (detail.elt is the form that asked, now gone)
    if (document.activeElement && document.activeElement !== document.body) return;
    var toggle = elt && elt.matches && elt.matches("tr") ? elt.querySelector("[data-menu-toggle]") : null;
    if (toggle) toggle.focus();
  });

  // The phone menu: the navigation is shown until this script runs, then folds behind a button.
  document.addEventListener("DOMContentLoaded", function () {
    var toggle = document.querySelector(".nav-toggle");
    var nav = document.getElementById("site-nav");
    if (!toggle || !nav) return;
    toggle.addEventListener("click", function () {
      var open = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
      nav.classList.toggle("open", open);
    });
  });
})();
