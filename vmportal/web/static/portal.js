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
