// dbksvd explorer: one front end for the server (JSON API under /api) and for the static
// export (data/*.js files that fill window.DBKSVD_DATA; loaded with <script> so that it works
// from file://). Every view renders with DOM nodes (textContent), never innerHTML of data.
"use strict";

const STATIC = Boolean(window.DBKSVD_STATIC);
const PAGE = 48;
const cache = {};

// ---------------------------------------------------------------------------------------------
// data access: the same answers from the API or from the exported files

function loadScript(key, file) {
  window.DBKSVD_DATA = window.DBKSVD_DATA || {};
  if (key in window.DBKSVD_DATA) return Promise.resolve(window.DBKSVD_DATA[key]);
  if (!cache[file]) {
    cache[file] = new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = file;
      s.onload = () => resolve();
      s.onerror = () => reject(new Error("missing data file " + file));
      document.head.appendChild(s);
    });
  }
  return cache[file].then(() => {
    if (!(key in window.DBKSVD_DATA)) throw new Error("no data for " + key);
    return window.DBKSVD_DATA[key];
  });
}

async function apiGet(path, params) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== "") qs.set(k, v);
  const url = "api/" + path + (qs.toString() ? "?" + qs : "");
  const res = await fetch(url);
  const body = await res.json().catch(() => ({ error: "HTTP " + res.status }));
  if (!res.ok) throw new Error(body.error || "HTTP " + res.status);
  return body;
}

const safeName = (id) => id.replace(/[^A-Za-z0-9_.-]/g, "-");

function matches(text, words) { return words.every((w) => text.includes(w)); }

// the gallery query of Run.gallery, over the exported index
function queryIndex(index, p) {
  const words = (p.q || "").toLowerCase().split(/\s+/).filter(Boolean);
  let rows = index.atoms.filter((a) =>
    (p.min_faithfulness == null || (a.faithfulness != null && a.faithfulness >= p.min_faithfulness)) &&
    (p.min_specificity == null || (a.specificity != null && a.specificity >= p.min_specificity)) &&
    (p.min_usage == null || (a.usage != null && a.usage >= p.min_usage)) &&
    (p.described == null || (a.text !== "") === p.described) &&
    (!words.length || matches(a.text, words)));
  const key = p.sort || "usage", sign = (p.order || "desc") === "desc" ? -1 : 1;
  rows = rows.slice().sort((x, y) => {
    const a = x[key], b = y[key];
    if (a == null && b == null) return x.atom - y.atom;
    if (a == null) return 1;
    if (b == null) return -1;
    return a === b ? x.atom - y.atom : sign * (a - b);
  });
  const offset = p.offset || 0, limit = p.limit || PAGE;
  return { model: index.model, total: rows.length, atoms_in_model: index.atoms.length, offset, limit,
           atoms: rows.slice(offset, offset + limit) };
}

