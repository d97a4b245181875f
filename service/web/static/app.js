"use strict";
// adgraph studio: a thin door over /v1. The key lives in sessionStorage and goes out as X-API-Key
// (never a cookie: no ambient credential, so no CSRF surface). All text goes in via textContent.
const T = {
  en: { title: "adgraph studio", nav_new: "New ad", nav_history: "History", logout: "Log out",
    login_title: "Enter your API key", key_label: "API key", login_btn: "Enter", drop: "Drop, paste or click to pick a photo",
    headline: "Headline", subline: "Subline", cta: "Call to action", prompt: "Background prompt", size: "Size",
    seed: "Seed", submit: "Make the ad (Ctrl+Enter)", job: "Job", cancel: "Cancel", resume: "Resume",
    download: "Download", status: "Status", workflow: "Workflow", all: "All", more: "More", need_photo: "Pick a photo first.",
    need_headline: "Write a headline.", bad_key: "That key was refused.", eta: "about {s} s left", done: "done", cached: "reused" },
  ko: { need_photo: "먼저 사진을 고르세요.", need_headline: "헤드라인을 쓰세요.", bad_key: "키가 거부되었습니다.",
    eta: "약 {s}초 남음", done: "끝", cached: "재사용" },
};
let lang = sessionStorage.getItem("lang") || "ko";
const ko = {};
const $ = (id) => document.getElementById(id);
const tr = (k) => (T[lang] && T[lang][k]) || ko[k] || k;

function applyLang() {
  document.documentElement.lang = lang;
  document.querySelectorAll("[data-t]").forEach((el) => {
    if (!(el.dataset.t in ko)) ko[el.dataset.t] = el.textContent;
    el.textContent = lang === "ko" ? ko[el.dataset.t] : tr(el.dataset.t);
  });
  $("lang").textContent = lang === "ko" ? "EN" : "한국어";
  $("lang").lang = lang === "ko" ? "en" : "ko";
  document.title = tr("title");
}

const key = () => sessionStorage.getItem("key") || "";
async function api(path, opts = {}) {
  const headers = Object.assign({ "X-API-Key": key() }, opts.headers || {});
  const r = await fetch(path, Object.assign({}, opts, { headers }));
  if (r.status === 401) { sessionStorage.removeItem("key"); showLogin(tr("bad_key")); throw new Error("unauthorized"); }
  if (!r.ok) {
    let msg = r.status + "";
    try { const b = await r.json(); msg = (b.error && (b.error.message || b.error.code)) || b.detail || msg; } catch (e) { /* not json */ }
    throw new Error(typeof msg === "string" ? msg : JSON.stringify(msg));
  }
  return r.status === 204 ? null : r.json();
}

function show(id) {
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== id;
}
function showLogin(msg) { show("login"); $("login-error").textContent = msg || ""; $("key").focus(); }

// ---- new ad form
let photo = null;
function setPhoto(file) {
  if (!file || !file.type.startsWith("image/")) return;
  photo = file;
  $("form-error").textContent = "";
  const img = $("thumb");
  img.src = URL.createObjectURL(file);
  img.alt = file.name;
  img.hidden = false;
}
function counters() {
  for (const id of ["headline", "subline", "cta"]) {
    const el = $(id);
    $(id + "-count").textContent = el.value.length + "/" + el.maxLength;
  }
}
let submitting = false;
async function submitAd() {
  if (submitting) return;
  $("form-error").textContent = "";
  if (!photo) { $("form-error").textContent = tr("need_photo"); return; }
  if (!$("headline").value.trim()) { $("form-error").textContent = tr("need_headline"); $("headline").focus(); return; }
  submitting = true; $("submit").disabled = true;
  try {
    const fd = new FormData(); fd.append("file", photo, photo.name || "photo.png");
    const art = await api("/v1/artifacts", { method: "POST", body: fd });
    const input = { product_image: art.id, headline: $("headline").value, size: $("size").value,
      seed: parseInt($("seed").value || "0", 10) || 0 };
    for (const f of ["subline", "cta"]) if ($(f).value.trim()) input[f] = $(f).value;
    if ($("prompt").value.trim()) input.background_prompt = $("prompt").value;
    const job = await api("/v1/jobs", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ workflow: "ad", input }) });
    location.hash = "#job/" + job.id;
  } catch (e) {
    if (e.message !== "unauthorized") $("form-error").textContent = e.message;
  } finally { submitting = false; $("submit").disabled = false; }
}

