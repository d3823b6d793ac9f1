// convnet serve: the page. Plain JavaScript over the JSON API; no libraries, works offline.
"use strict";

const $ = (id) => document.getElementById(id);

async function api(path, body, type) {
  const opts = body === undefined ? {} : { method: "POST", body, headers: { "Content-Type": type || "application/octet-stream" } };
  const res = await fetch(path, opts);
  let data = null;
  try { data = await res.json(); } catch (_) { /* not JSON */ }
  if (!res.ok) throw new Error((data && data.error) || `${res.status} ${res.statusText}`);
  return data;
}

function bars(el, probs, labels) {
  el.textContent = "";
  const best = probs.indexOf(Math.max(...probs));
  probs.forEach((p, i) => {
    const row = document.createElement("div");
    row.className = "bar" + (i === best ? " best" : "");
    row.innerHTML = `<span>${labels ? labels[i] : i}</span><div class="track"><div class="fill"></div></div><span class="pct"></span>`;
    row.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
    row.querySelector(".pct").textContent = `${(100 * p).toFixed(1)}%`;
    el.appendChild(row);
  });
}

// ---- digits: a canvas, classified after every stroke ----
const canvas = $("digit-canvas");
const ctx = canvas.getContext("2d");
function clearCanvas() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  $("digit-answer").textContent = "–";
  $("digit-bars").textContent = "";
  $("digit-error").textContent = "";
}
clearCanvas();
let drawing = false;
function at(e) {
  const r = canvas.getBoundingClientRect();
  return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
}
canvas.addEventListener("pointerdown", (e) => {
  drawing = true;
  canvas.setPointerCapture && canvas.setPointerCapture(e.pointerId);
  const [x, y] = at(e);
  ctx.lineWidth = 20; ctx.lineCap = "round"; ctx.lineJoin = "round"; ctx.strokeStyle = "#000";
  ctx.beginPath(); ctx.moveTo(x, y); ctx.lineTo(x + 0.1, y); ctx.stroke();
});
canvas.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  const [x, y] = at(e);
  ctx.lineTo(x, y); ctx.stroke();
});
function endStroke() {
  if (!drawing) return;
  drawing = false;
  canvas.toBlob(async (blob) => {
    try {
      const r = await api("/api/digit", blob, "image/png");
      $("digit-answer").textContent = String(r.digit);
      bars($("digit-bars"), r.probabilities);
      $("digit-error").textContent = "";
    } catch (err) { $("digit-error").textContent = err.message; }
  }, "image/png");
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointerleave", endStroke);
$("digit-clear").addEventListener("click", clearCanvas);

// ---- photos: drop or choose a file ----
async function classifyPhoto(file) {
  $("photo-error").textContent = "";
  $("photo-top5").textContent = "";
  $("photo-preview").src = URL.createObjectURL(file);
  const model = $("photo-model").value;
  try {
    const r = await api(`/api/classify?model=${encodeURIComponent(model)}&top=5`, file, file.type || "image/jpeg");
    for (const c of r.top) {
      const li = document.createElement("li");
      li.textContent = c.label;
      const p = document.createElement("span");
      p.className = "p"; p.textContent = `${(100 * c.prob).toFixed(1)}%`;
      li.appendChild(p);
      $("photo-top5").appendChild(li);
    }
    const pp = r.preprocessing;
    $("photo-crop").src = "data:image/png;base64," + pp.crop_png;
    $("photo-prep").textContent =
      `timm eval transform: ${pp.original[1]}×${pp.original[0]} → resize (${pp.interpolation}) to ${pp.resized[1]}×${pp.resized[0]}` +
      ` → centre crop ${pp.crop[1]}×${pp.crop[0]} (crop_pct ${pp.crop_pct}) → normalise mean [${pp.mean.join(", ")}], std [${pp.std.join(", ")}]`;
  } catch (err) { $("photo-error").textContent = err.message; }
}
const drop = $("photo-drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over");
  const f = e.dataTransfer.files[0];
  if (f) classifyPhoto(f);
});
$("photo-file").addEventListener("change", (e) => { const f = e.target.files[0]; if (f) classifyPhoto(f); });

// ---- sound: upload a WAV or record one ----
async function classifySound(blob) {
  $("sound-error").textContent = "";
  $("sound-note").textContent = "";
  try {
    const r = await api("/api/audio", blob, "audio/wav");
    $("sound-digit").textContent = r.digit === null ? "?" : String(r.digit);
    if (r.probabilities.length) bars($("sound-bars"), r.probabilities); else $("sound-bars").textContent = "";
    $("sound-note").textContent = `${r.duration.toFixed(2)} s at ${r.sample_rate} Hz` + (r.note ? ` — ${r.note}` : "");
    $("sound-wave").src = "data:image/png;base64," + r.waveform_png;
    $("sound-mfcc").src = "data:image/png;base64," + r.mfcc_png;
  } catch (err) { $("sound-error").textContent = err.message; }
}
$("sound-file").addEventListener("change", (e) => { const f = e.target.files[0]; if (f) classifySound(f); });