const data = {
  overview: () => STATIC ? loadScript("overview", "data/overview.js") : apiGet("overview"),
  gallery: async (model, p) => STATIC
    ? queryIndex(await loadScript("index/" + model, `data/index-${safeName(model)}.js`), p)
    : apiGet(`models/${encodeURIComponent(model)}/atoms`, p),
  atom: async (model, j) => {
    if (!STATIC) return apiGet(`models/${encodeURIComponent(model)}/atoms/${j}`);
    const chunk = Math.floor(j / window.DBKSVD_STATIC.chunk);
    const recs = await loadScript(`atoms/${model}/${chunk}`, `data/atoms-${safeName(model)}-${chunk}.js`);
    if (!recs[j]) throw new Error(`no atom ${j} in ${model}`);
    return recs[j];
  },
  items: async (p) => {
    if (!STATIC) return apiGet("items", p);
    const all = await loadScript("items", "data/items.js");
    const words = (p.q || "").toLowerCase().split(/\s+/).filter(Boolean);
    const hits = words.length ? all.filter((it) => matches(((it.caption || "") + " " + it.id).toLowerCase(), words)) : all;
    const offset = p.offset || 0, limit = p.limit || PAGE;
    return { total: hits.length, offset, limit, items: hits.slice(offset, offset + limit) };
  },
  search: async (q) => {
    q = q.split(/\s+/).filter(Boolean).join(" ");
    if (!q) throw new Error("the query is empty");
    if (!STATIC) return apiGet("search", { q, limit: 10 });
    const ov = await data.overview();
    const words = q.toLowerCase().split(/\s+/).filter(Boolean);
    const atoms = [];
    for (const m of ov.models.filter((m) => !m.problem)) {
      const index = await loadScript("index/" + m.id, `data/index-${safeName(m.id)}.js`);
      const hits = index.atoms.filter((a) => a.text && matches(a.text, words));
      const phrase = q.toLowerCase();  // as the server: descriptions holding the whole phrase first
      const has = (a) => ((a.description || "").toLowerCase().includes(phrase) ? 0 : 1);
      hits.sort((x, y) => (has(x) - has(y)) || ((y.faithfulness || 0) - (x.faithfulness || 0)));
      atoms.push({ model: m.id, by_text: hits.slice(0, 10), by_text_total: hits.length, by_embedding: [], by_direction: [] });
    }
    const found = ov.store ? await data.items({ q, limit: 10 }) : { items: [], total: 0 };
    return { q, atoms, items: { by_text: found.items, by_text_total: found.total, by_embedding: [] },
             notes: ["search by embedding needs the server (dbksvd serve): this static site matches words"] };
  },
  decompose: async (row) => {
    if (!STATIC) return apiGet("decompose", { row });
    const chunk = Math.floor(row / window.DBKSVD_STATIC.chunk);
    const all = await loadScript(`decompose/${chunk}`, `data/decompose-${chunk}.js`).catch(() => ({}));
    if (!all[row]) throw new Error(`item ${row} is not in this export (dbksvd export-site --max-items)`);
    return all[row];
  },
  upload: async (file) => {
    const res = await fetch("api/decompose/image", { method: "POST", body: file,
                                                    headers: { "Content-Type": file.type || "application/octet-stream" } });
    const body = await res.json().catch(() => ({ error: "HTTP " + res.status }));
    if (!res.ok) throw new Error(body.error || "HTTP " + res.status);
    return body;
  },
};

const thumbURL = (row) => STATIC ? `thumbs/${row}.png` : `api/items/${row}/thumbnail.png`;
const fileURL = (rel) => STATIC ? `files/${rel}` : `files/${rel}`;

// ---------------------------------------------------------------------------------------------
// DOM helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const fmt = (v, d = 3) => (v === null || v === undefined || Number.isNaN(v)) ? "–" : Number(v).toFixed(d);
const pct = (v) => (v === null || v === undefined) ? "–" : (100 * v).toFixed(1) + "%";

function badge(label, value, good) {
  const cls = value == null ? "badge none" : (good != null && value >= good ? "badge good" : "badge");
  return h("span", { class: cls, title: label }, `${label} ${fmt(value, 2)}`);
}

function thumb(row, caption, features) {
  if (!features || !features.thumbnails || row == null) return h("span", { class: "thumb text" }, caption || "");
  return h("img", { class: "thumb", src: thumbURL(row), alt: caption || `item ${row}`, title: caption || "",
                    loading: "lazy", onerror: (e) => { e.target.replaceWith(h("span", { class: "thumb text" }, caption || "")); } });
}

function atomLink(model, atom, text) { return h("a", { href: `#/atom/${encodeURIComponent(model)}/${atom}` }, text); }