// ---- live job over SSE (fetch, so the key goes as a header; Last-Event-ID on reconnect)
let stream = null;
function renderJob(job) {
  $("job-id").textContent = job.id;
  $("job-status").textContent = job.status;
  const p = job.progress || {};
  $("job-percent").textContent = (p.percent || 0) + "%";
  $("job-bar").value = p.percent || 0;
  $("job-message").textContent = p.message || "";
  $("job-eta").textContent = job.status === "succeeded" ? tr("done")
    : p.eta_seconds != null ? tr("eta").replace("{s}", Math.round(p.eta_seconds)) : "";
  document.title = (["queued", "running"].includes(job.status) ? (p.percent || 0) + "% · " : "") + tr("title");
  $("cancel").hidden = !["queued", "running"].includes(job.status);
  $("resume").hidden = !["failed", "cancelled"].includes(job.status);
  const img = job.result && (job.result.ad || Object.values(job.result).find((a) => a.mime.startsWith("image/")));
  $("result").hidden = !img;
  if (img) { loadImage(img.url, $("result-img"), $("download")); }
}
async function loadImage(url, img, link) {
  if (img.dataset.src === url) return;
  img.dataset.src = url;
  const r = await fetch(url, { headers: { "X-API-Key": key() } });
  const blob = URL.createObjectURL(await r.blob());
  img.src = blob;
  if (link) { link.href = blob; link.download = url.split("/").pop() + ".png"; }
}
function timelineRow(node) {
  let li = document.querySelector('#timeline li[data-node="' + CSS.escape(node) + '"]');
  if (!li) { li = document.createElement("li"); li.dataset.node = node; $("timeline").appendChild(li); }
  return li;
}
function onEvent(ev) {
  const d = ev.data;
  if (ev.type === "node_started" && d.node) { timelineRow(d.node).textContent = d.node + " …"; }
  const name = d.node || d.name;
  if (ev.type === "node_finished" && name) {
    const li = timelineRow(name);
    const mark = d.status === "succeeded" ? (d.cached ? " ↺ " + tr("cached") : " ✓") : " ✗ " + (d.status || "");
    li.textContent = name + mark + (d.seconds != null ? " · " + Number(d.seconds).toFixed(2) + " s" : "");
    li.className = d.status === "succeeded" ? "done" : "bad";
  }
}
async function watch(jobId) {
  if (stream) stream.abort();
  const ctl = new AbortController(); stream = ctl;
  $("timeline").replaceChildren();
  let lastId = "", finished = false;
  renderJob(await api("/v1/jobs/" + jobId));
  while (!finished && !ctl.signal.aborted) {
    try {
      const headers = { "X-API-Key": key(), Accept: "text/event-stream" };
      if (lastId) headers["Last-Event-ID"] = lastId;
      const r = await fetch("/v1/jobs/" + jobId + "/events", { headers, signal: ctl.signal });
      if (r.status === 401) { showLogin(tr("bad_key")); return; }
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value.replace(/\r\n/g, "\n");
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i); buf = buf.slice(i + 2);
          const ev = { type: "message", data: "" , id: "" };
          for (const line of block.split("\n")) {
            const c = line.indexOf(":"); if (c <= 0) continue;
            const f = line.slice(0, c), v = line.slice(c + 1).replace(/^ /, "");
            if (f === "event") ev.type = v; else if (f === "data") ev.data += v; else if (f === "id") ev.id = v;
          }
          if (ev.id) { if (Number(ev.id) <= Number(lastId || 0)) continue; lastId = ev.id; }
          try { ev.data = JSON.parse(ev.data || "{}"); } catch (e) { ev.data = {}; }
          onEvent(ev);
          renderJob(await api("/v1/jobs/" + jobId));
          if (ev.type === "job_finished") finished = true;
        }
      }
      if (!finished) { const j = await api("/v1/jobs/" + jobId); renderJob(j); finished = !["queued", "running"].includes(j.status); }
    } catch (e) {
      if (ctl.signal.aborted || e.message === "unauthorized") return;
      await new Promise((res) => setTimeout(res, 1000));
    }
  }
  $("timeline").dataset.closed = "true";
}

