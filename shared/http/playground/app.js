// The playground's behaviour: plain DOM, no framework, and requests only to the API that served
// the page (POST /search, GET /health). Every text from the API is inserted with textContent.

const $ = (id) => document.getElementById(id);

const form = $("search-form");
const q = $("q");
const k = $("k");
const candidates = $("candidates");
const fusion = $("fusion");
const retrieval = $("retrieval");
const alpha = $("alpha");
const rerank = $("rerank");
const collapse = $("collapse");
const apiKey = $("api-key");
const submit = $("submit");
const statusEl = $("status");
const alerts = $("alerts");
const timingsEl = $("timings");
const resultsEl = $("results");
const legend = $("legend");
const serviceEl = $("service");
const fixtureNotice = $("fixture-notice");
const rerankerNote = $("reranker-note");

let inFlight = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

const fmtMs = (ms) => (ms >= 100 ? `${Math.round(ms)} ms` : `${ms.toFixed(1)} ms`);
const fmtScore = (s) => (Math.abs(s) >= 100 ? s.toFixed(0) : s.toFixed(3));
const clamp01 = (x) => Math.max(0, Math.min(1, x));

function headers() {
  const h = { "content-type": "application/json", accept: "application/json" };
  if (apiKey.value.trim()) h["x-api-key"] = apiKey.value.trim();
  return h;
}

// ---------- service status (/health) ----------

async function loadHealth() {
  try {
    const res = await fetch("/health", { headers: { accept: "application/json" } });
    const h = await res.json();
    renderHealth(h);
    return h;
  } catch (e) {
    serviceEl.textContent = `The service did not answer /health (${e.message}).`;
    return null;
  }
}

function renderHealth(h) {
  const parts = [];
  if (h.index) parts.push(`Index ${h.index.version} · ${h.index.count} passages`);
  else parts.push(`No index yet${h.error ? ` (${h.error.message})` : ""}`);
  const id = h.embedder?.identity;
  if (id) parts.push(`embedder ${id.kind}/${id.model}`);
  const r = h.reranker ?? {};
  if (r.kind === "none") parts.push("no reranker");
  else
    parts.push(`reranker ${r.model ?? r.kind}${r.provider ? ` on ${r.provider}` : ""}${r.fixture ? " (fixture)" : ""}`);
  if (h.store?.bucket) parts.push(`bucket ${h.store.bucket}${h.store.endpoint ? ` at ${h.store.endpoint}` : ""}`);
  serviceEl.textContent = parts.join(" · ");
  fixtureNotice.hidden = r.fixture !== true;
  // Why this second stage runs (e.g. the lexical reranker because no trained model is configured).
  rerankerNote.textContent = r.note && r.fixture !== true ? `Second stage: ${r.note}.` : "";
  rerankerNote.hidden = rerankerNote.textContent === "";
}

// ---------- search ----------

function readForm() {
  const body = {
    query: q.value.trim(),
    k: Number(k.value),
    candidates: Number(candidates.value),
    fusion: fusion.value,
    rerank: rerank.checked,
    collapse: collapse.checked,
  };
  if (fusion.value === "linear") body.alpha = Number(alpha.value);
  if (retrieval.value) body.retrieval = retrieval.value;
  return body;
}

function syncUrl(body) {
  const p = new URLSearchParams({ q: body.query, k: String(body.k), candidates: String(body.candidates) });
  if (body.fusion !== "rerank") p.set("fusion", body.fusion);
  if (body.alpha !== undefined) p.set("alpha", String(body.alpha));
  if (body.retrieval) p.set("retrieval", body.retrieval);
  if (!body.rerank) p.set("rerank", "0");
  if (body.collapse) p.set("collapse", "1");
  history.replaceState(null, "", `?${p}`);
}

function fromUrl() {
  const p = new URLSearchParams(location.search);
  if (p.has("q")) q.value = p.get("q");
  if (p.has("k")) k.value = p.get("k");
  if (p.has("candidates")) candidates.value = p.get("candidates");
  if (p.has("fusion")) fusion.value = p.get("fusion");
  if (p.has("alpha")) alpha.value = p.get("alpha");
  if (["hybrid", "dense", "sparse"].includes(p.get("retrieval"))) retrieval.value = p.get("retrieval");
  if (p.get("rerank") === "0") rerank.checked = false;
  if (p.get("collapse") === "1") collapse.checked = true;
  syncControls();
  return q.value.trim() !== "";
}