function bars(title, rows, max = 1) {
  // rows: [{label, value, ref}] drawn as horizontal bars (ref: a thin marker, e.g. random directions)
  const W = 460, rowH = 22, left = 170, H = rows.length * rowH + 28;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", title);
  const add = (tag, attrs, text) => {
    const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    svg.appendChild(el);
  };
  add("text", { x: 0, y: 14, class: "chart-title" }, title);
  rows.forEach((r, i) => {
    const y = 24 + i * rowH, w = Math.max(0, (W - left - 50) * (r.value || 0) / max);
    add("text", { x: left - 6, y: y + 14, "text-anchor": "end" }, r.label);
    add("rect", { x: left, y: y + 3, width: w, height: rowH - 8, class: "bar" });
    add("text", { x: left + w + 4, y: y + 14 }, fmt(r.value));
    if (r.ref != null) {
      const x = left + (W - left - 50) * r.ref / max;
      add("line", { x1: x, x2: x, y1: y, y2: y + rowH - 2, class: "ref" });
    }
  });
  return svg;
}

function histogram(hist) {
  const counts = hist.counts || [], n = counts.length, top = Math.max(1, ...counts);
  const W = 420, H = 140, pad = 20, bw = (W - 2 * pad) / Math.max(n, 1);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H + 20}`);
  svg.setAttribute("class", "chart histogram");
  const add = (tag, attrs, text) => {
    const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    svg.appendChild(el);
  };
  counts.forEach((c, i) => {
    const bh = (H - 10) * c / top;
    add("rect", { x: pad + i * bw + 1, y: H - bh, width: bw - 2, height: bh, class: i < n / 2 - 0.5 ? "bar neg" : "bar" });
  });
  add("line", { x1: W / 2, x2: W / 2, y1: 0, y2: H, class: "ref" });
  add("text", { x: pad, y: H + 15 }, `−${fmt(hist.max, 2)}`);
  add("text", { x: W / 2, y: H + 15, "text-anchor": "middle" }, "0");
  add("text", { x: W - pad, y: H + 15, "text-anchor": "end" }, fmt(hist.max, 2));
  return svg;
}

function table(columns, rows) {
  return h("table", {}, h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c[0])))),
    h("tbody", {}, rows.map((r) => h("tr", {}, columns.map((c) => h("td", {}, c[1](r)))))));
}

// ---------------------------------------------------------------------------------------------
// views

let overviewData = null;
async function overview() {
  if (!overviewData) overviewData = await data.overview();
  return overviewData;
}

function firstModel(ov) { const m = ov.models.find((m) => !m.problem); return m ? m.id : null; }

async function viewOverview(view) {
  const ov = await overview();
  const s = ov.store;
  view.append(h("h1", {}, `Run ${ov.run}`));
  if (s) {
    view.append(h("p", { id: "dataset" },
      `Dataset ${s.dataset}: ${s.count} items (${s.captioned} with captions) in the store folder ${s.folder}/; spaces: `,
      Object.entries(s.spaces).map(([n, sp], i) => `${i ? ", " : ""}${n} (${sp.encoder}, ${sp.dim}-d)`)));
  }
  if (ov.missing.length || ov.problems.length) {
    view.append(h("section", { class: "missing", id: "missing" }, h("h2", {}, "Missing from this run"),
      h("ul", {}, ov.missing.map((m) => h("li", {}, m)), ov.problems.map((p) => h("li", { class: "problem" }, p)))));
  }
  view.append(h("h2", {}, "Methods"));
  const usable = ov.models;
  view.append(table([
    ["model", (m) => m.problem ? h("span", { class: "problem" }, `${m.folder}: ${m.problem}`) : h("a", { href: `#/gallery/${encodeURIComponent(m.id)}` }, m.folder)],
    ["architecture", (m) => m.architecture], ["coder", (m) => m.coder], ["space", (m) => m.space || "–"],
    ["K", (m) => m.atoms], ["k", (m) => m.k ?? "–"],
    ["explained signal", (m) => fmt(m.heldout && m.heldout.explained_signal)],
    ["explained variance", (m) => fmt(m.heldout && m.heldout.explained_variance)],
    ["faithfulness", (m) => m.faithfulness == null ? "–" : `${fmt(m.faithfulness)} (random ${fmt(m.random && m.random.faithfulness)})`],
    ["specificity", (m) => m.specificity == null ? "–" : `${fmt(m.specificity)} (random ${fmt(m.random && m.random.specificity)})`],
    ["diversity", (m) => fmt(m.diversity)],
  ], usable));
  if (ov.heldout_split) view.append(h("p", { class: "muted" }, `Held-out metrics: ${ov.heldout_split} rows of the store; faithfulness and specificity on each explanation's test items.`));
  const charts = h("div", { class: "charts" });
  const withES = usable.filter((m) => m.heldout && m.heldout.explained_signal != null);
  if (withES.length) charts.append(bars("held-out explained signal", withES.map((m) => ({ label: m.folder, value: m.heldout.explained_signal }))));
  const withF = usable.filter((m) => m.faithfulness != null);
  if (withF.length) charts.append(bars("faithfulness (| = random directions)", withF.map((m) => ({ label: m.folder, value: m.faithfulness, ref: m.random && m.random.faithfulness }))));
  if (charts.childNodes.length) view.append(charts);
  for (const rep of ov.reports) {
    view.append(h("h2", {}, `Comparison report ${rep.folder}`));
    const cols = ["method", "k", "coder", "l0", "explained_signal", "explained_variance", "faithfulness", "specificity", "diversity"]
      .filter((c) => rep.rows.some((r) => r[c] !== undefined));
    view.append(table(cols.map((c) => [c.replace(/_/g, " "), (r) => typeof r[c] === "number" && !Number.isInteger(r[c]) ? fmt(r[c]) : (r[c] ?? "–")]), rep.rows));
    view.append(h("div", { class: "charts" }, rep.plots.map((p) => h("img", { src: fileURL(p), alt: p, class: "plot" }))));
    view.append(h("p", {}, h("a", { href: fileURL(rep.html) }, "full report")));
  }
}