// ---- history
let cursor = null;
async function loadHistory(append) {
  const q = new URLSearchParams({ limit: "20" });
  if ($("filter-status").value) q.set("status", $("filter-status").value);
  if ($("filter-workflow").value) q.set("workflow", $("filter-workflow").value);
  if (append && cursor) q.set("cursor", cursor);
  const page = await api("/v1/jobs?" + q);
  if (!append) $("history-list").replaceChildren();
  for (const job of page.jobs || page.items || []) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = "#job/" + job.id;
    a.textContent = job.workflow + " · " + job.status + " · " + new Date(job.created_at).toLocaleString(lang);
    const ad = job.result && job.result.ad;
    if (ad) { const img = document.createElement("img"); img.className = "thumb"; img.alt = ""; a.prepend(img); loadImage(ad.url, img); }
    li.appendChild(a);
    if (job.parent) { const s = document.createElement("small"); s.textContent = " ← " + job.parent.job_id.slice(0, 8); li.appendChild(s); }
    $("history-list").appendChild(li);
  }
  cursor = page.next_cursor || null;
  $("more").hidden = !cursor;
}

// ---- routing
async function route() {
  if (!key()) return showLogin();
  const h = location.hash || "#new";
  if (stream && !h.startsWith("#job/")) { stream.abort(); stream = null; document.title = tr("title"); }
  if (h.startsWith("#job/")) { show("job"); watch(h.slice(5)).catch(() => {}); }
  else if (h === "#history") { show("history"); loadHistory(false).catch(() => {}); }
  else { show("new"); }
}

document.addEventListener("DOMContentLoaded", () => {
  applyLang();
  $("lang").addEventListener("click", () => { lang = lang === "ko" ? "en" : "ko"; sessionStorage.setItem("lang", lang); applyLang(); });
  $("logout").addEventListener("click", () => { sessionStorage.removeItem("key"); route(); });
  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    sessionStorage.setItem("key", $("key").value.trim());
    try { await api("/v1/jobs?limit=1"); $("key").value = ""; route(); } catch (err) { /* showLogin already */ }
  });
  const drop = $("drop");
  drop.addEventListener("click", () => $("photo").click());
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("photo").click(); } });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); setPhoto(e.dataTransfer.files[0]); });
  $("photo").addEventListener("change", () => setPhoto($("photo").files[0]));
  document.addEventListener("paste", (e) => {
    const f = [...(e.clipboardData || {}).files || []].find((x) => x.type.startsWith("image/"));
    if (f && !$("new").hidden) setPhoto(f);
  });
  for (const id of ["headline", "subline", "cta"]) $(id).addEventListener("input", counters);
  for (const chip of document.querySelectorAll(".chip")) chip.addEventListener("click", () => { $("prompt").value = chip.dataset.theme; });
  $("ad-form").addEventListener("submit", (e) => { e.preventDefault(); submitAd(); });
  $("ad-form").addEventListener("keydown", (e) => {
    if (e.isComposing || e.keyCode === 229) return; // never while an IME composes
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); submitAd(); }
  });
  $("cancel").addEventListener("click", async () => { const id = $("job-id").textContent; renderJob(await api("/v1/jobs/" + id + "/cancel", { method: "POST" })); });
  $("resume").addEventListener("click", async () => { const id = $("job-id").textContent; await api("/v1/jobs/" + id + "/resume", { method: "POST" }); watch(id); });
  $("filter-status").addEventListener("change", () => loadHistory(false));
  $("filter-workflow").addEventListener("change", () => loadHistory(false));
  $("more").addEventListener("click", () => loadHistory(true));
  window.addEventListener("hashchange", route);
  route();
});
