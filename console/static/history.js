/* The operations history page: reliability indices, the feeder ranking, customer figures and the alert
   history, all from /api/history/* (the history store). No framework, no inline script (CSP 'self'). */
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var cursor = null;

  function $(id) { return document.getElementById(id); }
  function cell(text, cls) {
    var td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "–" : String(text);
    if (cls) { td.className = cls; }
    return td;
  }
  function row(cells) {
    var tr = document.createElement("tr");
    cells.forEach(function (c) { tr.appendChild(c); });
    return tr;
  }
  function fill(id, rows, empty) {
    var body = $(id);
    body.textContent = "";
    if (!rows.length) {
      var only = cell(empty || "nothing in this period", "muted");
      only.colSpan = body.parentNode.querySelectorAll("thead th").length || 1;
      body.appendChild(row([only]));
      return;
    }
    rows.forEach(function (r) { body.appendChild(r); });
  }
  function num(v, digits) { return v === null || v === undefined ? "–" : Number(v).toFixed(digits); }
  function secs(s) { return s < 120 ? num(s, 0) + " s" : num(s / 60, 1) + " min"; }
  function banner(message) { var b = $("banner"); b.textContent = message; b.hidden = !message; }

  function get(path) {
    return fetch(path, {credentials: "same-origin", headers: {"Accept": "application/json"}}).then(function (r) {
      return r.json().then(function (body) {
        if (!r.ok) { throw new Error(body && body.error ? body.error : "HTTP " + r.status); }
        return body;
      });
    });
  }

  function params() {
    var p = new URLSearchParams();
    p.set("year", $("year").value);
    if ($("feeder").value) { p.set("feeder", $("feeder").value); }
    return p;
  }

  function chart(periods) {
    var svg = $("saidi-chart");
    Array.prototype.slice.call(svg.querySelectorAll("rect, text, line")).forEach(function (n) { n.remove(); });
    var months = Object.keys(periods).filter(function (k) { return k !== "ytd"; }).sort();
    var max = Math.max.apply(null, [1].concat(months.map(function (m) { return periods[m].saidi || 0; })));
    var width = 600 / Math.max(months.length, 1);
    function el(tag, attrs, text) {
      var n = document.createElementNS(SVG, tag);
      Object.keys(attrs).forEach(function (k) { n.setAttribute(k, attrs[k]); });
      if (text !== undefined) { n.textContent = text; }
      svg.appendChild(n);
      return n;
    }
    el("line", {x1: 30, y1: 170, x2: 630, y2: 170, "class": "axis"});
    months.forEach(function (m, i) {
      var v = periods[m].saidi || 0;
      var h = 150 * v / max;
      var bar = el("rect", {x: 30 + i * width + 4, y: 170 - h, width: Math.max(width - 8, 2), height: h,
                            "class": "bar", "data-month": m});
      var tip = document.createElementNS(SVG, "title");
      tip.textContent = m + ": SAIDI " + num(v, 2) + " min";
      bar.appendChild(tip);
      el("text", {x: 30 + i * width + width / 2, y: 185, "text-anchor": "middle"}, m.slice(5));
      el("text", {x: 30 + i * width + width / 2, y: 165 - h, "text-anchor": "middle"}, num(v, 1));
    });
  }

  function loadReliability() {
    var p = params();
    $("reliability-csv").href = "/api/history/reliability?" + p.toString() + "&format=csv";
    return get("/api/history/reliability?" + p.toString()).then(function (rep) {
      var scope = $("feeder").value ? rep.feeders[$("feeder").value] || {} : rep.system;
      var select = $("feeder");
      if (select.options.length === 1) {
        Object.keys(rep.feeders).sort().forEach(function (f) {
          var o = document.createElement("option"); o.value = f; o.textContent = f; select.appendChild(o);
        });
      }
      var med = rep.major_event_days;
      $("med").textContent = med.applied
        ? "Major event days (2.5 β, threshold " + num(med.threshold_saidi_minutes, 2) + " min): " + (med.days.join(", ") || "none")
        : "Major event days not applied: " + med.reason;
      chart(scope);
      fill("reliability-rows", Object.keys(scope).sort().map(function (k) {
        var v = scope[k];
        return row([cell(k === "ytd" ? "year to date" : k), cell(v.customers_served, "num"), cell(num(v.saifi, 3), "num"),
                    cell(num(v.saidi, 1), "num"), cell(num(v.caidi, 1), "num"), cell(num(v.maifi, 3), "num"),
                    cell(num(v.cemi_1, 3), "num"), cell(num(v.customer_minutes_interrupted, 0), "num")]);
      }));
      fill("ranking-rows", rep.ranking.map(function (r) {
        return row([cell(r.feeder_id), cell(num(r.saidi, 1), "num"), cell(num(r.saifi, 3), "num"),
                    cell(num(r.caidi, 1), "num"), cell(r.customers_served, "num")]);
      }));
    });
  }

  function loadCustomers() {
    return get("/api/history/customers?year=" + encodeURIComponent($("year").value)).then(function (rep) {
      fill("first-rows", rep.first_message.map(function (r) {
        return row([cell(r.month), cell(r.kind), cell(r.alerts, "num"), cell(secs(r.p50_s), "num"), cell(secs(r.p95_s), "num")]);
      }));
      fill("told-rows", rep.told_before_report.map(function (r) {
        return row([cell(r.month), cell(r.affected, "num"), cell(r.told, "num"), cell(r.told_before_report, "num"),
                    cell(r.share_told_before_report === null ? "–" : num(100 * r.share_told_before_report, 0) + " %", "num")]);
      }));
      fill("satisfaction-rows", rep.satisfaction.map(function (r) {
        return row([cell(r.month), cell(r.kind), cell(r.segment), cell(r.ratings, "num"), cell(num(r.mean_rating, 2), "num")]);
      }));
    });
  }

  function searchParams() {
    var p = new URLSearchParams();
    ["q", "kind", "status", "from", "to"].forEach(function (name) { if ($(name).value) { p.set(name, $(name).value); } });
    if ($("feeder").value) { p.set("feeder", $("feeder").value); }
    return p;
  }

  function loadAlerts(more) {
    var p = searchParams();
    $("alerts-csv").href = "/api/history/alerts?" + p.toString() + "&format=csv&limit=1000";
    p.set("limit", "25");
    if (more && cursor) { p.set("cursor", cursor); }
    return get("/api/history/alerts?" + p.toString()).then(function (page) {
      var rows = page.items.map(function (a) {
        return row([cell(a.started_at), cell(a.alert_id), cell(a.kind), cell(a.status), cell(a.feeder_id),
                    cell(a.customers, "num")]);
      });
      if (more) { rows.forEach(function (r) { $("alert-rows").appendChild(r); }); } else { fill("alert-rows", rows, "no alert matches"); }
      cursor = page.next_cursor;
      $("more").hidden = !cursor;
    });
  }

  function all() {
    banner("");
    return Promise.all([loadReliability(), loadCustomers(), loadAlerts(false)]).then(function () {
      document.body.setAttribute("data-loaded", "true");
    }, function (err) { banner(err.message); document.body.setAttribute("data-loaded", "error"); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var year = new URLSearchParams(location.search).get("year");
    $("year").value = year || String(new Date().getUTCFullYear());
    $("period").addEventListener("submit", function (e) { e.preventDefault(); all(); });
    $("search").addEventListener("submit", function (e) {
      e.preventDefault();
      loadAlerts(false).catch(function (err) { banner(err.message); });
    });
    $("more").addEventListener("click", function () { loadAlerts(true).catch(function (err) { banner(err.message); }); });
    all();
  });
}());
