// tokn dashboard: the live tail (server-sent events) and refreshing pages that
// ask for it.  Progressive: every page works without this script.  Values from
// the server are only ever set as text (textContent), never parsed as HTML.
"use strict";
(function () {
  const MAX_ROWS = 200;

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  const num = (n) => (n === null || n === undefined) ? "-"
    : Number(n).toLocaleString("en-US", { maximumFractionDigits: 0 });
  const ms = (v) => (v === null || v === undefined) ? "-" : num(Math.round(v)) + " ms";
  const clock = (ts) => new Date(ts * 1000).toTimeString().slice(0, 8);

  function withSub(main, sub) {
    const td = el("td", null, main || "-");
    td.append(el("div", "muted small", sub || ""));
    return td;
  }

  // One row, the same cells as the server's request_row macro.
  function rowFor(r) {
    const tr = el("tr", "new");
    tr.dataset.key = r.request_id + "|" + r.ts;
    const link = el("a", null, clock(r.ts));
    link.href = "/ui/requests/" + encodeURIComponent(r.request_id);
    const first = el("td");
    first.append(link);
    tr.append(first, withSub(r.front_door, r.route_mode), withSub(r.account, r.provider));
    const model = el("td", "model", r.model_requested || "-");
    if (r.model_served && r.model_served !== r.model_requested) {
      model.append(" ", el("span", "muted", "→ " + r.model_served));
    }
    const ok = r.status !== null && r.status !== undefined && r.status < 400;
    const status = el("td");
    status.append(el("span", "status " + (ok ? "ok" : "bad"), r.status ?? "-"));
    tr.append(model, status, el("td", "num", ms(r.latency_ms)),
      el("td", "num", num(r.input_tokens) + " / " + num(r.output_tokens)),
      el("td", "error", r.error || ""));
    return tr;
  }

  function startTail(table) {
    const tbody = table.tBodies[0];
    const badge = document.getElementById("live-status");
    const seen = new Set(Array.from(tbody.rows, (tr) => tr.dataset.key));
    const show = (text, state) => {
      if (badge) { badge.textContent = "live: " + text; badge.dataset.state = state; }
    };
    const source = new EventSource(table.dataset.live);
    source.onopen = () => show("on", "on");
    source.onerror = () => show(source.readyState === EventSource.CLOSED ? "off" : "reconnecting", "off");
    source.onmessage = (event) => {
      const row = JSON.parse(event.data);
      const key = row.request_id + "|" + row.ts;
      if (seen.has(key)) return;
      seen.add(key);
      tbody.prepend(rowFor(row));
      while (tbody.rows.length > MAX_ROWS) tbody.deleteRow(-1);
      document.getElementById("no-rows")?.remove();
    };
    window.addEventListener("pagehide", () => source.close());
  }

  // <main data-refresh="N">: fetch this page again every N seconds, swap <main>.
  function startRefresh(main, secs) {
    setInterval(async () => {
      if (document.hidden) return;
      try {
        const res = await fetch(location.href, { credentials: "same-origin" });
        if (!res.ok || res.redirected) return;
        const doc = new DOMParser().parseFromString(await res.text(), "text/html");
        const fresh = doc.getElementById("main");
        if (fresh) main.replaceChildren(...fresh.childNodes);
      } catch (err) {
        // offline or restarting: keep what is shown
      }
    }, secs * 1000);
  }

  const table = document.getElementById("tail");
  if (table && table.dataset.live && window.EventSource) startTail(table);
  const main = document.getElementById("main");
  if (main && main.dataset.refresh) startRefresh(main, Number(main.dataset.refresh));
})();
