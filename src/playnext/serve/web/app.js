// playnext web page: search titles, like some (a live session), see recommendations with reasons.
"use strict";

const $ = (id) => document.getElementById(id);
const newSessionId = () => "web-" + Math.random().toString(36).slice(2, 12);
let sessionId = sessionStorage.getItem("playnext-session") || newSessionId();
sessionStorage.setItem("playnext-session", sessionId);
let picks = [];
// the event types the model reads (GET /health); empty: it reads none and logs any
let eventTypes = [];
const reads = (name) => eventTypes.some((t) => t.name === name);

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = res.status === 204 ? null : await res.json();
  if (!res.ok) throw new Error((data && (typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail))) || res.statusText);
  return data;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function metaLine(it) {
  return [it.kind, it.year, (it.genres || []).join(", ")].filter((x) => x !== null && x !== undefined && x !== "").join(" · ");
}

function itemRow(it) {
  const li = el("li");
  li.dataset.itemId = it.item_id;
  const left = el("div");
  left.append(el("div", "title", it.title), el("div", "meta", metaLine(it)));
  const btn = el("button", "like", picks.some((p) => p.item_id === it.item_id) ? "Liked" : "Like");
  btn.disabled = btn.textContent === "Liked";
  btn.setAttribute("aria-label", "Like " + it.title);
  btn.addEventListener("click", () => like(it, btn));
  li.append(left, btn);
  return li;
}

function status(text) { $("status").textContent = text; }

async function searchTitles() {
  const q = $("title-search").value.trim();
  const list = $("search-results");
  if (!q) { list.replaceChildren(); return; }
  try {
    const page = await api("GET", "/items?limit=8&query=" + encodeURIComponent(q));
    list.replaceChildren(...page.items.map(itemRow));
    if (!page.items.length) list.append(el("li", "hint", "No title matches “" + q + "”."));
  } catch (e) { status("search failed: " + e.message); }
}

async function describe(ev) {
  ev.preventDefault();
  const q = $("describe").value.trim();
  if (!q) return;
  const body = { query: q, k: 8 };
  if (picks.length) body.session_id = sessionId;
  try {
    const res = await api("POST", "/search", body);
    $("describe-results").replaceChildren(...res.items.map(itemRow));
  } catch (e) { status("search failed: " + e.message); }
}

// a typed model refuses types it was not trained with: a like it does not know goes untyped
async function like(it, btn) {
  const typed = eventTypes.length > 0;
  await send(it, btn, !typed || reads("like") ? "like" : null, "Liked", "Like");
}

// a skip tells a model trained with skips what you do not want (the item leaves the list); the
// button shows only for such a model, as any other would read the skipped item as a pick
async function skip(it, btn) { await send(it, btn, "skip", "Skipped", "Skip", 0.0); }

async function send(it, btn, event, done, label, value) {
  if (btn) { btn.disabled = true; btn.textContent = done; }
  const ev = { item_id: it.item_id };
  if (event) ev.event = event;
  if (value !== undefined) ev.value = value;
  try {
    const s = await api("POST", "/sessions/" + sessionId + "/events", { events: [ev] });
    picks = s.events;
    renderPicks();
    await recommend();
  } catch (e) { status("could not save: " + e.message); if (btn) { btn.disabled = false; btn.textContent = label; } }
}

function renderPicks() {
  $("picks").replaceChildren(...picks.map((p) => el("li", p.event === "skip" ? "skipped" : "", p.event === "skip" ? p.title + " (skipped)" : p.title)));
  $("picks-empty").hidden = picks.length > 0;
}

