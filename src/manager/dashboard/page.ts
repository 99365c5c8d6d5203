/**
 * The dashboard page: one self-contained document (inline CSS and script, plain DOM + SVG), so
 * it works offline and needs nothing fetched from elsewhere. Data comes from /api/events (SSE,
 * `state` events) with /api/state as the first paint.
 */
export const PAGE_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>etz — zone manager</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
:root{--bg:#0f172a;--panel:#1e293b;--line:#334155;--text:#e2e8f0;--dim:#94a3b8;--low:#22c55e;--medium:#eab308;--high:#f97316;--critical:#ef4444;
--containment:#ef4444;--isolation:#a855f7;--performance:#38bdf8}
*{box-sizing:border-box}body{margin:0;font:13px/1.4 system-ui,-apple-system,Segoe UI,sans-serif;background:var(--bg);color:var(--text)}
header{display:flex;gap:1.5em;align-items:center;padding:.6em 1em;background:#020617;border-bottom:1px solid var(--line)}
header h1{font-size:16px;margin:0}header .kv{color:var(--dim)}header .kv b{color:var(--text)}
#live{margin-left:auto;font-size:12px}#live.on::before{content:"● ";color:var(--low)}#live.off::before{content:"● ";color:var(--critical)}
main{display:grid;grid-template-columns:minmax(520px,1.5fr) minmax(380px,1fr);gap:10px;padding:10px}
section{background:var(--panel);border:1px solid var(--line);border-radius:6px;padding:8px 10px;min-width:0}
section h2{font-size:13px;margin:0 0 6px;color:var(--dim);text-transform:uppercase;letter-spacing:.05em}
#graph svg{width:100%;height:480px;display:block}
.legend span{margin-right:1em;color:var(--dim)}.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:-1px}
table{width:100%;border-collapse:collapse}td,th{text-align:left;padding:3px 4px;border-bottom:1px solid var(--line);vertical-align:top}th{color:var(--dim);font-weight:500}
.badge{display:inline-block;padding:0 6px;border-radius:9px;font-size:11px;color:#020617;font-weight:600}
.lvl-low{background:var(--low)}.lvl-medium{background:var(--medium)}.lvl-high{background:var(--high)}.lvl-critical{background:var(--critical)}
.z-containment{background:var(--containment)}.z-isolation{background:var(--isolation)}.z-performance{background:var(--performance)}
button{background:#334155;color:var(--text);border:1px solid #475569;border-radius:4px;padding:1px 7px;cursor:pointer;font-size:12px}button:hover{background:#475569}
.col{display:flex;flex-direction:column;gap:10px}.dim{color:var(--dim)}.feed{max-height:260px;overflow:auto}.feed div{padding:2px 0;border-bottom:1px solid #26344a}
.ok{color:var(--low)}.denied,.failed{color:var(--critical)}svg text{fill:var(--text);font:12px system-ui,sans-serif}
.empty{color:var(--dim);font-style:italic}
</style></head>
<body>
<header><h1>etz · zone manager</h1>
<div class="kv">config version <b id="cfgv">-</b></div>
<div class="kv">sidecars <b id="scs">-</b></div>
<div class="kv">zones <b id="zcount">-</b></div>
<div class="kv">flagged users <b id="fcount">-</b></div>
<div id="live" class="off">connecting</div></header>
<main>
<div class="col">
<section id="graph"><h2>Service graph</h2>
<div class="legend"><span><i class="z-containment"></i>containment</span><span><i class="z-isolation"></i>isolation</span><span><i class="z-performance"></i>performance</span><span>mTLS: mutual TLS between sidecars</span><span>edge label: requests/s · error rate</span></div>
<svg id="g" viewBox="0 0 900 480" role="img" aria-label="service graph"></svg></section>
<section id="risk"><h2>Risk (services, instances, end users)</h2><table><thead><tr><th>subject</th><th>score</th><th>timeline</th><th>why</th></tr></thead><tbody id="riskrows"></tbody></table></section>
</div>
<div class="col">
<section id="zones"><h2>Trust zones</h2><table><thead><tr><th>zone</th><th>members</th><th>reason</th><th>TTL</th><th>rollout</th><th></th></tr></thead><tbody id="zonerows"></tbody></table></section>
<section id="flagged"><h2>Flagged end users</h2><table><tbody id="flagrows"></tbody></table></section>
<section id="audit"><h2>Events and audit</h2><div class="feed" id="feed"></div></section>
</div>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const NS = "http://www.w3.org/2000/svg";
function el(tag, attrs, text) { const e = document.createElementNS(NS, tag); for (const k in attrs) e.setAttribute(k, attrs[k]); if (text !== undefined) e.textContent = text; return e; }
function h(tag, attrs, ...kids) { const e = document.createElement(tag); for (const k in (attrs || {})) { if (k === "class") e.className = attrs[k]; else if (k.startsWith("on")) e.addEventListener(k.slice(2), attrs[k]); else e.setAttribute(k, attrs[k]); } for (const c of kids) if (c !== null && c !== undefined) e.append(c.nodeType ? c : String(c)); return e; }
const LVL = { low: "#22c55e", medium: "#eab308", high: "#f97316", critical: "#ef4444" };
const ZC = { containment: "#ef4444", isolation: "#a855f7", performance: "#38bdf8" };
function level(score) { return score >= 80 ? "critical" : score >= 50 ? "high" : score >= 25 ? "medium" : "low"; }
function pct(x) { return (x * 100).toFixed(x > 0 && x < 0.01 ? 1 : 0) + "%"; }
function ago(ms) { const s = Math.round(ms / 1000); return s < 60 ? s + "s" : s < 3600 ? Math.round(s / 60) + "m" : Math.round(s / 3600) + "h"; }
function subjectName(s) { if (!s) return "?"; if (s.kind === "edge") return s.source + " → " + s.destination; if (s.kind === "principal") return "user " + s.principal; if (s.kind === "instance") return s.instance || (s.service + "/" + s.version); return s.service; }

function layout(nodes, edges) {
  // Longest-path layering from the callers: entry points on the left, leaves on the right.
  const names = nodes.map((n) => n.service);
  const depth = Object.fromEntries(names.map((n) => [n, 0]));
  const known = new Set(names);
  const es = edges.filter((e) => known.has(e.source) && known.has(e.destination) && e.source !== e.destination);
  for (let i = 0; i < names.length; i++) for (const e of es) if (depth[e.destination] < depth[e.source] + 1 && depth[e.source] + 1 < names.length) depth[e.destination] = depth[e.source] + 1;
  // Well-known roles keep their column, so an attack's new edges do not reshuffle the picture.
  const preferred = { "ingress-gateway": 0, productpage: 1, details: 2, reviews: 2, ratings: 3 };
  for (const n of names) if (n in preferred) depth[n] = preferred[n];
  const cols = {};
  for (const n of names) (cols[depth[n]] = cols[depth[n]] || []).push(n);
  const ncol = Math.max(1, Object.keys(cols).length);
  const pos = {};
  Object.keys(cols).sort((a, b) => a - b).forEach((d, ci) => {
    const col = cols[d].sort();
    col.forEach((n, ri) => { pos[n] = { x: 90 + ci * (720 / Math.max(1, ncol - 1 || 1)), y: (480 / (col.length + 1)) * (ri + 1) }; });
  });
  return pos;
}

function drawGraph(s) {
  const svg = $("g"); svg.replaceChildren();
  const defs = el("defs", {}); const m = el("marker", { id: "arr", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" });
  m.append(el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#94a3b8" })); defs.append(m); svg.append(defs);
  const pos = layout(s.nodes, s.edges);
  const W = 150, H = 64;
  // Zones as coloured groups around their members (nested with growing padding when they overlap).
  s.zones.forEach((z, i) => {
    const ps = z.members.map((mb) => pos[mb.service]).filter(Boolean);
    if (!ps.length) return;
    const pad = 10 + (i % 3) * 7;
    const x0 = Math.min(...ps.map((p) => p.x)) - W / 2 - pad, x1 = Math.max(...ps.map((p) => p.x)) + W / 2 + pad;
    const y0 = Math.min(...ps.map((p) => p.y)) - H / 2 - pad - 14, y1 = Math.max(...ps.map((p) => p.y)) + H / 2 + pad;
    const g = el("g", { "data-zone": z.id, "data-zone-type": z.type, class: "zone" });
    g.append(el("rect", { x: x0, y: y0, width: x1 - x0, height: y1 - y0, rx: 12, fill: ZC[z.type], "fill-opacity": 0.12, stroke: ZC[z.type], "stroke-width": 2, "stroke-dasharray": z.shadow ? "6 4" : "" }));
    const vs = z.members.map((mb) => mb.instance || mb.version).filter(Boolean);
    g.append(el("text", { x: x0 + 8, y: y0 + 13, style: "fill:" + ZC[z.type] + ";font-size:11px;font-weight:600" }, z.type + (vs.length ? " (" + vs.join(",") + ")" : "")));
    svg.append(g);
  });
  for (const e of s.edges) {
    const a = pos[e.source], b = pos[e.destination];
    if (!a || !b || e.source === e.destination) continue;
    const dx = b.x - a.x, dy = b.y - a.y, len = Math.hypot(dx, dy) || 1;
    // Calls both ways are drawn side by side (offset to the right of their direction).
    const both = s.edges.some((r) => r.source === e.destination && r.destination === e.source);
    const ox = both ? (-dy / len) * 9 : 0, oy = both ? (dx / len) * 9 : 0;
    const sx = a.x + (dx / len) * (W / 2) + ox, sy = a.y + (dy / len) * (H / 2) + oy, tx = b.x - (dx / len) * (W / 2 + 2) + ox, ty = b.y - (dy / len) * (H / 2 + 2) + oy;
    const bad = e.errorRate >= 0.05;
    const g = el("g", { class: "edge", "data-edge": e.source + "->" + e.destination });
    g.append(el("line", { x1: sx, y1: sy, x2: tx, y2: ty, stroke: bad ? "#ef4444" : "#94a3b8", "stroke-width": Math.min(6, 1 + Math.log2(1 + e.rps)), "marker-end": "url(#arr)" }));
    g.append(el("text", { x: (sx + tx) / 2 + ox * 1.6, y: (sy + ty) / 2 - 5 + oy * 1.6, "text-anchor": "middle", style: "font-size:11px;fill:" + (bad ? "#fca5a5" : "#cbd5e1") }, (e.mtls ? "mTLS " : "") + e.rps.toFixed(1) + "/s · " + pct(e.errorRate)));
    svg.append(g);
  }
  for (const n of s.nodes) {
    const p = pos[n.service]; if (!p) continue;
    const g = el("g", { class: "node", "data-service": n.service });
    g.append(el("rect", { x: p.x - W / 2, y: p.y - H / 2, width: W, height: H, rx: 8, fill: "#0b1220", stroke: LVL[n.level] || "#64748b", "stroke-width": 2 }));
    g.append(el("text", { x: p.x - W / 2 + 8, y: p.y - H / 2 + 17, style: "font-weight:600" }, n.service));
    const badge = el("g", {}); badge.append(el("rect", { x: p.x + W / 2 - 34, y: p.y - H / 2 + 5, width: 28, height: 16, rx: 8, fill: LVL[n.level] || "#64748b" }));
    badge.append(el("text", { x: p.x + W / 2 - 20, y: p.y - H / 2 + 17, "text-anchor": "middle", style: "fill:#020617;font-size:11px;font-weight:700" }, String(n.risk))); g.append(badge);
    n.versions.sort((a, b) => a.version.localeCompare(b.version)).forEach((v, i) => {
      const vx = p.x - W / 2 + 8 + i * 46;
      g.append(el("rect", { x: vx, y: p.y + 2, width: 42, height: 18, rx: 4, fill: v.state === "acked" ? "#14532d" : v.state === "nacked" ? "#7f1d1d" : "#334155", "data-version": v.version }));
      g.append(el("text", { x: vx + 21, y: p.y + 15, "text-anchor": "middle", style: "font-size:11px" }, v.version));
    });
    g.append(el("text", { x: p.x - W / 2 + 8, y: p.y + H / 2 - 4, style: "font-size:10px;fill:#94a3b8" }, n.rps.toFixed(1) + " req/s in · " + pct(n.errorRate) + " err"));
    svg.append(g);
  }
  if (!s.nodes.length) svg.append(el("text", { x: 450, y: 240, "text-anchor": "middle", style: "fill:#94a3b8" }, "no sidecars enrolled yet"));
}

function spark(points) {
  const svg = el("svg", { width: 140, height: 24, viewBox: "0 0 140 24" });
  if (!points || points.length < 2) return svg;
  const t0 = points[0][0], t1 = points[points.length - 1][0] || t0 + 1;
  const pts = points.map(([t, v]) => ((t - t0) / Math.max(1, t1 - t0) * 138 + 1).toFixed(1) + "," + (23 - v / 100 * 22).toFixed(1)).join(" ");
  svg.append(el("line", { x1: 0, x2: 140, y1: 23 - 0.8 * 22, y2: 23 - 0.8 * 22, stroke: "#7f1d1d", "stroke-dasharray": "2 2" }));
  svg.append(el("polyline", { points: pts, fill: "none", stroke: LVL[level(points[points.length - 1][1])], "stroke-width": 1.5 }));
  return svg;
}

async function act(id, verb, body) {
  const r = await fetch("/api/zones/" + encodeURIComponent(id) + "/" + verb, { method: "POST", headers: { "content-type": "application/json", "x-etz-dashboard": "1" }, body: JSON.stringify(body || {}) });
  if (!r.ok) { const e = await r.json().catch(() => ({})); alert(verb + " failed: " + (e.reason || r.status)); }
}

function render(s) {
  const st = s.status || {};
  $("cfgv").textContent = st.configVersion ?? "-";
  $("scs").textContent = st.sidecars ? st.sidecars.acked + "/" + st.sidecars.connected + " acked" : "-";
  $("zcount").textContent = s.zones.length;
  $("fcount").textContent = s.flagged.length;
  drawGraph(s);
  const zr = $("zonerows"); zr.replaceChildren();
  if (!s.zones.length) zr.append(h("tr", {}, h("td", { colspan: 6, class: "empty" }, "no zones")));
  for (const z of s.zones) {
    const ttl = z.pinned ? "pinned" : z.expiresAt ? ago(z.expiresAt - s.at) : "—";
    const ro = z.rollout.inForce ? h("span", { class: "ok" }, "✔ acked " + z.rollout.acked + "/" + z.rollout.total) : h("span", { class: "dim" }, "⏳ " + z.rollout.acked + "/" + z.rollout.total);
    zr.append(h("tr", { "data-zone-id": z.id, "data-zone-type": z.type },
      h("td", {}, h("span", { class: "badge z-" + z.type }, z.type), h("div", { class: "dim" }, z.id), z.shadow ? h("div", { class: "dim" }, "shadow") : null),
      h("td", {}, z.members.map((mb) => mb.service + (mb.instance ? "/" + mb.instance : mb.version ? "@" + mb.version : "")).join(", ")),
      h("td", {}, z.reason, z.detectedAt ? h("div", { class: "dim" }, "detected " + ago(s.at - z.detectedAt) + " ago") : null),
      h("td", {}, ttl),
      h("td", {}, ro),
      h("td", {},
        h("button", { onclick: () => { const r = prompt("Reason for dissolving " + z.id, "resolved by operator"); if (r) act(z.id, "dissolve", { reason: r }); } }, "dissolve"), " ",
        h("button", { onclick: () => act(z.id, "extend", { ttl: "30m", reason: "extended from the dashboard" }) }, "+30m"), " ",
        h("button", { onclick: () => act(z.id, z.pinned ? "unpin" : "pin") }, z.pinned ? "unpin" : "pin"))));
  }
  const fr = $("flagrows"); fr.replaceChildren();
  if (!s.flagged.length) fr.append(h("tr", {}, h("td", { class: "empty" }, "none")));
  for (const f of s.flagged) fr.append(h("tr", { "data-principal": f.principal }, h("td", {}, h("b", {}, f.principal)), h("td", {}, f.action + (f.to ? " → " + f.to.service + " " + f.to.version : "")), h("td", { class: "dim" }, f.reason), h("td", { class: "dim" }, "for " + ago(f.expiresAt - s.at))));
  const rr = $("riskrows"); rr.replaceChildren();
  const shown = s.risk.filter((r) => r.subject.kind !== "edge" || r.score >= 25).slice(0, 14);
  if (!shown.length) rr.append(h("tr", {}, h("td", { colspan: 4, class: "empty" }, "no risk yet")));
  for (const r of shown) {
    const why = (r.reasons || []).slice(0, 2).map((x) => x.detail || x.feature || x.detector).join("; ");
    rr.append(h("tr", { "data-subject": r.key }, h("td", {}, subjectName(r.subject), r.warmingUp ? h("span", { class: "dim" }, " (learning)") : null), h("td", {}, h("span", { class: "badge lvl-" + r.level }, Math.round(r.score) + " " + r.level)), h("td", {}, spark(s.timeline[r.key])), h("td", { class: "dim" }, why)));
  }
  const feed = $("feed"); feed.replaceChildren();
  for (const a of s.audit) feed.append(h("div", {}, h("span", { class: "dim" }, new Date(a.ts).toLocaleTimeString() + " "), h("span", { class: a.outcome }, a.action), " ", a.target || "", a.reason ? h("span", { class: "dim" }, " — " + a.reason) : null, h("span", { class: "dim" }, " · " + a.actor)));
}

let last;
function connect() {
  const es = new EventSource("/api/events");
  es.addEventListener("state", (ev) => { last = JSON.parse(ev.data); $("live").className = "on"; $("live").textContent = "live"; render(last); document.body.dataset.updated = String(last.at); });
  es.onerror = () => { $("live").className = "off"; $("live").textContent = "reconnecting"; };
}
fetch("/api/state").then((r) => r.json()).then(render).catch(() => {});
connect();
</script>
</body></html>
`;
