/* gridwatch operations console: one page, no framework, no build step.
 *
 * Routes: "/" is the alert board, "/alerts/{id}" one alert (history.pushState, so the back button works).
 * Data: the JSON API of `gridwatch console` and its Server-Sent Events at /api/events, which keep the
 * board, the open alert, the feedback and the silences current without a reload.
 * Every element is built with the DOM API and textContent (never innerHTML from data), and nothing sets a
 * style attribute: the Content-Security-Policy allows only this script and console.css.
 */
(function () {
  "use strict";

  var KNOWN_KINDS = [];  // the declared kinds, from /api/kinds (gridwatch/kinds.py)
  var STATUSES = ["open", "acknowledged", "resolved"];
  var FILTERS = ["kind", "severity", "status", "feeder", "transformer"];
  var ALERT_LIMIT = 10000;     // the most the API gives in one list
  var MAX_ROWS = 500;          // rows drawn at once; narrower filters show the rest
  var FLASH_MS = 2500;         // how long a changed row stays highlighted
  var FEEDBACK_SHOWN = 50;
  var FIGURES_EVERY_MS = 15000;

  var state = {
    me: null,
    csrf: null,
    canAct: false,
    alerts: new Map(),         // alert_id -> summary
    rowCache: new Map(),       // alert_id -> {alert, tr}
    flashing: new Map(),       // alert_id -> time the change arrived
    truncated: false,
    filters: {kind: "", severity: "", status: "", feeder: "", transformer: ""},
    detailId: null,
    detail: null,
    feedback: [],
    silences: [],
    loadingAlerts: false,
    alertsLoaded: false,       // the board stays blank (not "0 alerts") until the first list arrives
    buffered: [],              // live alert events that arrived while the list was loading
    source: null,
    streamWasDown: false,
    ended: false,
    timers: {}
  };

  // ------------------------------------------------------------------------------------------ helpers

  function $(id) { return document.getElementById(id); }

  /** h("td", {class: "num", "data-testid": "x"}, child, "text", [more]) -> element. */
  function h(tag, attrs) {
    var el = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (name) {
        var value = attrs[name];
        if (value === null || value === undefined || value === false) { return; }
        if (name === "class") { el.className = value; }
        else if (name === "text") { el.textContent = value; }
        else if (value === true) { el.setAttribute(name, ""); }
        else { el.setAttribute(name, String(value)); }
      });
    }
    for (var i = 2; i < arguments.length; i++) { append(el, arguments[i]); }
    return el;
  }

  function append(el, child) {
    if (child === null || child === undefined || child === false) { return; }
    if (Array.isArray(child)) { child.forEach(function (c) { append(el, c); }); return; }
    el.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
  }

  function later(key, ms, fn) {
    if (state.timers[key]) { return; }
    state.timers[key] = setTimeout(function () {
      delete state.timers[key];
      fn();
    }, ms);
  }

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  /** RFC 3339 -> "2026-07-01 08:05:03 UTC" (operators compare times across sites: one clock). */
  function fmtTime(iso) {
    if (!iso) { return "—"; }
    var d = new Date(iso);
    if (isNaN(d.getTime())) { return String(iso); }
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " +
      pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds()) + " UTC";
  }

  function timeEl(iso) {
    return h("time", {datetime: iso || null, title: iso || null, text: fmtTime(iso)});
  }

  /** The board's two-line form: the time of day, and the date above it in small print. */
  function timeCell(iso) {
    var d = iso ? new Date(iso) : null;
    if (!d || isNaN(d.getTime())) { return timeEl(iso); }
    return h("time", {datetime: iso, title: fmtTime(iso), class: "stacked"},
      h("span", {class: "t-date", text: d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate())}),
      " ",
      h("span", {class: "t-time", text: pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds())}));
  }

  function fmtSeconds(s) {
    if (s === null || s === undefined || isNaN(s)) { return "—"; }
    if (s < 60) { return (Math.round(s * 10) / 10) + " s"; }
    if (s < 3600) { return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s"; }
    var hours = Math.floor(s / 3600);
    if (hours < 48) { return hours + " h " + Math.round((s % 3600) / 60) + " min"; }
    return (Math.round(s / 8640) / 10) + " days";
  }

  function fmtPercent(rate) {
    if (rate === null || rate === undefined) { return "—"; }
    return (Math.round(rate * 1000) / 10) + " %";
  }

  var timeCache = new Map();
  function epoch(iso) {
    if (!iso) { return 0; }
    var t = timeCache.get(iso);
    if (t === undefined) {
      t = Date.parse(iso);
      if (isNaN(t)) { t = 0; }
      if (timeCache.size > 50000) { timeCache.clear(); }
      timeCache.set(iso, t);
    }
    return t;
  }

  function badge(what, value) {
    var v = value || "unknown";
    return h("span", {class: "badge badge-" + what + " " + what + "-" + v.replace(/[^a-z_]/gi, ""),
      "data-testid": what + "-badge", text: v});
  }

  function scopeText(scope) {
    if (!scope) { return "—"; }
    return (scope.level || "?") + " " + (scope.id || "?");
  }

  function alertPath(id) { return "/alerts/" + encodeURIComponent(id); }
  function apiAlertPath(id) { return "/api/alerts/" + encodeURIComponent(id); }

  function kindLabel(kind) { return String(kind || "alert").replace(/_/g, " "); }

  // ----------------------------------------------------------------------------------------------- API

  function api(path, options) {
    options = options || {};
    var init = {method: options.method || "GET", credentials: "same-origin", headers: {"Accept": "application/json"}};
    if (init.method !== "GET") {
      init.headers["Content-Type"] = "application/json";
      init.headers["X-CSRF-Token"] = state.csrf || "";
      init.body = JSON.stringify(options.body || {});
    }
    return fetch(path, init).then(function (response) {
      return response.text().then(function (text) {
        var data = {};
        if (text) {
          try { data = JSON.parse(text); } catch (e) { data = {error: text.slice(0, 200)}; }
        }
        if (response.status === 401) { sessionEnded(); }
        return {ok: response.ok, status: response.status, data: data};
      });
    }, function () {
      return {ok: false, status: 0, data: {error: "the console cannot be reached"}};
    });
  }

  function showBanner(message, link) {
    var banner = $("banner");
    banner.replaceChildren(h("span", {text: message}));
    if (link) { append(banner, [" ", h("a", {href: link.href, text: link.text})]); }
    banner.hidden = false;
  }

  function hideBanner() { $("banner").hidden = true; }

  function sessionEnded() {
    if (state.ended) { return; }
    state.ended = true;
    if (state.source) { state.source.close(); state.source = null; }
    setLive("closed", "Signed out");
    showBanner("Your session has ended.", {href: "/login?next=" + encodeURIComponent(location.pathname),
      text: "Sign in again"});
  }

  // ------------------------------------------------------------------------------------------ header

  function renderMe() {
    $("user-name").textContent = state.me.user;
    var role = $("user-role");
    role.textContent = state.me.role;
    role.className = "role-badge role-" + state.me.role;
    document.body.setAttribute("data-role", state.me.role);
    if (!state.canAct) {
      var actions = $("detail-actions");
      if (actions) { actions.remove(); }
      $("viewer-note").hidden = false;
    }
  }

  function signOut() {
    api("/logout", {method: "POST"}).then(function () {
      state.ended = true;
      if (state.source) { state.source.close(); }
      location.assign("/");
    });
  }

  function setLive(which, text) {
    var el = $("live-status");
    el.setAttribute("data-state", which);
    el.textContent = text;
  }

  // ------------------------------------------------------------------------------------------- board

  function loadAlerts() {
    state.loadingAlerts = true;
    state.buffered = [];
    return api("/api/alerts?limit=" + ALERT_LIMIT).then(function (res) {
      state.loadingAlerts = false;
      if (!res.ok) {
        if (res.status !== 401) { showBanner("Could not load the alerts: " + (res.data.error || res.status)); }
        return;
      }
      var map = new Map();
      (res.data.alerts || []).forEach(function (a) { map.set(a.alert_id, a); });
      state.alerts = map;
      state.alertsLoaded = true;
      state.truncated = (res.data.alerts || []).length >= ALERT_LIMIT;
      var pending = state.buffered;
      state.buffered = [];
      pending.forEach(function (summary) { applyAlert(summary, true); });
      refreshKindOptions();
      renderBoard();
    });
  }

  function loadKinds() {
    return api("/api/kinds").then(function (res) {
      if (!res.ok) { return; }
      KNOWN_KINDS = res.data.kinds.map(function (k) { return k.name; });
      refreshKindOptions();
    });
  }

  function refreshKindOptions() {
    var select = $("filter-kind");
    var have = new Set();
    Array.prototype.forEach.call(select.options, function (o) { if (o.value) { have.add(o.value); } });
    var kinds = new Set(KNOWN_KINDS);
    state.alerts.forEach(function (a) { if (a.kind) { kinds.add(a.kind); } });
    if (state.filters.kind) { kinds.add(state.filters.kind); }
    var missing = Array.from(kinds).filter(function (k) { return !have.has(k); });
    if (!missing.length) { return; }
    var all = Array.from(new Set(Array.from(have).concat(missing))).sort();
    var current = select.value || state.filters.kind;
    select.replaceChildren(h("option", {value: "", text: "Any kind"}));
    all.forEach(function (k) { select.appendChild(h("option", {value: k, text: kindLabel(k)})); });
    select.value = current;
  }

  function norm(text) { return String(text || "").trim().toLowerCase(); }

  function matches(a, ignoreStatus) {
    var f = state.filters;
    if (f.kind && a.kind !== f.kind) { return false; }
    if (f.severity && a.severity !== f.severity) { return false; }
    if (!ignoreStatus && f.status && a.status !== f.status) { return false; }
    if (f.feeder) {
      var feeder = norm(a.feeder_id) || (a.scope && a.scope.level === "feeder" ? norm(a.scope.id) : "");
      if (feeder.indexOf(norm(f.feeder)) < 0) { return false; }
    }
    if (f.transformer) {
      var want = norm(f.transformer);
      var ids = (a.transformer_ids || []).slice();
      if (a.scope && a.scope.level === "transformer") { ids.push(a.scope.id); }
      if (!ids.some(function (t) { return norm(t).indexOf(want) >= 0; })) { return false; }
    }
    return true;
  }

  function compareAlerts(a, b) {
    return (epoch(b.detected_at) - epoch(a.detected_at)) || (epoch(b.updated_at) - epoch(a.updated_at)) ||
      (a.alert_id < b.alert_id ? 1 : a.alert_id > b.alert_id ? -1 : 0);
  }

  function rowFor(a) {
    var cached = state.rowCache.get(a.alert_id);
    if (cached && cached.alert === a) { return cached.tr; }
    var flashed = state.flashing.has(a.alert_id);
    var transformers = (a.transformer_ids || []).join(", ");
    var tr = h("tr", {class: "alert-row" + (flashed ? " changed" : ""), tabindex: "0",
        "data-alert-id": a.alert_id, "data-status": a.status, "data-severity": a.severity,
        "data-testid": "alert-row"},
      h("td", null, badge("severity", a.severity)),
      h("td", null, badge("status", a.status)),
      h("td", {class: "alert-cell"},
        h("a", {href: alertPath(a.alert_id), "data-route": "", class: "alert-link", text: kindLabel(a.kind)}),
        h("span", {class: "alert-id", text: a.alert_id})),
      h("td", {text: scopeText(a.scope)}),
      h("td", {text: a.feeder_id || "—"}),
      h("td", {text: transformers || "—"}),
      h("td", {class: "num", text: a.n_meters === undefined ? "—" : a.n_meters}),
      h("td", {class: "num", text: a.n_customers === undefined ? "—" : a.n_customers}),
      h("td", null, timeCell(a.detected_at)),
      h("td", null, timeCell(a.updated_at)));
    state.rowCache.set(a.alert_id, {alert: a, tr: tr});
    return tr;
  }

  function renderBoard() {
    later("board", 30, drawBoard);
  }

  function drawBoard() {
    if (!state.alertsLoaded) { return; }
    var counts = {open: 0, acknowledged: 0, resolved: 0};
    var shown = [];
    state.alerts.forEach(function (a) {
      if (!matches(a, true)) { return; }
      if (counts[a.status] !== undefined) { counts[a.status] += 1; }
      if (matches(a, false)) { shown.push(a); }
    });
    STATUSES.forEach(function (s) { $("count-" + s).textContent = String(counts[s]); });
    shown.sort(compareAlerts);
    var rows = shown.slice(0, MAX_ROWS).map(rowFor);
    $("board-rows").replaceChildren.apply($("board-rows"), rows);
    $("board-empty").hidden = shown.length > 0;
    var total = state.alerts.size;
    var text = shown.length === total ? total + (total === 1 ? " alert" : " alerts")
      : shown.length + " of " + total + " alerts match the filters";
    if (shown.length > MAX_ROWS) { text += "; the newest " + MAX_ROWS + " are listed, narrow the filters for the rest"; }
    if (state.truncated) { text += " (the console holds more than the " + ALERT_LIMIT + " newest shown here)"; }
    $("board-summary").textContent = text + ".";
    // forget rows of alerts that are gone
    if (state.rowCache.size > state.alerts.size + 100) {
      state.rowCache.forEach(function (_, id) { if (!state.alerts.has(id)) { state.rowCache.delete(id); } });
    }
  }

  function applyAlert(summary, quiet) {
    if (!summary || !summary.alert_id) { return; }
    var id = summary.alert_id;
    if (summary.deleted) {
      state.alerts.delete(id);
      state.rowCache.delete(id);
    } else {
      state.alerts.set(id, summary);
      if (!quiet) { flash(id); }
      if (summary.kind && !KNOWN_KINDS.includes(summary.kind)) { refreshKindOptions(); }
    }
  }

  function flash(id) {
    var at = Date.now();
    state.flashing.set(id, at);
    setTimeout(function () {
      if (state.flashing.get(id) !== at) { return; }
      state.flashing.delete(id);
      var cached = state.rowCache.get(id);
      if (cached) { cached.tr.classList.remove("changed"); }
    }, FLASH_MS);
  }

  // -------------------------------------------------------------------------------------- filters

  function readFiltersFromUrl() {
    var params = new URLSearchParams(location.search);
    FILTERS.forEach(function (name) {
      state.filters[name] = params.get(name) || "";
    });
    refreshKindOptions();
    FILTERS.forEach(function (name) { $("filter-" + name).value = state.filters[name]; });
  }

  function filtersChanged() {
    FILTERS.forEach(function (name) { state.filters[name] = $("filter-" + name).value.trim(); });
    if (!state.detailId) {
      var params = new URLSearchParams();
      FILTERS.forEach(function (name) { if (state.filters[name]) { params.set(name, state.filters[name]); } });
      var query = params.toString();
      history.replaceState(history.state, "", "/" + (query ? "?" + query : ""));
    }
    renderBoard();
  }

  // -------------------------------------------------------------------------------------- routing

  function navigate(path) {
    history.pushState({}, "", path);
    route();
  }

  function route() {
    var path = location.pathname;
    if (path.indexOf("/alerts/") === 0 && path.length > "/alerts/".length) {
      var id;
      try { id = decodeURIComponent(path.slice("/alerts/".length)); } catch (e) { id = path.slice(8); }
      showDetail(id);
    } else {
      showBoard();
    }
  }

  function showBoard() {
    state.detailId = null;
    state.detail = null;
    $("detail-view").hidden = true;
    $("board-view").hidden = false;
    document.title = "Alerts · gridwatch console";
    readFiltersFromUrl();
    renderBoard();
  }

  function showDetail(id) {
    var changed = state.detailId !== id;
    state.detailId = id;
    $("board-view").hidden = true;
    $("detail-view").hidden = false;
    if (changed) {
      state.detail = null;
      resetActions();
      $("detail-title").textContent = kindLabel((state.alerts.get(id) || {}).kind) + " · loading…";
      ["detail-facts", "detail-evidence", "detail-timeline", "detail-customers", "detail-feedback"]
        .forEach(function (el) { $(el).replaceChildren(); });
      window.scrollTo(0, 0);
    }
    document.title = "Alert " + id + " · gridwatch console";
    loadDetail();
  }

  // --------------------------------------------------------------------------------------- detail

  function loadDetail() {
    var id = state.detailId;
    if (!id) { return Promise.resolve(); }
    return api(apiAlertPath(id)).then(function (res) {
      if (id !== state.detailId) { return; }
      if (res.status === 404) {
        $("detail-body").hidden = true;
        $("detail-missing").hidden = false;
        $("detail-missing").textContent = "The console knows no alert " + id + ". It may not have arrived yet; " +
          "this page shows it as soon as it does.";
        $("detail-title").textContent = "Alert not found";
        return;
      }
      if (!res.ok) {
        if (res.status !== 401) { showBanner("Could not load alert " + id + ": " + (res.data.error || res.status)); }
        return;
      }
      $("detail-body").hidden = false;
      $("detail-missing").hidden = true;
      state.detail = res.data;
      renderDetail(res.data);
    });
  }

  function refreshDetailSoon() {
    later("detail", 250, loadDetail);
  }

  function renderDetail(d) {
    var a = d.alert || {};
    var summary = d.summary || state.alerts.get(a.alert_id) || {};
    var title = $("detail-title");
    title.textContent = kindLabel(a.kind) + " · " + scopeText(a.scope);
    var head = $("detail-head");
    head.replaceChildren(title, h("p", {class: "badges", "data-testid": "detail-badges"},
      badge("severity", a.severity), " ", badge("status", a.status),
      a.no_fault ? [" ", h("span", {class: "badge badge-nofault", text: "no fault"})] : null));

    renderFacts(a, summary);
    renderActions(a, summary);
    renderEvidence(d, a, summary);
    renderTimeline(d.timeline || []);
    renderCustomers(d.customers || []);
    renderFeedbackOf(d.feedback || []);
  }

  function fact(dl, term, value) {
    if (value === null || value === undefined || value === "") { return; }
    dl.appendChild(h("dt", {text: term}));
    dl.appendChild(h("dd", null, value));
  }

  function renderFacts(a, summary) {
    var dl = $("detail-facts");
    dl.replaceChildren();
    fact(dl, "Alert id", h("code", {text: a.alert_id}));
    fact(dl, "Scope", scopeText(a.scope));
    fact(dl, "Feeder", summary.feeder_id || "—");
    fact(dl, "Transformers", (summary.transformer_ids || []).join(", ") || "—");
    fact(dl, "Meters", String((a.meter_ids || []).length));
    fact(dl, "Customers", String((a.customer_ids || []).length));
    fact(dl, "Started", timeEl(a.started_at));
    fact(dl, "Detected", timeEl(a.detected_at));
    if (a.acknowledged_at) {
      fact(dl, "Acknowledged", [timeEl(a.acknowledged_at), " by " + (a.acknowledged_by || "?")]);
      fact(dl, "Acknowledgement reason", a.ack_reason);
    }
    if (a.status === "resolved") {
      fact(dl, "Resolved", [timeEl(a.resolved_at), " by " + (a.resolved_by || "the detector")]);
      fact(dl, "Resolution", a.resolution_reason);
      if (a.no_fault) { fact(dl, "Outcome", "no fault found (false alarm)"); }
    }
    fact(dl, "Last update", timeEl(summary.updated_at));
  }

  // ------------------------------------------------------------------------------------- actions

  function resetActions() {
    var section = $("detail-actions");
    if (!section) { return; }
    section.querySelectorAll("form").forEach(function (form) { form.reset(); form.hidden = true; });
    section.querySelectorAll("[data-action]").forEach(function (b) {
      if (b.tagName === "BUTTON") { b.setAttribute("aria-expanded", "false"); }
    });
    setActionStatus("", false);
    section.removeAttribute("data-silence-for");
  }

  function setActionStatus(text, isError) {
    var el = $("action-status");
    if (!el) { return; }
    el.textContent = text;
    el.classList.toggle("error", !!isError);
  }

  function renderActions(a, summary) {
    var section = $("detail-actions");
    if (!section || !state.canAct) { return; }
    var ack = section.querySelector('button[data-action="acknowledge"]');
    var res = section.querySelector('button[data-action="resolve"]');
    ack.disabled = a.status !== "open";
    ack.title = ack.disabled ? "Only an open alert can be acknowledged" : "";
    res.disabled = a.status === "resolved";
    res.title = res.disabled ? "This alert is resolved" : "";
    [["acknowledge", ack], ["resolve", res]].forEach(function (pair) {
      if (pair[1].disabled) { closeForm(pair[0]); }
    });
    // the silence form's choices follow the alert, but a half-filled form is left alone
    var key = a.alert_id + "|" + (summary.feeder_id || "") + "|" + (summary.transformer_ids || []).join(",");
    if (section.getAttribute("data-silence-for") !== key) {
      section.setAttribute("data-silence-for", key);
      var select = $("silence-scope");
      var previous = select.value;
      var options = [];
      var add = function (level, id) {
        if (!level || !id) { return; }
        var value = level + ":" + id;
        if (options.indexOf(value) < 0) { options.push(value); }
      };
      if (a.scope) { add(a.scope.level, a.scope.id); }
      add("feeder", summary.feeder_id);
      (summary.transformer_ids || []).forEach(function (t) { add("transformer", t); });
      select.replaceChildren.apply(select, options.map(function (v) {
        return h("option", {value: v, text: v.replace(":", " ")});
      }));
      if (options.indexOf(previous) >= 0) { select.value = previous; }
      $("silence-kind-name").textContent = kindLabel(a.kind);
    }
  }

  function openForm(action) {
    var section = $("detail-actions");
    section.querySelectorAll("form.action-form").forEach(function (form) {
      var mine = form.getAttribute("data-action") === action;
      form.hidden = !mine || !form.hidden;
    });
    section.querySelectorAll("button[data-action]").forEach(function (b) {
      var form = $("form-" + b.getAttribute("data-action"));
      b.setAttribute("aria-expanded", form && !form.hidden ? "true" : "false");
    });
    var opened = $("form-" + action);
    if (opened && !opened.hidden) {
      setActionStatus("", false);
      var reason = opened.querySelector("textarea");
      if (reason) { reason.focus(); }
    }
  }

  function closeForm(action) {
    var form = $("form-" + action);
    if (!form) { return; }
    form.hidden = true;
    var button = document.querySelector('button[data-action="' + action + '"]');
    if (button) { button.setAttribute("aria-expanded", "false"); }
  }

  function submitAction(form) {
    var action = form.getAttribute("data-action");
    var id = state.detailId;
    var alert = (state.detail && state.detail.alert) || {};
    var reason = form.elements.reason.value.trim();
    if (!reason) {
      form.elements.reason.value = "";
      form.reportValidity();
      return;
    }
    var request;
    if (action === "acknowledge") {
      request = {path: apiAlertPath(id) + "/acknowledge", body: {reason: reason}};
    } else if (action === "resolve") {
      request = {path: apiAlertPath(id) + "/resolve", body: {reason: reason, no_fault: form.elements.no_fault.checked}};
    } else {
      request = {path: "/api/silences", body: {
        scope: form.elements.scope.value,
        kinds: form.elements.this_kind.checked && alert.kind ? [alert.kind] : null,
        duration: form.elements.duration.value,
        include_safety: form.elements.include_safety.checked,
        reason: reason
      }};
    }
    var submit = form.querySelector('button[type="submit"]');
    submit.disabled = true;
    setActionStatus("Sending…", false);
    api(request.path, {method: "POST", body: request.body}).then(function (res) {
      submit.disabled = false;
      if (id !== state.detailId) { return; }
      if (res.ok) {
        form.reset();
        closeForm(action);
        var done = {
          acknowledge: "Acknowledgement sent; the alert shows it as soon as the change comes back from Kafka.",
          resolve: "Resolution sent; the alert shows it as soon as the change comes back from Kafka.",
          silence: "Silence " + ((res.data && res.data.silence_id) || "") + " added for " + request.body.scope + "."
        }[action];
        setActionStatus(done, false);
        if (action === "silence") { loadSilences(); }
      } else if (res.status === 403) {
        setActionStatus("Refused: " + (res.data.error || "your role cannot do this."), true);
      } else if (res.status !== 401) {
        setActionStatus("Not done: " + (res.data.error || "error " + res.status), true);
      }
    });
  }

  // ------------------------------------------------------------------------- evidence, timeline

  function renderEvidence(d, a, summary) {
    var box = $("detail-evidence");
    var src = d.evidence_svg ? d.evidence_svg + "?v=" + encodeURIComponent(summary.updated_at || a.detected_at || "") : null;
    var img = box.querySelector("img");
    if (src && img && img.getAttribute("src") === src) {
      // unchanged picture: keep it (no flicker) and refresh the facts below it
    } else {
      box.replaceChildren();
      if (src) {
        box.appendChild(h("figure", {class: "evidence-figure"},
          h("img", {src: src, alt: "Chart of the evidence for this " + kindLabel(a.kind) + " alert: the measured values " +
            "against the allowed band", "data-testid": "evidence-img", width: "760", height: "340"}),
          h("figcaption", {class: "muted", text: evidenceCaption(a.evidence)})));
      } else {
        box.appendChild(h("p", {class: "muted", "data-testid": "evidence-none", text: "No chart for this alert."}));
      }
    }
    var old = box.querySelector("dl.evidence-facts");
    if (old) { old.remove(); }
    var dl = h("dl", {class: "facts evidence-facts", "data-testid": "evidence-facts"});
    var ev = a.evidence || {};
    Object.keys(ev).forEach(function (key) {
      var value = ev[key];
      if (key === "trace" || key === "series") { return; }
      if (value === null || value === undefined) { return; }
      var text = typeof value === "object" ? JSON.stringify(value) : String(value);
      if (text.length > 300) { text = text.slice(0, 297) + "…"; }
      fact(dl, key.replace(/_/g, " "), text);
    });
    if (dl.childNodes.length) { box.appendChild(dl); }
  }

  function evidenceCaption(ev) {
    var trace = ev && ev.trace;
    if (trace && typeof trace === "object") {
      var parts = [];
      if (trace.meter_id) { parts.push("meter " + trace.meter_id); }
      if (trace.standard) { parts.push(trace.standard); }
      if (Array.isArray(trace.band)) { parts.push("band " + trace.band[0] + "–" + trace.band[1] + " " + (trace.unit || "")); }
      return parts.join(" · ");
    }
    var series = ev && ev.series;
    if (series && typeof series === "object") {
      return "daily use (" + (series.unit || "kWh") + ") against the forecast";
    }
    return "";
  }

  function renderTimeline(items) {
    var ol = $("detail-timeline");
    ol.replaceChildren.apply(ol, items.map(function (t) {
      return h("li", {class: "timeline-item event-" + String(t.event || "").replace(/[^a-z_]/gi, ""),
          "data-testid": "timeline-item", "data-event": t.event},
        h("span", {class: "timeline-event", text: t.event}),
        " ", timeEl(t.at),
        t.by ? h("span", {class: "timeline-by", text: " by " + t.by}) : null,
        t.reason ? h("span", {class: "timeline-reason", text: " — " + t.reason}) : null);
    }));
    if (!items.length) { ol.appendChild(h("li", {class: "muted", text: "Nothing yet."})); }
  }

  function renderCustomers(customers) {
    var box = $("detail-customers");
    if (!customers.length) {
      box.replaceChildren(h("p", {class: "muted", text: "No customers are attached to this alert."}));
      return;
    }
    var tbody = h("tbody");
    customers.forEach(function (c) {
      var notes = c.notifications || [];
      var list = notes.length ? h("ul", {class: "notes"}, notes.map(function (n) {
        return h("li", {class: "note", "data-testid": "notification", "data-status": n.status},
          h("span", {class: "note-channel", text: n.channel || "sms"}), " ",
          badge("notification", n.status),
          n.reason ? h("span", {class: "note-reason", text: " " + n.reason}) : null,
          " ", timeEl(n.created_at),
          n.body ? h("details", {class: "note-body"}, h("summary", {text: "Message"}), h("p", {text: n.body})) : null);
      })) : h("span", {class: "muted", text: "no message yet"});
      tbody.appendChild(h("tr", {"data-testid": "customer-row", "data-customer-id": c.customer_id},
        h("th", {scope: "row"}, c.customer_id, c.known === false ? h("span", {class: "muted", text: " (not in directory)"}) : null),
        h("td", {text: c.phone || "—"}),
        h("td", {text: c.language || "—"}),
        h("td", {text: c.segment || "—"}),
        h("td", null, list)));
    });
    box.replaceChildren(h("div", {class: "table-wrap"}, h("table", {class: "customers"},
      h("thead", null, h("tr", null,
        h("th", {scope: "col", text: "Customer"}),
        h("th", {scope: "col", text: "Phone"}),
        h("th", {scope: "col", text: "Language"}),
        h("th", {scope: "col", text: "Segment"}),
        h("th", {scope: "col", text: "Messages (status, reason)"}))),
      tbody)));
  }

  function renderFeedbackOf(items) {
    var box = $("detail-feedback");
    if (!items.length) {
      box.replaceChildren(h("p", {class: "muted", text: "No replies about this alert yet."}));
      return;
    }
    box.replaceChildren(h("ol", {class: "feedback-list"}, items.slice().reverse().map(function (f) {
      return feedbackItem(f, false);
    })));
  }

  // ------------------------------------------------------------------------------------- feedback

  function stars(rating) {
    if (typeof rating !== "number") { return null; }
    var r = Math.max(0, Math.min(5, Math.round(rating)));
    return h("span", {class: "stars", role: "img", "aria-label": "rated " + r + " of 5",
      text: "★★★★★".slice(0, r) + "☆☆☆☆☆".slice(0, 5 - r)});
  }

  function feedbackItem(f, withAlert) {
    return h("li", {class: "feedback-item", "data-testid": "feedback-item", "data-feedback-id": f.feedback_id},
      h("div", {class: "feedback-meta"},
        timeEl(f.received_at), " ",
        h("span", {class: "feedback-customer", text: f.customer_id || "unknown number"}), " ",
        f.intent ? badge("intent", f.intent) : null, " ",
        stars(f.rating)),
      f.body ? h("blockquote", {class: "feedback-body", text: f.body}) : null,
      withAlert && f.alert_id ? h("a", {href: alertPath(f.alert_id), "data-route": "", class: "feedback-alert",
        text: "about " + f.alert_id}) : null);
  }

  function loadFeedback() {
    return api("/api/feedback?limit=" + FEEDBACK_SHOWN).then(function (res) {
      if (!res.ok) { return; }
      state.feedback = res.data.feedback || [];
      renderFeedbackList(null);
      renderSatisfaction(res.data.satisfaction || {});
    });
  }

  function renderFeedbackList(freshId) {
    var ol = $("feedback-list");
    ol.replaceChildren.apply(ol, state.feedback.slice(0, FEEDBACK_SHOWN).map(function (f) {
      var li = feedbackItem(f, true);
      if (freshId && f.feedback_id === freshId) { li.classList.add("changed"); }
      return li;
    }));
    $("feedback-empty").hidden = state.feedback.length > 0;
  }

  function renderSatisfaction(byKind) {
    var box = $("satisfaction-body");
    var kinds = Object.keys(byKind);
    if (!kinds.length) {
      box.replaceChildren(h("p", {class: "muted", text: "No ratings yet."}));
      return;
    }
    box.replaceChildren(h("table", {class: "compact"},
      h("thead", null, h("tr", null,
        h("th", {scope: "col", text: "Kind"}),
        h("th", {scope: "col", class: "num", text: "Ratings", title: "number of ratings"}),
        h("th", {scope: "col", text: "Mean"}),
        h("th", {scope: "col", text: "1–5"}))),
      h("tbody", null, kinds.map(function (kind) {
        var s = byKind[kind];
        var dist = s.distribution || {};
        return h("tr", {"data-testid": "satisfaction-row", "data-kind": kind},
          h("th", {scope: "row", text: kindLabel(kind)}),
          h("td", {class: "num", text: s.ratings}),
          h("td", {class: "mean"}, s.mean + " ", h("meter", {min: "1", max: "5", low: "2.5", high: "3.9", optimum: "5",
            value: s.mean, title: s.mean + " of 5"})),
          h("td", {class: "dist", title: "how many rated 1, 2, 3, 4 and 5",
            text: ["1", "2", "3", "4", "5"].map(function (r) { return dist[r] || 0; }).join("·")}));
      }))));
  }

  // -------------------------------------------------------------------------------------- figures

  function loadFigures() {
    return api("/api/figures").then(function (res) {
      if (res.ok) { renderFigures(res.data); }
    });
  }

  function renderFigures(f) {
    var det = f.detection_s || {}, first = f.first_message_s || {}, msgs = f.messages || {}, fa = f.false_alarms || {};
    var timing = h("table", {class: "compact", "data-testid": "figures-timing"},
      h("thead", null, h("tr", null,
        h("th", {scope: "col", text: "Delay"}),
        h("th", {scope: "col", class: "num", text: "Median"}),
        h("th", {scope: "col", class: "num", text: "p95"}),
        h("th", {scope: "col", class: "num", text: "Alerts"}))),
      h("tbody", null,
        h("tr", null, h("th", {scope: "row", text: "Fault to detection"}),
          h("td", {class: "num", "data-testid": "detection-median", text: fmtSeconds(det.median)}),
          h("td", {class: "num", text: fmtSeconds(det.p95)}), h("td", {class: "num", text: det.n || 0})),
        h("tr", null, h("th", {scope: "row", text: "Fault to first message"}),
          h("td", {class: "num", "data-testid": "first-message-median", text: fmtSeconds(first.median)}),
          h("td", {class: "num", text: fmtSeconds(first.p95)}), h("td", {class: "num", text: first.n || 0}))));
    var statuses = ["sent", "delivered", "deferred", "suppressed", "failed"];
    var messages = h("table", {class: "compact", "data-testid": "figures-messages"},
      h("thead", null, h("tr", null, h("th", {scope: "col", text: "Messages"}), h("th", {scope: "col", class: "num", text: "Count"}))),
      h("tbody", null, statuses.map(function (s) {
        return h("tr", null, h("th", {scope: "row"}, badge("notification", s)),
          h("td", {class: "num", "data-testid": "messages-" + s, text: msgs[s] || 0}));
      })));
    var reasons = msgs.suppressed_by_reason || {};
    var reasonList = Object.keys(reasons).length ? h("p", {class: "muted"}, "Suppressed: " + Object.keys(reasons).map(function (r) {
      return r.replace(/_/g, " ") + " " + reasons[r];
    }).join(", ")) : null;
    var falseAlarms = h("p", {class: "false-alarms", "data-testid": "false-alarm-rate"},
      "False alarms: ", h("strong", {text: fmtPercent(fa.rate)}),
      " (" + (fa.no_fault || 0) + " of " + (fa.resolved || 0) + " resolved alerts had no fault)");
    var body = $("figures-body");
    body.replaceChildren();
    append(body, [timing, messages, reasonList, falseAlarms]);
  }

  // ------------------------------------------------------------------------------------- silences

  function loadSilences() {
    return api("/api/silences").then(function (res) {
      if (!res.ok) { return; }
      state.silences = (res.data.silences || []).filter(function (s) {
        return s.state === "active" || s.state === "scheduled";
      });
      renderSilences();
    });
  }

  function renderSilences() {
    var ul = $("silences-list");
    ul.replaceChildren.apply(ul, state.silences.map(function (s) {
      var kinds = s.kinds && s.kinds.length ? s.kinds.map(kindLabel).join(", ") : "every kind";
      var li = h("li", {class: "silence", "data-testid": "silence", "data-silence-id": s.silence_id},
        h("div", null, h("strong", {text: scopeText(s.scope)}), " ", badge("silence", s.state)),
        h("div", {class: "muted"}, kinds, s.include_safety ? ", safety messages too" : "", " · until ", timeEl(s.ends_at)),
        h("div", {class: "muted", text: (s.author || "?") + ": " + (s.reason || "")}));
      if (state.canAct) {
        var button = h("button", {type: "button", class: "button-quiet", "data-testid": "silence-expire",
          "aria-label": "End the silence of " + scopeText(s.scope) + " now", text: "End now"});
        button.addEventListener("click", function () {
          button.disabled = true;
          api("/api/silences/" + encodeURIComponent(s.silence_id) + "/expire", {method: "POST"}).then(function (res) {
            button.disabled = false;
            if (!res.ok && res.status !== 401) { showBanner("Could not end the silence: " + (res.data.error || res.status)); }
            loadSilences();
          });
        });
        li.appendChild(button);
      }
      return li;
    }));
    $("silences-empty").hidden = state.silences.length > 0;
  }

  // ---------------------------------------------------------------------------------- live events

  function connectEvents() {
    if (state.ended) { return; }
    var source = new EventSource("/api/events");
    state.source = source;
    source.addEventListener("open", function () {
      setLive("live", "Live");
      if (state.streamWasDown) {
        state.streamWasDown = false;
        hideBanner();
        refreshAll();
      }
    });
    source.addEventListener("error", function () {
      if (state.ended) { return; }
      state.streamWasDown = true;
      if (source.readyState === EventSource.CLOSED) {
        setLive("down", "Disconnected");
        state.source = null;
        // refused outright (e.g. the session ended): ask who we are, then try again
        api("/api/me").then(function (res) {
          if (res.ok) { setTimeout(connectEvents, 3000); }
        });
      } else {
        setLive("reconnecting", "Reconnecting…");
      }
    });
    source.addEventListener("alert", function (e) { onEvent(e, onAlertEvent); });
    source.addEventListener("notification", function (e) { onEvent(e, onNotificationEvent); });
    source.addEventListener("feedback", function (e) { onEvent(e, onFeedbackEvent); });
    source.addEventListener("silence", function (e) { onEvent(e, onSilenceEvent); });
    // with a history store the figures and satisfaction are recomputed there after a change
    source.addEventListener("figures", function () { loadFigures(); loadFeedback(); });
  }

  function onEvent(e, handler) {
    var data;
    try { data = JSON.parse(e.data); } catch (err) { return; }
    handler(data);
  }

  function onAlertEvent(summary) {
    if (state.loadingAlerts) { state.buffered.push(summary); }
    applyAlert(summary, false);
    renderBoard();
    if (summary && summary.alert_id === state.detailId) { refreshDetailSoon(); }
    later("figures", 2000, loadFigures);
  }

  function onNotificationEvent(n) {
    if (n && n.alert_id && n.alert_id === state.detailId) { refreshDetailSoon(); }
    later("figures", 2000, loadFigures);
  }

  function onFeedbackEvent(f) {
    if (!f) { return; }
    state.feedback = [f].concat(state.feedback.filter(function (x) {
      return !f.feedback_id || x.feedback_id !== f.feedback_id;
    })).slice(0, FEEDBACK_SHOWN);
    renderFeedbackList(f.feedback_id);
    if (f.alert_id && f.alert_id === state.detailId) { refreshDetailSoon(); }
    later("satisfaction", 1500, loadFeedback);
  }

  function onSilenceEvent() {
    later("silences", 500, loadSilences);
  }

  function refreshAll() {
    loadAlerts();
    loadFeedback();
    loadFigures();
    loadSilences();
    if (state.detailId) { loadDetail(); }
  }

  // ------------------------------------------------------------------------------------------ wiring

  function wire() {
    document.addEventListener("click", function (e) {
      if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) { return; }
      var link = e.target.closest("a[data-route]");
      if (!link) { return; }
      e.preventDefault();
      var href = link.getAttribute("href");
      if (href === "/") {
        var params = new URLSearchParams();
        FILTERS.forEach(function (name) { if (state.filters[name]) { params.set(name, state.filters[name]); } });
        if (params.toString()) { href = "/?" + params.toString(); }
      }
      navigate(href);
    });
    var rows = $("board-rows");
    rows.addEventListener("click", function (e) {
      if (e.target.closest("a")) { return; }
      var tr = e.target.closest("tr[data-alert-id]");
      if (tr) { navigate(alertPath(tr.getAttribute("data-alert-id"))); }
    });
    rows.addEventListener("keydown", function (e) {
      if (e.key !== "Enter" || e.target.tagName !== "TR") { return; }
      e.preventDefault();
      navigate(alertPath(e.target.getAttribute("data-alert-id")));
    });
    window.addEventListener("popstate", route);

    var filters = $("filters");
    filters.addEventListener("input", filtersChanged);
    filters.addEventListener("change", filtersChanged);
    filters.addEventListener("submit", function (e) { e.preventDefault(); });
    filters.addEventListener("reset", function () { setTimeout(filtersChanged, 0); });

    $("sign-out").addEventListener("click", signOut);

    var actions = $("detail-actions");
    actions.querySelectorAll("button[data-action]").forEach(function (button) {
      button.addEventListener("click", function () { openForm(button.getAttribute("data-action")); });
    });
    actions.querySelectorAll("form.action-form").forEach(function (form) {
      form.addEventListener("submit", function (e) {
        e.preventDefault();
        submitAction(form);
      });
      form.querySelector("[data-cancel]").addEventListener("click", function () {
        form.reset();
        closeForm(form.getAttribute("data-action"));
      });
    });
  }

  function start() {
    wire();
    api("/api/me").then(function (res) {
      if (!res.ok) {
        if (res.status !== 401) { showBanner("Could not reach the console: " + (res.data.error || res.status)); }
        return;
      }
      state.me = res.data;
      state.csrf = res.data.csrf;
      state.canAct = res.data.role === "operator";
      renderMe();
      readFiltersFromUrl();
      state.loadingAlerts = true;   // events that arrive before the list are replayed on top of it
      connectEvents();
      route();
      loadAlerts();
      loadKinds();
      loadFeedback();
      loadFigures();
      loadSilences();
      setInterval(function () {
        if (!state.ended && !document.hidden) { loadFigures(); }
      }, FIGURES_EVERY_MS);
    });
  }

  start();
}());