function readParams(qs) {
  const p = Object.fromEntries(new URLSearchParams(qs));
  for (const k of ["min_faithfulness", "min_specificity", "min_usage"]) p[k] = p[k] === undefined || p[k] === "" ? null : Number(p[k]);
  p.page = Math.max(0, parseInt(p.page || "0", 10) || 0);
  return p;
}

function setHash(path, params) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "" && !(k === "page" && v === 0)) qs.set(k, v);
  location.hash = path + (qs.toString() ? "?" + qs : "");
}

async function viewGallery(view, model, qs) {
  const ov = await overview();
  model = model || firstModel(ov);
  if (!model) { view.append(h("p", {}, "This run has no usable model.")); return; }
  const p = readParams(qs);
  const params = { sort: p.sort || "usage", order: p.order || "desc", q: p.q || "", min_faithfulness: p.min_faithfulness,
                   min_specificity: p.min_specificity, min_usage: p.min_usage, page: p.page };
  const go = (changes) => setHash(`#/gallery/${encodeURIComponent(model)}`, { ...params, page: 0, ...changes });
  const form = h("form", { class: "controls", id: "gallery-controls", onsubmit: (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    go({ q: f.get("q"), sort: f.get("sort"), order: f.get("order"), min_faithfulness: f.get("min_faithfulness"),
         min_specificity: f.get("min_specificity"), min_usage: f.get("min_usage"), model: undefined });
  } },
    h("label", {}, "model ", h("select", { name: "model", onchange: (e) => setHash(`#/gallery/${encodeURIComponent(e.target.value)}`, {}) },
      ov.models.filter((m) => !m.problem).map((m) => h("option", { value: m.id, selected: m.id === model }, m.folder)))),
    h("label", {}, "sort ", h("select", { name: "sort" }, ["usage", "faithfulness", "specificity", "atom"].map((k) => h("option", { value: k, selected: k === params.sort }, k)))),
    h("select", { name: "order", "aria-label": "order" }, [["desc", "high first"], ["asc", "low first"]].map(([v, t]) => h("option", { value: v, selected: v === params.order }, t))),
    h("input", { name: "q", type: "search", placeholder: "filter descriptions", value: params.q, maxlength: 200 }),
    h("label", {}, "faithfulness ≥ ", h("input", { name: "min_faithfulness", type: "number", step: "0.05", min: 0, max: 1, value: params.min_faithfulness ?? "" })),
    h("label", {}, "specificity ≥ ", h("input", { name: "min_specificity", type: "number", step: "0.05", min: 0, max: 1, value: params.min_specificity ?? "" })),
    h("label", {}, "usage ≥ ", h("input", { name: "min_usage", type: "number", step: "0.001", min: 0, max: 1, value: params.min_usage ?? "" })),
    h("button", { type: "submit" }, "apply"));
  view.append(h("h1", {}, "Atoms of ", model), form);
  const q = { sort: params.sort, order: params.order, q: params.q, min_faithfulness: params.min_faithfulness,
              min_specificity: params.min_specificity, min_usage: params.min_usage, offset: p.page * PAGE, limit: PAGE };
  const res = await data.gallery(model, q);
  const pages = Math.max(1, Math.ceil(res.total / PAGE));
  const pager = () => h("div", { class: "pager" },
    h("button", { disabled: p.page <= 0, onclick: () => setHash(`#/gallery/${encodeURIComponent(model)}`, { ...params, page: p.page - 1 }) }, "‹ previous"),
    h("span", { class: "page-info" }, `page ${p.page + 1} of ${pages} · ${res.total} of ${res.atoms_in_model} atoms`),
    h("button", { disabled: p.page + 1 >= pages, onclick: () => setHash(`#/gallery/${encodeURIComponent(model)}`, { ...params, page: p.page + 1 }) }, "next ›"));
  view.append(pager());
  view.append(h("div", { class: "grid", id: "gallery" }, res.atoms.map((a) => card(model, a, ov.features))));
  if (!res.atoms.length) view.append(h("p", { class: "muted" }, "No atom matches."));
  view.append(pager());
}

