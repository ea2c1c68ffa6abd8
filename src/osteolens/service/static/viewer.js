// osteolens viewer: talks to the same server's API with the key typed by the user.
"use strict";
const $ = (id) => document.getElementById(id);
const state = { analysis: null, image: null, mask: null, heat: null, session: [] };

$("key").value = localStorage.getItem("osteolens-key") || "";
$("key").addEventListener("change", () => localStorage.setItem("osteolens-key", $("key").value));

function headers() { return { "X-API-Key": $("key").value }; }
function status(text, isError) { $("status").textContent = text; $("status").className = isError ? "error" : ""; }

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(`${response.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
  }
  return response;
}

async function bitmap(path) { return createImageBitmap(await (await api(path)).blob()); }

function heatColour(v) {  // a small jet-like colour map
  const r = Math.min(255, Math.max(0, 255 * (1.5 - Math.abs(4 * v - 3))));
  const g = Math.min(255, Math.max(0, 255 * (1.5 - Math.abs(4 * v - 2))));
  const b = Math.min(255, Math.max(0, 255 * (1.5 - Math.abs(4 * v - 1))));
  return [r, g, b];
}

function draw() {
  const a = state.analysis, canvas = $("canvas"), ctx = canvas.getContext("2d");
  if (!a || !state.image) return;
  canvas.width = state.image.width; canvas.height = state.image.height;
  ctx.drawImage(state.image, 0, 0);
  const w = canvas.width, h = canvas.height;
  if ($("show-heat").checked && state.heat) {
    const off = new OffscreenCanvas(w, h), o = off.getContext("2d");
    o.drawImage(state.heat, 0, 0, w, h);
    const px = o.getImageData(0, 0, w, h), base = ctx.getImageData(0, 0, w, h);
    for (let i = 0; i < px.data.length; i += 4) {
      const v = px.data[i] / 255, alpha = 0.45 * v, c = heatColour(v);
      for (let k = 0; k < 3; k++) base.data[i + k] = base.data[i + k] * (1 - alpha) + c[k] * alpha;
    }
    ctx.putImageData(base, 0, 0);
  }
  if ($("show-mask").checked && state.mask) {
    const off = new OffscreenCanvas(w, h), o = off.getContext("2d");
    o.drawImage(state.mask, 0, 0, w, h);
    const m = o.getImageData(0, 0, w, h), base = ctx.getImageData(0, 0, w, h);
    const inside = (x, y) => x >= 0 && y >= 0 && x < w && y < h && m.data[4 * (y * w + x)] > 127;
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
      if (inside(x, y) && (!inside(x - 1, y) || !inside(x + 1, y) || !inside(x, y - 1) || !inside(x, y + 1))) {
        const i = 4 * (y * w + x); base.data[i] = 0; base.data[i + 1] = 255; base.data[i + 2] = 0;
      }
    }
    ctx.putImageData(base, 0, 0);
  }
  if ($("show-boxes").checked) {
    ctx.strokeStyle = "rgb(255,40,40)"; ctx.lineWidth = Math.max(1, Math.round(Math.min(w, h) / 256));
    for (const [x0, y0, x1, y1] of a.boxes) ctx.strokeRect(x0 + 0.5, y0 + 0.5, x1 - x0 - 1, y1 - y0 - 1);
    if (a.lesion_long_axis_line) {  // the largest lesion's long axis, as measured
      const [x0, y0, x1, y1] = a.lesion_long_axis_line;
      ctx.strokeStyle = "rgb(0,220,255)"; ctx.beginPath(); ctx.moveTo(x0 + 0.5, y0 + 0.5); ctx.lineTo(x1 + 0.5, y1 + 0.5); ctx.stroke();
    }
  }
}

async function show(a) {
  state.analysis = a;
  const pct = (x) => (x === null || x === undefined) ? "" : `${(100 * x).toFixed(1)}%`;
  $("decision").textContent = a.label === "indeterminate" ? "indeterminate" : a.label;
  $("p-normal").textContent = pct(a.p_normal); $("p-benign").textContent = pct(a.p_benign);
  $("p-malignant").textContent = pct(a.p_malignant); $("uncertainty").textContent = a.uncertainty.toFixed(3);
  $("subtype").textContent = a.subtype ? `${a.subtype} (${pct(a.p_subtype)})` : "-";
  $("area").textContent = a.lesion_area_mm2 !== null ? `${a.lesion_area_px} px (${a.lesion_area_mm2.toFixed(1)} mm²)` : `${a.lesion_area_px} px`;
  const axes = (long_mm, short_mm, long_px, short_px) => long_mm != null ? `${long_mm.toFixed(1)} x ${short_mm.toFixed(1)} mm`
    : long_px != null ? `${Math.round(long_px)} x ${Math.round(short_px)} px (no pixel spacing)` : "-";
  $("size").textContent = axes(a.lesion_long_axis_mm, a.lesion_short_axis_mm, a.lesion_long_axis_px, a.lesion_short_axis_px);
  // a tumour (or indeterminate) call with nothing outlined says so, as the HTML report does
  const none = a.label === "normal" ? "none" : "none outlined: no part of the tumour mask reached its threshold; the heat map shows where the class evidence lies";
  $("lesions").textContent = (a.lesions || []).length === 0 ? none : a.lesions.map(
    (l, i) => `${i + 1}: ${axes(l.long_axis_mm, l.short_axis_mm, l.long_axis_px, l.short_axis_px)}`).join("; ");
  const read = Object.entries(a.clinical || {}).map(([k, v]) => `${k} ${v.value} (${v.from})`);
  if ((a.clinical_missing || []).length) read.push(`not given: ${a.clinical_missing.join(", ")}`);
  $("clinical").textContent = read.join("; ") || "-";
  $("shown-id").textContent = a.id;
  $("refer").hidden = a.label !== "indeterminate";
  $("dicom-downloads").hidden = !a.links.dicom_seg;
  [state.image, state.mask, state.heat] = await Promise.all([bitmap(a.links.image), bitmap(a.links.mask), bitmap(a.links.saliency)]);
  $("result").hidden = false;
  draw();
  remember(a);
}

function anatomyText(side, part) {  // "L KNEE"; views of one study are read together only where these agree
  return [side, part].filter((x) => x).join(" ") || "-";
}

function remember(a) {  // each analysis made or opened on this page, once, for reading a study's views together
  if (state.session.some((s) => s.id === a.id)) return;
  state.session.push(a);
  const row = $("session-list").insertRow();
  const tick = document.createElement("input");
  tick.type = "checkbox"; tick.checked = true; tick.dataset.id = a.id; tick.className = "together";
  row.insertCell().appendChild(tick);
  for (const text of [a.image, anatomyText(a.anatomy?.laterality?.value, a.anatomy?.body_part?.value), a.label, a.id]) row.insertCell().textContent = text;
  $("session").hidden = false;
}

$("read-together").addEventListener("click", async () => {
  const ids = [...document.querySelectorAll("input.together:checked")].map((t) => t.dataset.id);
  const pct = (x) => `${(100 * x).toFixed(1)}%`;
  try {
    const s = await (await api("/v1/studies", { method: "POST", headers: { "Content-Type": "application/json" },
                                                body: JSON.stringify({ analyses: ids }) })).json();
    $("study-decision").textContent = s.decision;
    $("study-decision").className = s.label === "indeterminate" ? "refer" : "";
    $("study-probs").textContent = `${pct(s.p_normal)} / ${pct(s.p_benign)} / ${pct(s.p_malignant)}`;
    $("study-subtype").textContent = s.subtype ? `${s.subtype} (${pct(s.p_subtype)})` : "-";
    $("study-images").textContent = s.images.join(", ");
    $("study-anatomy").textContent = anatomyText(s.laterality, s.body_part);
    // DICOM views of one study: their reading can go back to the PACS as one SR
    const dicom = ids.every((id) => state.session.find((a) => a.id === id)?.links?.dicom_sr);
    $("study-sr").hidden = !(dicom && ids.length > 1);
    $("study-sr").dataset.ids = JSON.stringify(ids);
    $("study-reading").hidden = false;
    status(`read ${ids.length} view(s) together`);
  } catch (e) { status(e.message, true); }
});

async function download(path, name, options = {}) {
  const blob = await (await api(path, options)).blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob); link.download = name;
  document.body.appendChild(link); link.click(); link.remove();
}

$("study-sr").addEventListener("click", async () => {
  try {
    await download("/v1/studies/sr", "osteolens_study_sr.dcm", { method: "POST", headers: { "Content-Type": "application/json" },
                                                                 body: JSON.stringify({ analyses: JSON.parse($("study-sr").dataset.ids) }) });
    status("study SR downloaded");
  } catch (e) { status(e.message, true); }
});

$("upload").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData();
  form.append("file", $("file").files[0]);
  for (const f of ["age", "sex", "region", "laterality", "view"]) if ($(f).value) form.append(f, $(f).value);
  status("analysing...");
  try {
    const a = await (await api("/v1/analyses", { method: "POST", body: form })).json();
    await show(a); a.error ? status(`analysed ${a.image}; ${a.error}`, true) : status(`analysed ${a.image}`);
  } catch (e) { status(e.message, true); }
});

$("open").addEventListener("submit", async (event) => {
  event.preventDefault();
  try { await show(await (await api(`/v1/analyses/${$("analysis-id").value.trim()}`)).json()); status("opened"); }
  catch (e) { status(e.message, true); }
});

for (const kind of ["seg", "sr", "pr", "sc"]) {
  $(`download-${kind}`).addEventListener("click", () =>
    download(state.analysis.links[`dicom_${kind}`], `osteolens_${state.analysis.id}_${kind}.dcm`).catch((e) => status(e.message, true)));
}
for (const id of ["show-mask", "show-boxes", "show-heat"]) $(id).addEventListener("change", draw);
$("download-report").addEventListener("click", () => download(state.analysis.links.report, `osteolens_${state.analysis.id}.html`).catch((e) => status(e.message, true)));
$("download-json").addEventListener("click", () => download(state.analysis.links.self, `osteolens_${state.analysis.id}.json`).catch((e) => status(e.message, true)));
$("delete").addEventListener("click", async () => {
  const id = state.analysis.id;  // the analysis and the uploaded file go; the server also deletes them after its retention time
  try {
    await api(state.analysis.links.self, { method: "DELETE" });
    state.analysis = null; $("result").hidden = true; status(`deleted ${id}`);
    state.session = state.session.filter((s) => s.id !== id);  // a deleted analysis cannot be read with others
    document.querySelector(`input.together[data-id="${id}"]`)?.closest("tr").remove();
    $("session").hidden = state.session.length === 0;
  } catch (e) { status(e.message, true); }
});
