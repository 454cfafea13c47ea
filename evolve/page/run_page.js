// The run page's script (evolve/run_page.py embeds it with the run's data).
// Every text from a run (code, prompts, replies, feedback, errors, ids) is inserted as a
// text node, never parsed as HTML. All view state is in the URL hash, so a reload (the
// page reloads itself while the run is live) keeps the view.
"use strict";
async function loadRunData() {  // the data block: gzipped JSON in base64 (see run_page.py)
  const block = JSON.parse(document.getElementById("run-data").textContent);
  if (block.encoding !== "gzip+base64") throw new Error("unknown data encoding " + block.encoding);
  const binary = atob(block.data);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return JSON.parse(await new Response(stream).text());
}

loadRunData().then(showRun, (error) => {
  document.getElementById("view").textContent = "This page's data cannot be read: " + error;
  throw error;
});

function showRun(DATA) {
  const LINES = DATA.lines;
  const SVGNS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2",
                   "#db2777", "#65a30d", "#4b5563", "#9333ea"];
  const OUTCOME_COLORS = {valid: "#15803d", invalid: "#b91c1c", duplicate: "#b45309",
                          no_patch: "#7c3aed", llm_error: "#6b7280", timeout: "#0f766e",
                          prompt_too_long: "#a16207", operator_failed: "#9d174d"};

  // ------------------------------------------------------------------ decoding
  function text(runs) {  // a text from its runs of line numbers (see run_page._Lines)
    if (runs == null) return null;
    const out = [];
    for (let i = 0; i < runs.length; i += 2) {
      for (let k = 0; k < runs[i + 1]; k++) out.push(LINES[runs[i] + k]);
    }
    return out.join("\n");
  }
  function num(v) {  // JSON carries NaN and infinities as {"$f": "NaN" | "Infinity" | ...}
    return v !== null && typeof v === "object" && "$f" in v ? Number(v.$f) : v;
  }
  function finite(v) { return typeof v === "number" && Number.isFinite(v); }

  const programs = DATA.programs;
  const byId = new Map();
  const islands = new Set();
  for (const p of programs) {
    p.score = num(p.score);
    p.eval_s = num(p.eval_s);
    const metrics = {};
    for (const [k, v] of p.metrics) metrics[DATA.metric_names[k]] = num(v);
    p.metrics = metrics;
    p.proposal = p.gen >= 1 && p.patch !== "migrant" && p.patch !== "reference";
    p.children = [];
    byId.set(p.id, p);
    islands.add(p.island);
  }
  const islandCount = Math.max(0, ...islands) + 1;
  const callsByGen = new Map();
  for (const c of DATA.calls) {
    c.cost = num(c.cost); c.latency_s = num(c.latency_s); c.temperature = num(c.temperature);
    if (!callsByGen.has(c.gen)) callsByGen.set(c.gen, []);
    callsByGen.get(c.gen).push(c);
  }
  const seenTarget = new Set();
  for (const p of programs) {
    const parent = byId.get(p.parent);
    if (parent) parent.children.push(p);
    p.parentScore = parent ? parent.score : null;
    p.delta = finite(p.score) && finite(p.parentScore) ? p.score - p.parentScore : null;
    p.improved = p.proposal && p.delta !== null && p.delta > 0;
    // A generation's program comes from its last call with a reply (else its last call).
    const calls = p.proposal ? (callsByGen.get(p.gen) || []) : [];
    p.calls = calls;
    p.call = calls.filter((c) => c.reply !== null).pop() || calls[calls.length - 1] || null;
    // Migrant copies: the ring sends island i-1's best to island i; any other copy (from
    // another island, or a second copy to the same island at once) is a reset.
    p.kind = p.patch;
    if (p.patch === "migrant") {
      const source = parent ? parent.island : null;
      const key = p.gen + ":" + p.island;
      if (p.gen === 0) p.kind = "seed copy";
      else if (source !== (p.island - 1 + islandCount) % islandCount || seenTarget.has(key)) {
        p.kind = "reset";
      } else p.kind = "migrant";
      seenTarget.add(key);
    }
  }
  const proposals = programs.filter((p) => p.proposal);

  // ------------------------------------------------------------------ DOM helpers
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVGNS, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }
  function setAttrs(node, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, String(v));
    }
  }
  function append(node, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      node.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }
  function fmt(v) {
    if (v === null || v === undefined) return "–";
    if (typeof v !== "number") return String(v);
    if (Number.isNaN(v)) return "NaN";
    if (!Number.isFinite(v)) return v > 0 ? "Infinity" : "-Infinity";
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    return a !== 0 && (a >= 1e6 || a < 1e-3) ? v.toExponential(3) : String(Number(v.toPrecision(5)));
  }
  function fmtDelta(v) {
    if (!finite(v)) return fmt(v);
    return (v > 0 ? "+" : "") + fmt(v);
  }
  function money(v) { return finite(v) ? "$" + v.toFixed(v < 1 ? 4 : 2) : fmt(v); }
  function link(id, label) {
    return byId.has(id) ? el("a", {href: "#program=" + encodeURIComponent(id)}, label || id)
      : el("span", {class: "muted"}, label || id || "–");
  }
  function outcomeBadge(p) { return el("span", {class: "badge o-" + p.outcome}, p.outcome); }

  // ------------------------------------------------------------------ state in the hash
  function getState() { return Object.fromEntries(new URLSearchParams(location.hash.slice(1))); }
  function hashOf(state) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(state)) if (v !== "" && v != null) params.set(k, v);
    return "#" + params.toString();
  }
  function go(state) { location.hash = hashOf(state); }
  function replaceState(state) { history.replaceState(null, "", hashOf(state)); }

  // ------------------------------------------------------------------ header
  function bestProgram() {
    let best = null;
    for (const p of programs) {
      if (p.patch === "migrant" || p.patch === "reference" || !p.valid || !finite(p.score)) continue;
      if (!best || p.score > best.score || (p.score === best.score && p.gen < best.gen)) best = p;
    }
    return best;
  }
  const BEST = bestProgram();
  const TOTAL_COST = DATA.calls.reduce((s, c) => s + (finite(c.cost) ? c.cost : 0), 0);

  function renderHeader(view) {
    const top = document.getElementById("top");
    top.replaceChildren();
    const nav = el("nav", {});
    const views = [["overview", "Overview"], ["lineage", "Lineage"], ["table", "Programs"]];
    if (DATA.pareto.length === 2) views.push(["pareto", "Pareto"]);
    for (const [name, label] of views) {
      nav.appendChild(el("a", {href: "#view=" + name, class: view === name ? "here" : null}, label));
    }
    const status = DATA.live
      ? el("span", {class: "status live", id: "run-status"},
           "live: reloads every " + fmt(DATA.refresh_s) + " s")
      : el("span", {class: "status", id: "run-status"},
           DATA.stop_reason ? "ended: " + DATA.stop_reason : "not running");
    const written = new Date(DATA.written_at * 1000).toLocaleString();
    top.append(
      el("h1", {}, DATA.run), status, nav,
      el("span", {class: "facts"},
         programs.length + " programs · " + proposals.length + " proposals · best ",
         BEST ? link(BEST.id, fmt(BEST.score)) : "–",
         " · LLM cost " + money(TOTAL_COST) + " · written " + written));
    document.title = DATA.run + " · evolution run";
  }

  // ------------------------------------------------------------------ charts (inline SVG)
  function ticks(lo, hi, count) {
    if (!(hi > lo)) return [lo];
    const step0 = (hi - lo) / count;
    const mag = Math.pow(10, Math.floor(Math.log10(step0)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0) || step0;
    const out = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(t);
    return out;
  }
  function extent(values) {
    let lo = Infinity, hi = -Infinity;
    for (const v of values) if (finite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; }
    if (lo === Infinity) return [0, 1];
    if (lo === hi) { const pad = Math.abs(lo) * 0.05 || 0.5; return [lo - pad, hi + pad]; }
    const pad = (hi - lo) * 0.04;
    return [lo - pad, hi + pad];
  }
  // series: {label, color, points: [[x, y, id]], dots: bool, step: bool}
  function chart(series, xlabel, ylabel, xdomain) {
    const W = 640, H = 300, L = 58, R = 12, T = 10, B = 38;
    const xs = series.flatMap((s) => s.points.map((p) => p[0]));
    const ys = series.flatMap((s) => s.points.map((p) => p[1]));
    const [x0, x1] = xdomain || extent(xs), [y0, y1] = extent(ys);
    const sx = (x) => L + (x - x0) / (x1 - x0 || 1) * (W - L - R);
    const sy = (y) => H - B - (y - y0) / (y1 - y0 || 1) * (H - T - B);
    const root = svg("svg", {viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img"});
    for (const t of ticks(y0, y1, 5)) {
      root.append(svg("line", {x1: L, x2: W - R, y1: sy(t), y2: sy(t), class: "gridline"}),
                  svg("text", {x: L - 6, y: sy(t) + 4, "text-anchor": "end"}, fmt(t)));
    }
    for (const t of ticks(x0, x1, 8)) {
      root.append(svg("text", {x: sx(t), y: H - B + 15, "text-anchor": "middle"}, fmt(t)));
    }
    root.append(
      svg("line", {x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis"}),
      svg("line", {x1: L, x2: L, y1: T, y2: H - B, class: "axis"}),
      svg("text", {x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle"}, xlabel),
      svg("text", {x: 12, y: (T + H - B) / 2, transform: `rotate(-90 12 ${(T + H - B) / 2})`,
                   "text-anchor": "middle"}, ylabel));
    for (const s of series) {
      const pts = s.points.filter((p) => finite(p[0]) && finite(p[1]));
      if (s.step && pts.length) {
        let d = `M${sx(pts[0][0])},${sy(pts[0][1])}`;
        for (let i = 1; i < pts.length; i++) d += `H${sx(pts[i][0])}V${sy(pts[i][1])}`;
        root.append(svg("path", {d, fill: "none", stroke: s.color, "stroke-width": 2,
                                 opacity: s.dots ? 0.5 : 0.9}));
      }
      if (s.dots) {
        const g = svg("g", {fill: s.color, opacity: 0.75});
        for (const [x, y, id] of pts) {
          const c = svg("circle", {cx: sx(x), cy: sy(y), r: s.r || 3, class: "pt"},
                        svg("title", {}, id + ": " + fmt(y)));
          if (id) c.addEventListener("click", () => go({program: id}));
          g.append(c);
        }
        root.append(g);
      }
    }
    const legend = el("div", {class: "legend"});
    for (const s of series) {
      if (s.label) legend.append(el("span", {}, el("span", {class: "swatch", style: `background:${s.color}`}), s.label));
    }
    return el("div", {}, root, legend);
  }

  // ------------------------------------------------------------------ overview
  function renderOverview(main) {
    const scored = programs.filter((p) => (p.proposal || p.patch === "initial") && p.valid);
    const hidden = scored.filter((p) => !finite(p.score)).length;
    const series = [];
    for (const island of [...islands].sort((a, b) => a - b)) {
      const own = scored.filter((p) => p.island === island).sort((a, b) => a.gen - b.gen);
      const color = PALETTE[island % PALETTE.length];
      series.push({label: "island " + island, color, dots: true,
                   points: own.map((p) => [p.gen, p.score, p.id])});
      let best = -Infinity;
      const line = [];
      for (const p of own) if (finite(p.score) && p.score > best) { best = p.score; line.push([p.gen, best]); }
      if (line.length) line.push([Math.max(...programs.map((p) => p.gen)), best]);
      series.push({color, step: true, points: line});
    }
    const scoreChart = el("div", {class: "card", id: "chart-score"},
      el("h3", {}, "Every child's score and the best so far, by island"),
      chart(series, "generation", "score"),
      hidden ? el("p", {class: "muted"}, hidden + " valid programs with a non-finite score are not drawn") : null);

    // best score over cumulative LLM cost, one step per call in generation order
    const bestByGen = new Map();
    for (const p of scored) if (finite(p.score)) bestByGen.set(p.gen, Math.max(bestByGen.get(p.gen) ?? -Infinity, p.score));
    const gens = [...new Set([...bestByGen.keys(), ...callsByGen.keys()])].sort((a, b) => a - b);
    let spent = 0, best = -Infinity;
    const costLine = [];
    for (const g of gens) {
      for (const c of callsByGen.get(g) || []) spent += finite(c.cost) ? c.cost : 0;
      if (bestByGen.has(g)) best = Math.max(best, bestByGen.get(g));
      if (best > -Infinity) costLine.push([spent, best]);
    }
    const costChart = el("div", {class: "card", id: "chart-cost"},
      el("h3", {}, "Best score over cumulative LLM cost (USD)"),
      TOTAL_COST > 0 ? chart([{label: "best so far", color: PALETTE[0], step: true, dots: false, points: costLine}],
                             "cumulative cost (USD)", "best score")
        : el("p", {class: "muted"}, "No LLM cost recorded (offline operator, or models priced at zero)."));

    // outcomes of the proposals
    const counts = {};
    for (const p of proposals) counts[p.outcome] = (counts[p.outcome] || 0) + 1;
    const most = Math.max(1, ...Object.values(counts));
    const bars = el("div", {class: "card", id: "outcomes"}, el("h3", {}, "What became of the " + proposals.length + " proposals"));
    for (const [outcome, n] of Object.entries(counts).sort((a, b) => b[1] - a[1])) {
      bars.append(el("div", {class: "bar", onclick: () => go({view: "table", outcome})},
        el("span", {class: "label o-" + outcome}, outcome),
        el("span", {class: "fill", style: `width:${Math.max(2, 320 * n / most)}px;background:${OUTCOME_COLORS[outcome] || "#888"}`}),
        el("span", {class: "count"}, n + " (" + (100 * n / proposals.length).toFixed(0) + "%)")));
    }
    if (!proposals.length) bars.append(el("p", {class: "muted"}, "No proposal yet."));

    main.append(el("div", {class: "grid"}, scoreChart, costChart, bars, modelTable()));
  }

  function modelTable() {
    const stats = new Map();
    const row = (m) => { if (!stats.has(m)) stats.set(m, {calls: 0, failed: 0, pt: 0, ct: 0, cost: 0, children: 0, valid: 0, improved: 0}); return stats.get(m); };
    for (const c of DATA.calls) {
      const s = row(c.model);
      s.calls++; if (c.reply === null) s.failed++;
      s.pt += c.prompt_tokens; s.ct += c.completion_tokens; s.cost += finite(c.cost) ? c.cost : 0;
    }
    for (const p of proposals) {
      if (!p.model) continue;
      const s = row(p.model);
      s.children++; if (p.valid) s.valid++; if (p.improved) s.improved++;
    }
    const head = ["model", "calls", "failed", "prompt tokens", "completion tokens", "cost", "children", "valid", "improved"];
    const table = el("table", {class: "plain", id: "models"},
      el("tr", {}, head.map((h, i) => el("th", {class: i ? "n" : null}, h))));
    for (const [m, s] of [...stats.entries()].sort()) {
      table.append(el("tr", {}, el("td", {}, m),
        [s.calls, s.failed, s.pt, s.ct, money(s.cost), s.children, s.valid, s.improved].map((v) => el("td", {class: "n"}, fmt(v)))));
    }
    return el("div", {class: "card"}, el("h3", {}, "Models: calls, tokens, cost, improvements over the parent"),
              stats.size ? table : el("p", {class: "muted"}, "No model was called."));
  }

  // ------------------------------------------------------------------ lineage
  function renderLineage(main, state) {
    const island = Number(state.island || 0);
    const tabs = el("div", {class: "controls"}, "Island:");
    for (const i of [...islands].sort((a, b) => a - b)) {
      tabs.append(el("button", {class: "tab" + (i === island ? " here" : ""), onclick: () => go({view: "lineage", island: i})}, String(i)));
    }
    const legend = el("div", {class: "legend"},
      Object.entries(OUTCOME_COLORS).map(([o, c]) => el("span", {}, el("span", {class: "swatch", style: `background:${c}`}), o)),
      el("span", {}, "◆ migrant (from the ring neighbour)"), el("span", {}, "■ reset (re-seeded from another island)"),
      el("span", {}, "x: generation"));
    main.append(el("h2", {}, "Lineage of island " + island), tabs, legend);

    const nodes = programs.filter((p) => p.island === island && p.patch !== "reference");
    const here = new Set(nodes.map((p) => p.id));
    const kids = new Map(nodes.map((p) => [p.id, []]));
    const roots = [];
    for (const p of nodes) (here.has(p.parent) ? kids.get(p.parent) : roots).push(p);
    const maxGen = Math.max(1, ...nodes.map((p) => p.gen));
    const dx = Math.max(2, Math.min(40, 2400 / maxGen)), dy = 14, L = 30, T = 16;
    const pos = new Map();
    let row = 0;
    function place(root) {  // leaves in depth-first order; a parent in the middle of its children
      const stack = [[root, false]];
      while (stack.length) {
        const [p, done] = stack.pop();
        const cs = kids.get(p.id);
        if (done || !cs.length) {
          const y = cs.length ? (pos.get(cs[0].id).y + pos.get(cs[cs.length - 1].id).y) / 2 : T + dy * row++;
          pos.set(p.id, {x: L + p.gen * dx, y});
          continue;
        }
        stack.push([p, true]);
        for (let i = cs.length - 1; i >= 0; i--) stack.push([cs[i], false]);
      }
    }
    roots.sort((a, b) => a.gen - b.gen);
    for (const r of roots) place(r);
    const W = L + maxGen * dx + 120, H = T + dy * Math.max(row, 1) + 10;
    const root = svg("svg", {width: W, height: H, viewBox: `0 0 ${W} ${H}`, id: "lineage-svg"});
    const edges = svg("g", {});
    for (const p of nodes) {
      const a = pos.get(p.id);
      for (const c of kids.get(p.id)) {
        const b = pos.get(c.id);
        edges.append(svg("path", {class: "edge", d: `M${a.x},${a.y}H${(a.x + b.x) / 2}V${b.y}H${b.x}`}));
      }
    }
    root.append(edges);
    const g = svg("g", {});
    for (const p of nodes) {
      const {x, y} = pos.get(p.id);
      const color = OUTCOME_COLORS[p.outcome] || "#888";
      const title = svg("title", {}, `${p.id} · ${p.kind} · ${p.outcome} · score ${fmt(p.score)}` +
        (p.kind === "migrant" || p.kind === "reset" ? ` · copy of ${p.parent}` : ""));
      let shape;
      if (p.kind === "migrant") shape = svg("path", {d: `M${x},${y - 6}L${x + 6},${y}L${x},${y + 6}L${x - 6},${y}Z`, fill: color, stroke: "#111"});
      else if (p.kind === "reset") shape = svg("rect", {x: x - 5, y: y - 5, width: 10, height: 10, fill: color, stroke: "#111", "stroke-width": 2});
      else if (!p.valid) shape = svg("circle", {cx: x, cy: y, r: 3.5, fill: "#fff", stroke: color, "stroke-width": 1.5});
      else shape = svg("circle", {cx: x, cy: y, r: 4.5, fill: color});
      const node = svg("g", {class: "node", "data-id": p.id}, shape, title);
      node.addEventListener("click", () => go({program: p.id}));
      g.append(node);
      if (p === BEST || p.patch === "initial" || p.kind === "migrant" || p.kind === "reset") {
        g.append(svg("text", {x: x + 8, y: y + 3}, p.kind === "migrant" || p.kind === "reset" ? `← ${p.parent}` : p.id));
      }
    }
    root.append(g);
    main.append(el("div", {class: "lineage"}, nodes.length ? root : el("p", {class: "muted"}, "No program on this island.")));
  }

  // ------------------------------------------------------------------ table
  const ROW_H = 26;
  let searchIndex = null;  // per program: its texts as runs, to test against matching lines
  function matches(query) {
    if (!searchIndex) {
      searchIndex = programs.map((p) => {
        const runs = [p.code, p.feedback, p.error, ...p.calls.map((c) => c.reply)].filter(Boolean);
        return runs;
      });
    }
    const q = query.toLowerCase();
    const hit = new Uint8Array(LINES.length);
    const prefix = new Uint32Array(LINES.length + 1);
    for (let i = 0; i < LINES.length; i++) {
      hit[i] = LINES[i].toLowerCase().includes(q) ? 1 : 0;
      prefix[i + 1] = prefix[i] + hit[i];
    }
    return programs.map((p, i) => {
      if (p.id.toLowerCase().includes(q) || p.idea.toLowerCase().includes(q) || p.direction.toLowerCase().includes(q)) return true;
      for (const runs of searchIndex[i]) {
        for (let k = 0; k < runs.length; k += 2) if (prefix[runs[k] + runs[k + 1]] > prefix[runs[k]]) return true;
      }
      return false;
    });
  }
  function columns() {
    const cols = [
      {key: "id", label: "id", get: (p) => p.id},
      {key: "gen", label: "gen", get: (p) => p.gen, n: true},
      {key: "island", label: "island", get: (p) => p.island, n: true},
      {key: "patch", label: "patch", get: (p) => p.kind},
      {key: "model", label: "model", get: (p) => p.model || ""},
      {key: "outcome", label: "outcome", get: (p) => p.outcome},
      {key: "score", label: "score", get: (p) => p.score, n: true},
      {key: "delta", label: "Δ parent", get: (p) => p.delta, n: true, show: fmtDelta},
    ];
    for (const m of DATA.columns) cols.push({key: "m:" + m, label: m, get: (p) => p.metrics[m], n: true});
    cols.push({key: "idea", label: "idea / reason", get: (p) => p.idea || (p.valid ? "" : firstLine(p))});
    return cols;
  }
  const firstLineCache = new Map();
  function firstLine(p) {
    if (!firstLineCache.has(p.id)) firstLineCache.set(p.id, p.error ? LINES[p.error[0]] : "");
    return firstLineCache.get(p.id);
  }
  function compare(a, b) {  // numbers before text; NaN and missing last
    const ka = a === null || a === undefined || Number.isNaN(a), kb = b === null || b === undefined || Number.isNaN(b);
    if (ka || kb) return ka - kb;
    if (typeof a === "number" && typeof b === "number") return a - b;
    return String(a).localeCompare(String(b), undefined, {numeric: true});
  }

  function renderTable(main, state) {
    const cols = columns();
    const filters = [["island", (p) => String(p.island)], ["model", (p) => p.model || ""],
                     ["patch", (p) => p.kind], ["outcome", (p) => p.outcome]];
    const controls = el("div", {class: "controls"});
    const body = el("div", {class: "vbody", id: "table-body"});
    const count = el("span", {class: "muted", id: "table-count"});
    const grid = cols.map((c) => (c.key === "idea" ? "minmax(200px, 3fr)" : c.key === "id" ? "120px" : "minmax(60px, 1fr)")).join(" ");
    let rows = [];

    function refresh() {
      const q = (state.q || "").trim();
      const found = q ? matches(q) : null;
      rows = programs.filter((p, i) => (!found || found[i]) &&
        filters.every(([k, get]) => !state[k] || get(p) === state[k]));
      const col = cols.find((c) => c.key === state.sort);
      if (col) {
        const dir = state.dir === "desc" ? -1 : 1;
        rows = rows.map((p, i) => [p, i]).sort((a, b) => {
          const va = col.get(a[0]), vb = col.get(b[0]);
          const missing = (v) => v === null || v === undefined || Number.isNaN(v);
          if (missing(va) || missing(vb)) return (missing(va) - missing(vb)) || a[1] - b[1];
          return dir * compare(va, vb) || a[1] - b[1];
        }).map((x) => x[0]);
      }
      count.textContent = rows.length + " of " + programs.length + " programs";
      head.querySelectorAll("span").forEach((s, i) => {
        s.textContent = cols[i].label + (cols[i].key === state.sort ? (state.dir === "desc" ? " ▼" : " ▲") : "");
      });
      spacer.style.height = rows.length * ROW_H + "px";
      paint();
    }
    const shown = new Map();
    function paint() {  // only the rows in view (and a margin) exist in the DOM
      const first = Math.max(0, Math.floor(body.scrollTop / ROW_H) - 20);
      const last = Math.min(rows.length, first + Math.ceil((body.clientHeight || 800) / ROW_H) + 40);
      for (const node of shown.values()) node.remove();
      shown.clear();
      for (let i = first; i < last; i++) {
        const p = rows[i];
        const row = el("a", {class: "vrow", href: "#program=" + encodeURIComponent(p.id), "data-id": p.id,
                             style: `top:${i * ROW_H}px;grid-template-columns:${grid}`});
        for (const c of cols) {
          const v = c.get(p);
          const cell = el("span", {class: (c.n ? "n " : "") + (c.key === "outcome" ? "o-" + v : "")}, c.show ? c.show(v) : fmt(v));
          if (c.key === "idea" && v) cell.title = v;
          row.append(cell);
        }
        spacer.append(row);
        shown.set(i, row);
      }
    }
    const head = el("div", {class: "vhead", style: `grid-template-columns:${grid}`},
      cols.map((c) => el("span", {class: c.n ? "n" : null, onclick: () => {
        state.dir = state.sort === c.key && state.dir !== "desc" ? "desc" : "asc";
        if (state.sort !== c.key) state.dir = c.n ? "desc" : "asc";
        state.sort = c.key;
        replaceState(state); refresh();
      }}, c.label)));
    const spacer = el("div", {style: "position:relative"});
    body.append(spacer);
    body.addEventListener("scroll", paint);

    for (const [key, get] of filters) {
      const values = [...new Set(programs.map(get))].sort((a, b) => compare(a, b));
      const select = el("select", {name: key, onchange: (e) => { state[key] = e.target.value; replaceState(state); refresh(); }},
        el("option", {value: ""}, "all"), values.map((v) => el("option", {value: v}, v === "" ? "(none)" : v)));
      select.value = state[key] || "";
      controls.append(el("label", {}, key + " ", select));
    }
    const search = el("input", {type: "search", name: "q", placeholder: "search code, feedback, errors, replies, ideas",
                                value: state.q || ""});
    let timer = null;
    search.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => { state.q = search.value; replaceState(state); refresh(); }, 200);
    });
    controls.append(search, count);
    main.append(el("h2", {}, "Programs"), controls, el("div", {class: "vtable"}, head, body));
    refresh();
  }

  // ------------------------------------------------------------------ line diff (LCS)
  function diffLines(a, b) {  // [[" " | "-" | "+", line]] from a to b
    let start = 0;
    while (start < a.length && start < b.length && a[start] === b[start]) start++;
    let ea = a.length, eb = b.length;
    while (ea > start && eb > start && a[ea - 1] === b[eb - 1]) { ea--; eb--; }
    const out = a.slice(0, start).map((l) => [" ", l]);
    const A = a.slice(start, ea), B = b.slice(start, eb), n = A.length, m = B.length;
    if (n * m > 25e6) {  // too large to align: all of one, then all of the other
      A.forEach((l) => out.push(["-", l])); B.forEach((l) => out.push(["+", l]));
    } else {
      const w = m + 1, lcs = new Uint32Array((n + 1) * w);  // lcs[i][j]: of A[i:] and B[j:]
      for (let i = n - 1; i >= 0; i--) {
        for (let j = m - 1; j >= 0; j--) {
          lcs[i * w + j] = A[i] === B[j] ? lcs[(i + 1) * w + j + 1] + 1 : Math.max(lcs[(i + 1) * w + j], lcs[i * w + j + 1]);
        }
      }
      let i = 0, j = 0;
      while (i < n || j < m) {
        if (i < n && j < m && A[i] === B[j]) { out.push([" ", A[i]]); i++; j++; }
        else if (j < m && (i === n || lcs[i * w + j + 1] >= lcs[(i + 1) * w + j])) { out.push(["+", B[j]]); j++; }
        else { out.push(["-", A[i]]); i++; }
      }
    }
    for (let k = ea; k < a.length; k++) out.push([" ", a[k]]);
    return out;
  }
  function diffView(fromCode, toCode, context) {
    const ops = diffLines(fromCode.split("\n"), toCode.split("\n"));
    const pre = el("pre", {class: "diff"});
    const changed = ops.map((o) => o[0] !== " ");
    const near = new Uint8Array(ops.length);
    changed.forEach((c, i) => { if (c) for (let k = Math.max(0, i - context); k <= Math.min(ops.length - 1, i + context); k++) near[k] = 1; });
    let skipped = 0, adds = 0, dels = 0;
    const flush = () => { if (skipped) pre.append(el("span", {class: "skip"}, `… ${skipped} unchanged lines …`)); skipped = 0; };
    ops.forEach(([op, line], i) => {
      if (op === "+") adds++; if (op === "-") dels++;
      if (!near[i]) { skipped++; return; }
      flush();
      pre.append(el("span", {class: op === "+" ? "add" : op === "-" ? "del" : "same"}, op + " " + line));
    });
    flush();
    return {pre, adds, dels};
  }

  // ------------------------------------------------------------------ program view
  function section(title, ...content) { return el("section", {}, el("h3", {}, title), content); }
  function textBlock(value, cls, id) { return el("pre", {class: cls || "wrap", id}, value); }

  function renderProgram(main, state) {
    const p = byId.get(state.program);
    if (!p) { main.append(el("h2", {}, "No program " + state.program + " in this run"), el("a", {href: "#view=table"}, "all programs")); return; }
    const parent = byId.get(p.parent);
    main.append(el("h2", {id: "program-title"}, "Program " + p.id + " ", outcomeBadge(p),
                   el("span", {class: "badge"}, p.kind), el("span", {class: "badge"}, "island " + p.island),
                   el("span", {class: "badge"}, "generation " + p.gen)));
    const facts = el("dl", {class: "kv"});
    const fact = (k, ...v) => facts.append(el("dt", {}, k), el("dd", {}, v));
    fact("score", fmt(p.score), p.delta !== null ? el("span", {class: p.delta > 0 ? "up" : p.delta < 0 ? "down" : ""}, " (" + fmtDelta(p.delta) + " from the parent)") : null);
    fact("parent", p.parent ? link(p.parent) : "–", parent && parent.island !== p.island ? ` (island ${parent.island})` : "");
    if (p.other) fact("second parent", link(p.other));
    if (p.dup) fact("duplicate of", link(p.dup));
    if (p.kind === "migrant" || p.kind === "reset") fact(p.kind, `a copy of ${p.parent}` + (p.kind === "reset" ? ", re-seeding a stagnant island" : ", by ring migration"));
    fact("model", p.model || "–");
    if (p.idea) fact("idea", p.idea);
    if (p.direction) fact("direction", p.direction);
    fact("children", p.children.length ? p.children.slice(0, 60).map((c, i) => [i ? ", " : "", link(c.id)]) : "none",
         p.children.length > 60 ? ` … (${p.children.length})` : "");
    fact("evaluation", finite(p.eval_s) ? fmt(p.eval_s) + " s" : "–");
    main.append(facts);

    if (p.error !== null) main.append(section(p.valid ? "Error" : "Why it was not scored (as stored)", textBlock(text(p.error), "wrap", "program-error")));

    const code = text(p.code) || "";
    if (code) {
      const others = el("select", {id: "compare-with", onchange: (e) => go({...state, vs: e.target.value})},
        el("option", {value: ""}, "the parent" + (parent ? " (" + parent.id + ")" : "")),
        programs.filter((q) => q !== p && q.code && q.code.length).map((q) =>
          el("option", {value: q.id}, `${q.id} · gen ${q.gen} · ${q.outcome} · ${fmt(q.score)}`)));
      others.value = byId.has(state.vs) ? state.vs : "";
      const against = byId.get(state.vs) || parent;
      const box = el("div", {id: "program-diff"});
      if (against && against.code) {
        const {pre, adds, dels} = diffView(text(against.code), code, 3);
        box.append(el("p", {class: "muted"}, `from ${against.id} to ${p.id}: ${adds} lines added, ${dels} removed`), pre);
      } else box.append(el("p", {class: "muted"}, "No program to compare with."));
      main.append(section("Diff", el("div", {class: "controls"}, el("label", {}, "compare with ", others)), box));
      main.append(el("details", {id: "program-code"}, el("summary", {}, "Code (" + code.split("\n").length + " lines)"), textBlock(code, "")));
    } else main.append(section("Code", el("p", {class: "muted"}, "No code: the proposal stopped before a program was made.")));

    const names = Object.keys(p.metrics);
    if (names.length) {
      const table = el("table", {class: "plain", id: "program-metrics"},
        el("tr", {}, el("th", {}, "metric"), el("th", {class: "n"}, "value"), el("th", {class: "n"}, "parent"), el("th", {class: "n"}, "change")));
      for (const m of names) {
        const v = p.metrics[m], pv = parent ? parent.metrics[m] : undefined;
        const d = finite(v) && finite(pv) ? v - pv : null;
        table.append(el("tr", {}, el("td", {}, m), el("td", {class: "n"}, fmt(v)), el("td", {class: "n"}, pv === undefined ? "–" : fmt(pv)),
          el("td", {class: "n " + (d > 0 ? "up" : d < 0 ? "down" : "")}, d === null ? "–" : fmtDelta(d))));
      }
      main.append(section("Metrics", table));
    }
    const feedback = text(p.feedback);
    if (feedback) main.append(section("Evaluator feedback", textBlock(feedback, "wrap", "program-feedback")));

    if (p.calls.length) {
      const box = el("div", {id: "program-calls"});
      for (const c of p.calls) {
        const used = c === p.call;
        const facts2 = el("dl", {class: "kv"});
        const f = (k, v) => facts2.append(el("dt", {}, k), el("dd", {}, v));
        f("model", c.model); f("temperature", fmt(c.temperature));
        f("tokens", `${fmt(c.prompt_tokens)} prompt + ${fmt(c.completion_tokens)} completion`);
        f("cost", money(c.cost)); f("latency", fmt(c.latency_s) + " s"); f("attempts", fmt(c.attempts));
        box.append(el("div", {class: "card"},
          el("h3", {}, "LLM call" + (used ? " (this program's)" : " (earlier attempt)")), facts2,
          c.error !== null ? [el("h3", {}, "Call error"), textBlock(text(c.error))] : null,
          el("details", {}, el("summary", {}, "System prompt"), textBlock(text(c.system), "wrap")),
          el("details", {}, el("summary", {}, "User prompt"), textBlock(text(c.user), "wrap")),
          el("h3", {}, "Reply"),
          c.reply !== null ? textBlock(text(c.reply), "wrap", used ? "program-reply" : null) : el("p", {class: "muted"}, "No reply.")));
      }
      main.append(section("LLM", box));
    } else if (p.proposal) main.append(section("LLM", el("p", {class: "muted"}, p.model ? "No call recorded for this generation." : "No model call: the offline operator made it.")));
  }

  // ------------------------------------------------------------------ Pareto
  function renderPareto(main) {
    const [maxKey, minKey] = DATA.pareto;
    const candidates = programs.filter((p) => p.valid && p.patch !== "migrant" && finite(p.metrics[maxKey]) && finite(p.metrics[minKey]));
    const sorted = [...candidates].sort((a, b) => b.metrics[maxKey] - a.metrics[maxKey] || a.metrics[minKey] - b.metrics[minKey]);
    const front = [];
    let lowest = Infinity;
    for (let i = 0; i < sorted.length;) {
      let j = i;
      while (j < sorted.length && sorted[j].metrics[maxKey] === sorted[i].metrics[maxKey]) j++;
      const groupMin = sorted[i].metrics[minKey];
      if (groupMin < lowest) for (let k = i; k < j && sorted[k].metrics[minKey] === groupMin; k++) front.push(sorted[k]);
      lowest = Math.min(lowest, groupMin);
      i = j;
    }
    const onFront = new Set(front);
    const pt = (p) => [p.metrics[minKey], p.metrics[maxKey], p.id];
    const byMin = [...front].sort((a, b) => a.metrics[minKey] - b.metrics[minKey]);
    main.append(el("h2", {}, `Pareto front: ${maxKey} (higher is better) against ${minKey} (lower is better)`),
      el("div", {class: "card", id: "pareto-chart"}, chart([
        {label: "programs", color: "#9aa4b2", dots: true, points: candidates.filter((p) => !onFront.has(p) && p.patch !== "reference").map(pt)},
        {label: "references", color: PALETTE[3], dots: true, r: 4, points: candidates.filter((p) => !onFront.has(p) && p.patch === "reference").map(pt)},
        {label: "front", color: PALETTE[1], dots: true, step: true, r: 4.5, points: byMin.map(pt)},
      ], minKey, maxKey)));
    const table = el("table", {class: "plain", id: "pareto-front"},
      el("tr", {}, ["id", "kind", maxKey, minKey, "score"].map((h, i) => el("th", {class: i > 1 ? "n" : null}, h))));
    for (const p of byMin) {
      table.append(el("tr", {}, el("td", {}, link(p.id)), el("td", {}, p.kind),
        [p.metrics[maxKey], p.metrics[minKey], p.score].map((v) => el("td", {class: "n"}, fmt(v)))));
    }
    main.append(section(front.length + " programs on the front (of " + candidates.length + " with both values)", table));
  }

  // ------------------------------------------------------------------ routing, live reload
  function render() {
    const state = getState();
    const view = state.program ? "program" : (state.view || "overview");
    renderHeader(view);
    const main = document.getElementById("view");
    main.replaceChildren();
    if (view === "program") renderProgram(main, state);
    else if (view === "lineage") renderLineage(main, state);
    else if (view === "table") renderTable(main, state);
    else if (view === "pareto" && DATA.pareto.length === 2) renderPareto(main);
    else renderOverview(main);
    document.body.dataset.view = view;
  }
  window.addEventListener("hashchange", () => { render(); window.scrollTo(0, 0); });
  render();
  restoreScroll();
  document.body.dataset.ready = "1";

  function restoreScroll() {
    try {
      const saved = JSON.parse(sessionStorage.getItem("run-page-scroll") || "null");
      sessionStorage.removeItem("run-page-scroll");
      if (saved && saved.hash === location.hash) {
        window.scrollTo(0, saved.y);
        const body = document.getElementById("table-body");
        if (body) body.scrollTop = saved.table;
      }
    } catch (e) { /* storage unavailable: the view is still kept by the hash */ }
  }
  function reloadLater() {
    setTimeout(() => {
      const typing = document.activeElement && ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
      if (typing) { reloadLater(); return; }
      try {
        const body = document.getElementById("table-body");
        sessionStorage.setItem("run-page-scroll", JSON.stringify({hash: location.hash, y: window.scrollY, table: body ? body.scrollTop : 0}));
      } catch (e) { /* see restoreScroll */ }
      location.reload();
    }, DATA.refresh_s * 1000);
  }
  if (DATA.live) reloadLater();
}