function card(model, a, features) {
  return h("a", { class: "card atom-card", href: `#/atom/${encodeURIComponent(model)}/${a.atom}`, "data-atom": a.atom },
    h("div", { class: "card-head" }, h("span", { class: "atom-id" }, `#${a.atom}${a.side ? " " + a.side : ""}`),
      badge("F", a.faithfulness, 0.75), badge("S", a.specificity, 0.5), h("span", { class: "badge" }, `used ${pct(a.usage)}`)),
    h("div", { class: "description" }, a.description || h("span", { class: "muted" }, a.note || "no description")),
    h("div", { class: "thumbs" }, (a.top || []).map((t) => thumb(t.row, t.caption, features))));
}

async function viewAtom(view, model, j) {
  const ov = await overview();
  const a = await data.atom(model, j);
  view.append(h("p", {}, h("a", { href: `#/gallery/${encodeURIComponent(model)}` }, `← atoms of ${model}`),
    " · ", j > 0 ? atomLink(model, j - 1, `#${j - 1}`) : "", " ", j + 1 < a.n_atoms ? atomLink(model, j + 1, `#${j + 1}`) : ""));
  view.append(h("h1", { id: "atom-title" }, `Atom ${a.atom}`, a.side ? ` (${a.side})` : "", ": ",
    a.description || h("span", { class: "muted" }, a.note || "no description")));
  view.append(h("p", {}, badge("faithfulness", a.faithfulness, 0.75), " ", badge("specificity", a.specificity, 0.5), " ",
    `source ${a.source || "–"} · used by ${pct(a.usage)} of items (${a.count_positive} +, ${a.count_negative} −)`));
  if (a.other_side) view.append(h("p", {}, `other side (${a.other_side.side}): ${a.other_side.description} `, badge("faithfulness", a.other_side.faithfulness, 0.75)));
  const side = (title, items) => h("section", { class: "side" }, h("h2", {}, title),
    items.length ? h("div", { class: "items" }, items.map((t) => h("a", { class: "item", href: `#/decompose?row=${t.row}` },
      thumb(t.row, t.caption, ov.features), h("span", { class: "caption" }, t.caption || t.id), h("span", { class: "coef" }, fmt(t.coef, 2)))))
      : h("p", { class: "muted" }, "none"));
  view.append(h("div", { class: "two" }, side("Top positive items", a.top_positive || []), side("Top negative items", a.top_negative || [])));
  view.append(h("div", { class: "two" },
    h("section", {}, h("h2", {}, "Coefficients"), histogram(a.histogram || { counts: [] })),
    h("section", {}, h("h2", {}, "Nearest atoms"), h("ul", { id: "nearest" }, (a.nearest || []).map((n) =>
      h("li", {}, atomLink(model, n.atom, `#${n.atom}`), ` cos ${fmt(n.cosine, 2)} `, n.description ? `— ${n.description}` : ""))))));
  if ((a.alternatives || []).length) {
    view.append(h("h2", {}, "Alternative descriptions"));
    view.append(table([["description", (r) => r.description], ["source", (r) => r.source],
      ["faithfulness", (r) => fmt(r.faithfulness)], ["specificity", (r) => fmt(r.specificity)]],
      a.alternatives.slice().sort((x, y) => (y.faithfulness || 0) - (x.faithfulness || 0))));
  }
}

