// Archer portal: small enhancements over pages that work without JavaScript.
// - Conditional form fields: an element with data-show-when="field=value" (or "field" for
//   "when it has a value") is shown, and its inputs enabled, only while that holds. Hidden
//   inputs are disabled, so they are not sent.
// - SLA countdowns: <time data-countdown data-remaining="SECONDS" data-running="true|false">
//   counts down each second while its clock runs; a paused clock stands still. The page's SLA
//   section comes again from the server every minute (htmx), so a clock that pauses, or leaves
//   its calendar's working hours, meanwhile shows so.
(function () {
  "use strict";

  function valueOf(form, name) {
    var els = form.querySelectorAll('[name="' + name + '"]');
    for (var i = 0; i < els.length; i++) {
      var el = els[i];
      if (el.type === "checkbox") {
        if (el.checked) return el.value;
        continue;
      }
      if (el.type === "radio") {
        if (el.checked) return el.value;
        continue;
      }
      return el.value;
    }
    return "";
  }

  function applyConditions(form) {
    var blocks = form.querySelectorAll("[data-show-when]");
    for (var i = 0; i < blocks.length; i++) {
      var block = blocks[i];
      var rule = block.getAttribute("data-show-when");
      var eq = rule.indexOf("=");
      var shown;
      if (eq < 0) {
        shown = valueOf(form, rule) !== "";
      } else {
        var wanted = rule.slice(eq + 1).split("|");
        shown = wanted.indexOf(valueOf(form, rule.slice(0, eq))) >= 0;
      }
      block.hidden = !shown;
      var inputs = block.querySelectorAll("input, select, textarea");
      for (var j = 0; j < inputs.length; j++) inputs[j].disabled = !shown;
    }
  }

  function setUpForms(root) {
    var forms = root.querySelectorAll("form[data-conditional]");
    for (var i = 0; i < forms.length; i++) {
      (function (form) {
        applyConditions(form);
        form.addEventListener("change", function () { applyConditions(form); });
        form.addEventListener("input", function () { applyConditions(form); });
      })(forms[i]);
    }
  }

  function format(seconds) {
    var neg = seconds < 0;
    var s = Math.abs(seconds);
    var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    var out = d > 0 ? d + "d " + h + "h " + m + "m" : h > 0 ? h + "h " + m + "m " + r + "s" : m + "m " + r + "s";
    return neg ? "overdue by " + out : out + " left";
  }

  // Each countdown counts from when it was rendered (a swapped-in one from its own arrival).
  function tick() {
    var clocks = document.querySelectorAll("[data-countdown]");
    var now = Date.now();
    for (var i = 0; i < clocks.length; i++) {
      var c = clocks[i];
      if (c.archerSince === undefined) c.archerSince = now;
      var remaining = parseInt(c.getAttribute("data-remaining"), 10);
      if (isNaN(remaining)) continue;
      if (c.getAttribute("data-running") === "true") remaining -= Math.floor((now - c.archerSince) / 1000);
      c.textContent = format(remaining) + (c.getAttribute("data-running") === "true" ? "" : " (paused)");
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    setUpForms(document);
    tick();
    window.setInterval(tick, 1000);
  });
  document.addEventListener("htmx:afterSwap", function (e) {
    setUpForms(e.target);
    tick();
  });
})();
