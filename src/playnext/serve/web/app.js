// playnext web page: search titles, like some (a live session) or start as a known user, see
// recommendations with reasons; remove a pick, skip a recommendation.
"use strict";

const $ = (id) => document.getElementById(id);
const newSessionId = () => "web-" + Math.random().toString(36).slice(2, 12);
let sessionId = sessionStorage.getItem("playnext-session") || newSessionId();
sessionStorage.setItem("playnext-session", sessionId);
let picks = [];
// a known user of the training data (their stored history joins the session's), or null
let userId = sessionStorage.getItem("playnext-user");
let history = [];
const HISTORY_SHOWN = 50;
// picks removed on this page: sent as remove_from_history, so the model reads the history
// without them (nothing is erased: a user's stored history cannot change, the log keeps events)
let removed = new Set(JSON.parse(sessionStorage.getItem("playnext-removed") || "[]"));
const saveRemoved = () => sessionStorage.setItem("playnext-removed", JSON.stringify([...removed]));
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
  const liked = picks.some((p) => p.item_id === it.item_id && p.event !== "skip" && !removed.has(p.item_id));
  const btn = el("button", "like", liked ? "Liked" : "Like");
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
  const body = { ...who(), query: q, k: 8 };
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

// a skip leaves the item out of this session's lists; a model trained with skips also reads it,
// any other takes it as an implicit negative only (the server never reads it as a pick)
async function skip(it, btn) { await send(it, btn, "skip", "Skipped", "Skip", 0.0); }

async function send(it, btn, event, done, label, value) {
  if (btn) { btn.disabled = true; btn.textContent = done; }
  if (removed.delete(String(it.item_id))) saveRemoved();  // acting on it again takes the removal back
  const ev = { item_id: it.item_id };
  if (event) ev.event = event;
  if (value !== undefined) ev.value = value;
  try {
    const s = await api("POST", "/sessions/" + sessionId + "/events", { events: [ev] });
    picks = s.events;
    renderPicks();
    renderHistory();
    await recommend();
  } catch (e) { status("could not save: " + e.message); if (btn) { btn.disabled = false; btn.textContent = label; } }
}

// a row of the history or the session, with a Remove button (skips show struck through)
function pickRow(id, title, meta, skipped) {
  const li = el("li");
  li.dataset.itemId = id;
  const left = el("div");
  left.append(el("div", skipped ? "title skipped" : "title", skipped ? title + " (skipped)" : title));
  if (meta) left.append(el("div", "meta", meta));
  const btn = el("button", "remove secondary", "Remove");
  btn.setAttribute("aria-label", "Remove " + title);
  btn.addEventListener("click", () => removePick(id));
  li.append(left, btn);
  return li;
}

function renderPicks() {
  const shown = picks.filter((p) => !removed.has(p.item_id));
  $("picks").replaceChildren(...shown.map((p) => pickRow(p.item_id, p.title || p.item_id, "", p.event === "skip")));
  $("picks-empty").hidden = shown.length > 0;
  const n = removed.size;
  $("removed-note").hidden = n === 0;
  $("removed-note").firstElementChild.textContent = n + " removed from what the model reads.";
}

function renderHistory() {
  $("user-box").hidden = userId === null;
  if (userId === null) return;
  $("user-name").textContent = userId;
  const event = (h) => h.event ? h.event + (h.value !== null ? " " + h.value : "") : "";
  const shown = history.filter((h) => !removed.has(h.item_id)).reverse();  // newest first
  $("history").replaceChildren(...shown.map((h) => pickRow(h.item_id, h.title, [event(h), metaLine(h)].filter(Boolean).join(" · "), false)));
}

async function removePick(id) {
  removed.add(String(id));
  saveRemoved();
  renderHistory();
  renderPicks();
  await recommend();
}

async function restore() {
  removed.clear();
  saveRemoved();
  renderHistory();
  renderPicks();
  await recommend();
}