async function viewSearch(view, qs) {
  const ov = await overview();
  const q = new URLSearchParams(qs).get("q") || "";
  view.append(h("h1", {}, "Search"), h("form", { class: "controls", id: "search-form", onsubmit: (e) => {
    e.preventDefault(); setHash("#/search", { q: new FormData(e.target).get("q") });
  } }, h("input", { name: "q", type: "search", value: q, placeholder: "e.g. cat, vehicle, red heart", maxlength: 200, autofocus: true }),
    h("button", { type: "submit" }, "search")));
  if (!q) return;
  const res = await data.search(q);
  const out = h("div", { id: "search-results" });
  for (const n of res.notes) out.append(h("p", { class: "muted" }, n));
  for (const m of res.atoms) {
    const sec = h("section", { class: "search-model" }, h("h2", {}, `Atoms of ${m.model}`));
    const list = (title, rows) => rows.length ? [h("h3", {}, title), h("div", { class: "grid" }, rows.map((a) => card(m.model, a, ov.features)))] : [];
    sec.append(...list(`description contains the words (${m.by_text_total})`, m.by_text));
    sec.append(...list("nearest descriptions (text embedding)", m.by_embedding || []));
    sec.append(...list("nearest atom directions (text space)", m.by_direction || []));
    if (sec.childNodes.length > 1) out.append(sec);
  }
  const itemList = (title, rows) => rows.length ? [h("h3", {}, title), h("div", { class: "items" }, rows.map((t) =>
    h("a", { class: "item", href: `#/decompose?row=${t.row}` }, thumb(t.row, t.caption, ov.features), h("span", { class: "caption" }, t.caption || t.id),
      t.similarity != null ? h("span", { class: "coef" }, fmt(t.similarity, 2)) : "")))] : [];
  const items = h("section", { id: "search-items" }, h("h2", {}, "Items"),
    ...itemList(`caption contains the words (${res.items.by_text_total || 0})`, res.items.by_text),
    ...itemList("nearest captions (text embedding)", res.items.by_embedding || []));
  out.append(items);
  view.append(out);
}