// 16-bit PCM mono WAV of float samples in [-1, 1]
function encodeWav(samples, rate) {
  const buf = new ArrayBuffer(44 + 2 * samples.length);
  const v = new DataView(buf);
  const str = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
  str(0, "RIFF"); v.setUint32(4, 36 + 2 * samples.length, true); str(8, "WAVE");
  str(12, "fmt "); v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, rate, true); v.setUint32(28, 2 * rate, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true);
  str(36, "data"); v.setUint32(40, 2 * samples.length, true);
  samples.forEach((s, i) => v.setInt16(44 + 2 * i, Math.max(-1, Math.min(1, s)) * 32767, true));
  return new Blob([buf], { type: "audio/wav" });
}
let recorder = null;
$("sound-record").addEventListener("click", async () => {
  const btn = $("sound-record");
  if (recorder) { recorder.stop(); return; }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const chunks = [];
    recorder = new MediaRecorder(stream);
    recorder.ondataavailable = (e) => chunks.push(e.data);
    recorder.onstop = async () => {
      stream.getTracks().forEach((t) => t.stop());
      recorder = null; btn.textContent = "Record"; btn.classList.remove("on");
      try {
        const ac = new AudioContext();
        const audio = await ac.decodeAudioData(await new Blob(chunks).arrayBuffer());
        await classifySound(encodeWav(audio.getChannelData(0), audio.sampleRate));
        ac.close();
      } catch (err) { $("sound-error").textContent = `cannot decode the recording: ${err.message}`; }
    };
    recorder.start();
    btn.textContent = "Stop"; btn.classList.add("on");
    setTimeout(() => recorder && recorder.stop(), 3000);
  } catch (err) { $("sound-error").textContent = `no microphone: ${err.message}`; }
});

// ---- compare: the zoo table, sortable ----
let rows = [];
let sortKey = "top1", ascending = false;
function renderTable() {
  const val = (r, k) => k === "size" ? r.input_size[1] : k === "top1" ? (r.published ? r.published.top1 : null)
    : k === "top5" ? (r.published ? r.published.top5 : null) : r[k];
  const sorted = rows.slice().sort((a, b) => {
    const x = val(a, sortKey), y = val(b, sortKey);
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    const c = typeof x === "string" ? x.localeCompare(y) : x - y;
    return ascending ? c : -c;
  });
  const tbody = $("compare-table").querySelector("tbody");
  tbody.textContent = "";
  for (const r of sorted) {
    const tr = document.createElement("tr");
    const cells = [r.name, r.family, r.params === null ? "" : (r.params / 1e6).toFixed(2), r.gmacs === null ? "" : r.gmacs.toFixed(3),
      `${r.input_size[1]}×${r.input_size[2]}`, r.published ? r.published.top1.toFixed(2) : "", r.published ? r.published.top5.toFixed(2) : ""];
    cells.forEach((c, i) => { const td = document.createElement("td"); td.textContent = c; if (i >= 2) td.className = "num"; tr.appendChild(td); });
    tbody.appendChild(tr);
  }
  document.querySelectorAll("#compare-table th").forEach((th) => {
    th.classList.toggle("sorted", th.dataset.key === sortKey);
    th.classList.toggle("asc", th.dataset.key === sortKey && ascending);
  });
}
document.querySelectorAll("#compare-table th").forEach((th) => th.addEventListener("click", () => {
  if (sortKey === th.dataset.key) ascending = !ascending; else { sortKey = th.dataset.key; ascending = sortKey === "name" || sortKey === "family"; }
  renderTable();
}));

async function start() {
  try {
    const m = await api("/api/models");
    const sel = $("photo-model");
    for (const p of m.photos) {
      const o = document.createElement("option");
      o.value = p.name; o.textContent = `${p.name} (${p.input_size[1]}×${p.input_size[2]})`;
      sel.appendChild(o);
    }
    if (!m.photos.length) $("photo-error").textContent = "no photo model: put a timm checkpoint (tf_efficientnet_lite0.safetensors) in the models folder";
    if (!m.sound.model) $("sound-note").textContent = "no spoken-digit model: the charts are drawn, no digit is named";
    const l = m.limits;
    $("limits").textContent = `limits: uploads ${(l.max_upload_bytes / 1048576).toFixed(0)} MB, images ${(l.max_pixels / 1e6).toFixed(0)} megapixels, audio ${l.max_audio_seconds} s`;
  } catch (err) { $("digit-error").textContent = err.message; }
  try {
    const c = await api("/api/compare");
    rows = c.models;
    $("compare-source").textContent = c.source + "; empty where timm publishes no figure for the default tag and size. Click a heading to sort.";
    renderTable();
    $("compare-chart").src = "/api/compare.png";
  } catch (err) { $("compare-source").textContent = err.message; }
}
start();