// who the recommendations are for: the known user, the session (once it has events), less removals
function who() {
  const body = {};
  if (userId !== null) body.user_id = userId;
  if (picks.length) body.session_id = sessionId;
  if (removed.size) body.remove_from_history = [...removed];
  return body;
}

async function recommend() {
  const active = picks.some((p) => p.event !== "skip" && !removed.has(p.item_id));
  if (userId === null && !active) { $("recs").replaceChildren(); $("recs-empty").hidden = false; return; }
  const body = { ...who(), k: 10 };
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
      buttons.append(likeBtn, skipBtn);
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
    const as = userId !== null ? " · as user " + userId : "";
    status("model " + res.model + as + " · session " + sessionId + " · " + picks.length + " pick(s)");
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

function newSession() {
  // a fresh session (deleting one needs the server's token; the old one is evicted in time)
  sessionId = newSessionId();
  sessionStorage.setItem("playnext-session", sessionId);
  picks = [];
  removed.clear();
  saveRemoved();
}

async function reset() {
  newSession();
  userId = null;
  history = [];
  sessionStorage.removeItem("playnext-user");
  $("user-id").value = "";
  $("user-note").textContent = "";
  renderHistory();
  renderPicks();
  await recommend();
  searchTitles();
}

async function loadHistory(id) {
  const h = await api("GET", "/users/" + encodeURIComponent(id) + "/history?limit=" + HISTORY_SHOWN);
  history = h.events;
  const older = h.length - h.events.length;
  $("user-note").textContent = "User " + h.user_id + ": " + h.length + " event(s) in the training data" + (older > 0 ? ", the last " + h.events.length + " shown" : "") + ".";
}

// being a known user starts a new session: what you like next joins their stored history
async function chooseUser(ev) {
  ev.preventDefault();
  const id = $("user-id").value.trim();
  if (!id) return;
  try {
    await loadHistory(id);
  } catch (e) { $("user-note").textContent = e.message; return; }
  newSession();
  userId = id;
  sessionStorage.setItem("playnext-user", id);
  renderHistory();
  renderPicks();
  await recommend();
}

async function suggestUsers() {
  const q = $("user-id").value.trim();
  try {
    const page = await api("GET", "/users?limit=10&query=" + encodeURIComponent(q));
    $("user-ids").replaceChildren(...page.users.map((u) => {
      const o = el("option");
      o.value = u.user_id;
      o.label = u.n_events + " event(s)";
      return o;
    }));
  } catch (e) { status("user search failed: " + e.message); }
}

let timer = null;
$("title-search").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(searchTitles, 200); });
$("describe-form").addEventListener("submit", describe);
$("kind").addEventListener("change", recommend);
$("variety").addEventListener("change", varietyChanged);
$("match-mix").addEventListener("change", recommend);
$("reset").addEventListener("click", reset);
$("restore").addEventListener("click", restore);
$("user-form").addEventListener("submit", chooseUser);
let userTimer = null;
$("user-id").addEventListener("input", () => { clearTimeout(userTimer); userTimer = setTimeout(suggestUsers, 200); });

(async function init() {
  try {
    const h = await api("GET", "/health");
    eventTypes = h.event_types || [];
    status("model " + h.model + " · " + h.n_items + " items");
    const kinds = await api("GET", "/items?limit=100");
    const seen = new Set(kinds.items.map((i) => i.kind).filter(Boolean));
    for (const k of [...seen].sort()) { const o = el("option", "", k); o.value = k; $("kind").append(o); }
    suggestUsers();
    if (userId !== null) {
      $("user-id").value = userId;
      await loadHistory(userId).catch(() => { userId = null; sessionStorage.removeItem("playnext-user"); });
    }
    const s = await api("GET", "/sessions/" + sessionId).catch(() => null);
    if (s) picks = s.events;
    renderHistory();
    renderPicks();
    await recommend();
  } catch (e) { status("server unreachable: " + e.message); }
})();