async function viewDecompose(view, qs) {
  const ov = await overview();
  const p = new URLSearchParams(qs);
  const row = p.get("row");
  view.append(h("h1", {}, "Decompose"));
  const pick = h("form", { class: "controls", id: "item-picker", onsubmit: async (e) => {
    e.preventDefault();
    const found = await data.items({ q: new FormData(e.target).get("q"), limit: 24 });
    list.replaceChildren(...found.items.map((t) => h("a", { class: "item", href: `#/decompose?row=${t.row}` },
      thumb(t.row, t.caption, ov.features), h("span", { class: "caption" }, t.caption || t.id))));
    if (!found.items.length) list.append(h("p", { class: "muted" }, "No item matches."));
  } }, h("input", { name: "q", type: "search", placeholder: "find an item by caption", maxlength: 200 }), h("button", { type: "submit" }, "find"));
  const list = h("div", { class: "items", id: "item-list" });
  view.append(pick, list);
  if (!STATIC && ov.features.upload) {
    const status = h("span", { class: "muted", id: "upload-status" });
    view.append(h("form", { class: "controls", id: "upload-form", onsubmit: async (e) => {
      e.preventDefault();
      const file = e.target.elements.image.files[0];
      if (!file) return;
      status.textContent = "encoding…";
      try {
        const res = await data.upload(file);
        status.textContent = "";
        result.replaceChildren(decomposition(res, ov, URL.createObjectURL(file)));
      } catch (err) { status.textContent = err.message; }
    } }, h("label", {}, "or upload an image ", h("input", { name: "image", type: "file", accept: "image/*" })),
      h("button", { type: "submit" }, "decompose"), status));
  }
  const result = h("div", { id: "decomposition" });
  view.append(result);
  if (row !== null && row !== "") result.append(decomposition(await data.decompose(parseInt(row, 10)), ov));
  else if (ov.store) result.append(h("p", { class: "muted" }, "Pick an item above, or open one from an atom page."));
}

function decomposition(res, ov, imageURL) {
  const it = res.item;
  const head = h("div", { class: "item-head" },
    imageURL ? h("img", { class: "thumb big", src: imageURL, alt: "uploaded image" }) : thumb(it.row, it.caption, ov.features),
    h("div", {}, h("h2", { id: "item-title" }, it.caption || it.id || "item"),
      h("p", { class: "muted" }, it.row != null ? `row ${it.row} · ${it.id}${it.label_name ? " · " + it.label_name : ""}` +
        (it.held_out === true ? " · held out (not used for fitting)" : it.held_out === false ? " · a training row" : "") : `uploaded, ${it.size.join(" x ")} px`)));
  const cols = h("div", { class: "side-by-side" }, res.models.map((m) => h("section", { class: "decompose-model", "data-model": m.model },
    h("h3", {}, m.model), h("p", { class: "muted" }, `${m.architecture}, ${m.coder} · ${m.l0} atoms · explained signal ${fmt(m.explained_signal)} · cosine ${fmt(m.cosine)}`),
    h("ol", { class: "code" }, m.atoms.map((a) => h("li", {},
      h("span", { class: "coef " + (a.coef < 0 ? "neg" : "") }, fmt(a.coef, 2)), " ", atomLink(m.model, a.atom, `#${a.atom}`), " ",
      a.description ? h("span", { class: "description" }, a.description) : h("span", { class: "muted" }, "no description for this sign"),
      h("span", { class: "thumbs small" }, (a.top || []).map((t) => thumb(t.row, t.caption, ov.features)))))))));
  return h("div", {}, head, cols);
}

// ---------------------------------------------------------------------------------------------
// routing

async function route() {
  const view = document.getElementById("view");
  const [path, qs] = (location.hash.slice(1) || "/").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.nav === (parts[0] || "overview") ||
    (a.dataset.nav === "gallery" && parts[0] === "atom")));
  const fresh = h("main", { id: "view", "aria-live": "polite" });
  view.replaceWith(fresh);
  try {
    if (!parts.length) await viewOverview(fresh);
    else if (parts[0] === "gallery") await viewGallery(fresh, parts[1], qs);
    else if (parts[0] === "atom" && parts.length === 3) await viewAtom(fresh, parts[1], parseInt(parts[2], 10));
    else if (parts[0] === "search") await viewSearch(fresh, qs);
    else if (parts[0] === "decompose") await viewDecompose(fresh, qs);
    else fresh.append(h("p", { class: "error" }, "No such page."));
  } catch (err) {
    fresh.append(h("p", { class: "error", id: "error" }, err.message));
  }
  fresh.dataset.ready = "1";
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("mode").textContent = STATIC ? "Static export." : "Served by dbksvd serve.";
  try { document.getElementById("run-name").textContent = (await overview()).run; } catch (e) { /* shown by the view */ }
  route();
});