async function recommend() {
  if (!picks.length) { $("recs").replaceChildren(); $("recs-empty").hidden = false; return; }
  const body = { session_id: sessionId, k: 10 };
  if ($("kind").value) body.kind = $("kind").value;
  const rerank = rerankOptions();
  if (rerank) body.rerank = rerank;
  try {
    const res = await api("POST", "/recommend", body);
    $("rerank-note").textContent = rerankNote(res.rerank);
    $("recs").replaceChildren(...res.items.map((it) => {
      const li = el("li");
      li.dataset.itemId = it.item_id;
      const title = el("div", "title", it.title);
      if (it.cold_start) title.append(el("span", "badge", "new"));
      const likeBtn = el("button", "like", "Like");
      likeBtn.setAttribute("aria-label", "Like " + it.title);
      likeBtn.addEventListener("click", () => like(it, likeBtn));
      const skipBtn = el("button", "skip secondary", "Skip");
      skipBtn.setAttribute("aria-label", "Skip " + it.title);
      skipBtn.addEventListener("click", () => skip(it, skipBtn));
      const buttons = el("div", "actions");
      buttons.append(likeBtn);
      if (reads("skip")) buttons.append(skipBtn);
      const row = el("div");
      row.style.display = "flex"; row.style.justifyContent = "space-between"; row.style.gap = "8px";
      const text = el("div");
      text.append(title, el("div", "meta", metaLine(it)), el("div", "why", it.explanation ? it.explanation.text : ""));
      row.append(text, buttons);
      li.append(row);
      return li;
    }));
    $("recs-empty").hidden = res.items.length > 0;
    if (!res.items.length) $("recs-empty").textContent = "Nothing matches this filter.";
    status("model " + res.model + " · session " + sessionId + " · " + picks.length + " pick(s)");
  } catch (e) { status("recommend failed: " + e.message); }
}

// "More variety" is MMR's lambda (0 … 0.7 in ten steps); "match the mix" calibrates the list to
// the genres of the picks (Steck's calibration, lambda 0.3). See docs/rerank.md.
function rerankOptions() {
  const steps = Number($("variety").value);
  const out = {};
  if (steps > 0) out.mmr = { lambda: Math.round(steps * 7) / 100 };
  if ($("match-mix").checked) out.calibrate = { lambda: 0.3 };
  return Object.keys(out).length ? out : null;
}

function rerankNote(summary) {
  if (!summary) return "";
  const parts = summary.applied.map((name) => name === "mmr" ? "more variety" : name === "calibrate" ? "matched to your mix" : name);
  const relaxed = summary.relaxed.map((r) => r.constraint + " " + r.key);
  return "Re-ranked: " + parts.join(", ") + (relaxed.length ? " (could not meet: " + relaxed.join(", ") + ")" : "");
}

function varietyChanged() {
  const steps = Number($("variety").value);
  $("variety").setAttribute("aria-valuetext", steps ? "mmr lambda " + Math.round(steps * 7) / 100 : "off");
  recommend();
}

async function reset() {
  // a fresh session (deleting one needs the server's token; the old one is evicted in time)
  sessionId = newSessionId();
  sessionStorage.setItem("playnext-session", sessionId);
  picks = [];
  renderPicks();
  await recommend();
  searchTitles();
}

let timer = null;
$("title-search").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(searchTitles, 200); });
$("describe-form").addEventListener("submit", describe);
$("kind").addEventListener("change", recommend);
$("variety").addEventListener("change", varietyChanged);
$("match-mix").addEventListener("change", recommend);
$("reset").addEventListener("click", reset);

(async function init() {
  try {
    const h = await api("GET", "/health");
    eventTypes = h.event_types || [];
    status("model " + h.model + " · " + h.n_items + " items");
    const kinds = await api("GET", "/items?limit=100");
    const seen = new Set(kinds.items.map((i) => i.kind).filter(Boolean));
    for (const k of [...seen].sort()) { const o = el("option", "", k); o.value = k; $("kind").append(o); }
    const s = await api("GET", "/sessions/" + sessionId).catch(() => null);
    if (s) { picks = s.events; renderPicks(); await recommend(); }
  } catch (e) { status("server unreachable: " + e.message); }
})();