function syncControls() {
  alpha.disabled = fusion.value !== "linear";
  fusion.disabled = !rerank.checked;
}

function showAlerts(messages) {
  alerts.replaceChildren();
  if (messages.length === 0) return;
  const list = el("ul", { class: "alert-list" });
  for (const m of messages) list.append(el("li", { text: m }));
  alerts.append(list);
}

async function search() {
  const body = readForm();
  if (!body.query) {
    statusEl.textContent = "Type a query first.";
    q.focus();
    return;
  }
  inFlight?.abort();
  const controller = new AbortController();
  inFlight = controller;
  syncUrl(body);
  resultsEl.setAttribute("aria-busy", "true");
  submit.disabled = true;
  statusEl.textContent = `Searching for “${body.query}”…`;
  const started = performance.now();
  try {
    const res = await fetch("/search", {
      method: "POST",
      headers: headers(),
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    const json = await res.json().catch(() => null);
    if (!res.ok) {
      const message = json?.error?.message ?? `HTTP ${res.status}`;
      const hint =
        res.status === 401
          ? " Open “API key” above and enter a key."
          : res.status === 503
            ? " Try again in a few seconds."
            : "";
      renderResults(null, body);
      statusEl.textContent = `Search failed: ${message}`;
      showAlerts([`${json?.error?.code ?? "error"}: ${message}.${hint}`]);
      return;
    }
    renderResults(json, body, performance.now() - started);
  } catch (e) {
    if (e.name === "AbortError") return;
    renderResults(null, body);
    statusEl.textContent = "Search failed: the service is unreachable.";
    showAlerts([e.message]);
  } finally {
    if (inFlight === controller) {
      inFlight = null;
      submit.disabled = false;
      resultsEl.removeAttribute("aria-busy");
    }
  }
  // The reranker's model and fixture flag become known after its first call.
  loadHealth();
}

function movement(hit, position) {
  if (!hit.rerank) return el("span", { class: "move none", text: "not reranked" });
  const delta = hit.retrieval.rank - position;
  if (delta > 0)
    return el(
      "span",
      { class: "move up", title: `up ${delta} from first-stage rank ${hit.retrieval.rank}` },
      el("span", { "aria-hidden": "true", text: `▲${delta}` }),
      el("span", { class: "sr-only", text: `moved up ${delta} place${delta === 1 ? "" : "s"}` }),
    );
  if (delta < 0)
    return el(
      "span",
      { class: "move down", title: `down ${-delta} from first-stage rank ${hit.retrieval.rank}` },
      el("span", { "aria-hidden": "true", text: `▼${-delta}` }),
      el("span", { class: "sr-only", text: `moved down ${-delta} place${delta === -1 ? "" : "s"}` }),
    );
  return el(
    "span",
    { class: "move same", title: "same position as in the first stage" },
    el("span", { "aria-hidden": "true", text: "=" }),
    el("span", { class: "sr-only", text: "same place as in the first stage" }),
  );
}

function stageRow(label, stage, kind) {
  const bar = el("span", { class: `bar bar-${kind}`, "aria-hidden": "true" }, el("span", { class: "fill" }));
  if (stage) bar.firstChild.style.width = `${(clamp01(stage.score) * 100).toFixed(1)}%`;
  return el(
    "div",
    { class: `stage stage-${kind}` },
    el("dt", { text: label }),
    el(
      "dd",
      {},
      el("span", { class: "stage-rank", text: stage ? `#${stage.rank}` : "—" }),
      bar,
      el("span", { class: "stage-score", text: stage ? fmtScore(stage.score) : "not scored" }),
    ),
  );
}

/** Each side's rank of a hybrid hit ("Dense #3 · BM25 —"); its own line, apart from the stage bars. */
function sideRanks(hit) {
  const side = (label, stage, what) =>
    el(
      "span",
      {
        class: "side",
        title: stage
          ? `rank ${stage.rank} of the ${what} side (score ${fmtScore(stage.score)})`
          : `not among the ${what} side's candidates`,
      },
      `${label} `,
      el("span", { class: "side-rank", text: stage ? `#${stage.rank}` : "—" }),
    );
  return el("p", { class: "side-ranks" }, side("Dense", hit.dense, "dense"), " · ", side("BM25", hit.sparse, "BM25"));
}

function renderResults(json, body, wallMs) {
  resultsEl.replaceChildren();
  timingsEl.hidden = true;
  legend.hidden = true;
  if (!json) return;
  showAlerts(json.warnings ?? []);
  const n = json.results.length;
  const rr = json.reranked ? `reranked ${json.reranked_candidates} of ${json.candidates} candidates` : "not reranked";
  statusEl.textContent =
    n === 0
      ? `No results for “${body.query}”.`
      : `${n} result${n === 1 ? "" : "s"} for “${body.query}”, ${json.retrieval ?? "dense"} retrieval, ${rr}, in ${fmtMs(json.timings.total_ms)}.`;

  json.results.forEach((hit, i) => {
    const position = i + 1;
    const titleId = `hit-${position}-title`;
    const title = el(
      "h3",
      { id: titleId, class: "hit-title" },
      el("span", { class: "sr-only", text: `Result ${position}: ` }),
      hit.doc_id,
      hit.source && hit.source !== hit.doc_id ? el("span", { class: "hit-source", text: hit.source }) : null,
    );
    const item = el(
      "li",
      { class: "hit", "data-id": hit.id, "data-doc": hit.doc_id },
      el(
        "article",
        { "aria-labelledby": titleId },
        el(
          "div",
          { class: "hit-head" },
          el("span", { class: "position", "aria-hidden": "true", text: String(position) }),
          title,
          movement(hit, position),
        ),
        el(
          "dl",
          { class: "stages" },
          stageRow("First stage", hit.retrieval, "retrieval"),
          stageRow("Reranked", hit.rerank, "rerank"),
          body.fusion !== "rerank"
            ? el(
                "div",
                { class: "stage stage-fused" },
                el("dt", { text: `Fused (${body.fusion})` }),
                el("dd", {}, el("span", { class: "stage-score", text: fmtScore(hit.score) })),
              )
            : null,
        ),
        json.retrieval === "hybrid" ? sideRanks(hit) : null,
        el("p", { class: "hit-text", text: hit.text }),
      ),
    );
    resultsEl.append(item);
  });

  renderTimings(json.timings, json.index, wallMs, json.retrieval ?? "dense");
  legend.hidden = n === 0;
}

function renderTimings(t, index, wallMs, mode) {
  const stages = [
    ["embed", "Embed query", t.embed_ms],
    ...(mode !== "sparse" ? [["search", "Dense search", t.search_ms]] : []),
    ...(mode !== "dense" ? [["sparse", "BM25 search", t.sparse_ms ?? 0]] : []),
    ["rerank", "Rerank", t.rerank_ms],
  ];
  const total = Math.max(t.total_ms, 0.001);
  const track = el("div", { class: "timing-track", "aria-hidden": "true" });
  const list = el("dl", { class: "timing-list" });
  for (const [key, label, ms] of stages) {
    const seg = el("span", { class: `seg seg-${key}` });
    seg.style.width = `${clamp01(ms / total) * 100}%`;
    track.append(seg);
    list.append(el("div", { class: `timing timing-${key}` }, el("dt", { text: label }), el("dd", { text: fmtMs(ms) })));
  }
  list.append(
    el(
      "div",
      { class: "timing timing-total" },
      el("dt", { text: "Total (server)" }),
      el("dd", { text: fmtMs(t.total_ms) }),
    ),
  );
  if (wallMs !== undefined)
    list.append(el("div", { class: "timing" }, el("dt", { text: "Round trip" }), el("dd", { text: fmtMs(wallMs) })));
  timingsEl.replaceChildren(
    el("h3", { class: "sr-only", text: "Timings" }),
    track,
    list,
    el("p", { class: "index-version", text: `Index ${index.version} (${index.count} passages)` }),
  );
  timingsEl.hidden = false;
}

// ---------- wiring ----------

form.addEventListener("submit", (e) => {
  e.preventDefault();
  search();
});
fusion.addEventListener("change", syncControls);
rerank.addEventListener("change", syncControls);

document.addEventListener("keydown", (e) => {
  if (e.key !== "/" || e.ctrlKey || e.metaKey || e.altKey) return;
  const t = e.target;
  if (t instanceof HTMLInputElement || t instanceof HTMLSelectElement || t instanceof HTMLTextAreaElement) return;
  e.preventDefault();
  q.focus();
  q.select();
});

const pending = fromUrl();
loadHealth().then(() => {
  if (pending) search();
});
