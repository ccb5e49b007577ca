// cacscore review: study list and a small canvas viewer for lesion-by-lesion review.
// Everything is computed by the server (cacscore.scoring); this page only draws and sends edits.
"use strict";

const PRESETS = { calcium: { w: 1500, l: 300 }, soft: { w: 400, l: 40 } };
const KEY_ARTERIES = { "1": "LM", "2": "LAD", "3": "LCX", "4": "RCA" };
const ARTERY_ORDER = ["LM", "LAD", "LCX", "RCA", "unspecified"];
const LABEL_NAMES = { 0: "none", 1: "unspecified", 2: "LM", 3: "LAD", 4: "LCX", 5: "RCA" };
const OUTLINE = [255, 120, 200];
// The heart region's outline (cacscore.anatomy): light blue, apart from every artery colour.
const HEART_OUTLINE = [120, 200, 255];

// ------------------------------------------------------------------ API

// The access token never reaches this script: the server exchanges /?token=... for an HttpOnly cookie.
// Every request carries X-Cacscore-Request, which a cross-site form or no-cors fetch cannot send; the
// server refuses state changes without it.
async function api(path, options = {}) {
  const headers = Object.assign({ "X-Cacscore-Request": "1" }, options.headers || {});
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(options.json);
  }
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
    if (typeof detail !== "string") detail = detail.map((d) => d.msg).join("; ");
    const error = new Error(detail);
    error.status = response.status;
    throw error;
  }
  return response;
}

function withReader(path) {
  return viewer.reader ? `${path}?reviewer=${encodeURIComponent(viewer.reader)}` : path;
}

// ------------------------------------------------------------------ helpers

const $ = (id) => document.getElementById(id);
const sliceRange = ([a, b]) => (a === b ? `slice ${a + 1}` : `slices ${a + 1}–${b + 1}`);
const fmt = (v, digits = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
let toastTimer = null;

function toast(message, kind = "error") {
  const box = $("toast");
  box.textContent = message;
  box.className = `toast ${kind}`;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, kind === "error" ? 6000 : 3000);
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "style") node.style.cssText = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function hexToRgb(hex) {
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

function statusBadge(status) {
  return el("span", { class: `badge ${status.replace(" ", "-")}` }, status);
}

function categoryChip(category) {
  return category ? el("span", { class: `cat cat-${category}` }, category) : "–";
}

// ------------------------------------------------------------------ reviewer name

// The reader's name lives only in this page (never localStorage): on a shared workstation the next
// reader must not inherit it. It is asked for, and confirmed, each time a study opens and at sign-off.

function reviewer() {
  if (!viewer.reader) {
    askReader();
    throw new Error("Confirm your name as reader before editing.");
  }
  return viewer.reader;
}

function showReader() {
  $("reader").textContent = viewer.reader || "not confirmed";
  $("reader").classList.toggle("missing", !viewer.reader);
}

function askReader() {
  const dialog = $("reader-dialog");
  if (dialog.open) return;
  $("reader-name").value = viewer.reader || "";
  $("reader-error").textContent = "";
  dialog.showModal();
  $("reader-name").focus();
}

$("reader-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("reader-name").value.trim().replace(/\s+/g, " ");
  if (!name) { $("reader-error").textContent = "Enter your name."; return; }
  viewer.reader = name;
  showReader();
  $("reader-dialog").close();
  if (viewer.study) renderStudyInfo();
});
$("reader-dialog").addEventListener("cancel", (event) => { if (!viewer.reader) event.preventDefault(); });
$("change-reader").addEventListener("click", askReader);

// ------------------------------------------------------------------ study list

let listTimer = null;

async function showList() {
  $("review-view").hidden = true;
  $("list-view").hidden = false;
  $("crumbs").textContent = "";
  viewer.study = null;
  document.title = "cacscore review";
  const body = $("studies").querySelector("tbody");
  try {
    const studies = await (await api("/api/studies")).json();
    body.replaceChildren(...studies.map((s) => el("tr", { "data-id": s.id, onclick: () => { location.hash = `#/study/${s.id}`; } },
      el("td", {}, el("a", { href: `#/study/${s.id}` }, s.name)),
      el("td", {}, s.source === "uploads" ? "upload" : "data folder"),
      el("td", { class: "num" }, fmt(s.auto_agatston)),
      el("td", { class: "num" }, fmt(s.agatston)),
      el("td", {}, categoryChip(s.risk_category)),
      el("td", { title: s.error || "" }, statusBadge(s.status)),
      el("td", {}, s.signed_by ? `${s.signed_by}, ${s.signed_at.slice(0, 10)}` : ""))));
    $("empty-hint").hidden = studies.length > 0;
    // New studies are analysed in the background; refresh the list until they are done.
    clearTimeout(listTimer);
    if (studies.some((s) => s.status === "new")) listTimer = setTimeout(() => { if (!$("list-view").hidden) showList(); }, 4000);
  } catch (error) {
    toast(`Cannot list studies: ${error.message}`);
  }
}

$("upload-file").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  const line = $("upload-status");
  line.className = "status-line";
  line.textContent = `Uploading ${file.name} (${(file.size / 1048576).toFixed(1)} MB)…`;
  const form = new FormData();
  form.append("file", file);
  if (viewer.reader) form.append("reviewer", viewer.reader);
  try {
    const study = await (await api("/api/studies", { method: "POST", body: form })).json();
    line.textContent = `${file.name} added as study ${study.id}.`;
    showList();
  } catch (error) {
    line.className = "status-line error";
    line.textContent = `Upload refused: ${error.message}`;
  }
  event.target.value = "";
});

$("rescan").addEventListener("click", async () => {
  try {
    const { added } = await (await api("/api/studies/rescan", { method: "POST" })).json();
    $("upload-status").className = "status-line";
    $("upload-status").textContent = added ? `${added} new scan(s) found.` : "No new scans.";
    showList();
  } catch (error) { toast(error.message); }
});

// ------------------------------------------------------------------ viewer state

const viewer = {
  study: null,      // study info from GET /api/studies/{id}
  state: null,      // review state (version, score, lesions, edits)
  z: 0,
  zoom: 1,
  panX: 0,
  panY: 0,
  win: { ...PRESETS.calcium },
  slices: new Map(),   // z -> Int16Array
  overlays: new Map(), // z -> {version, ids: Int32Array, labels: Uint8Array}
  heartOutlines: new Map(), // z -> Uint8Array (1 on the heart region's border)
  pending: new Map(),  // request key -> promise
  hoverId: 0,
  selectedId: 0,
  lesionById: new Map(),
  candidateById: new Map(),
  colours: {},
  showCandidates: true,
  showLesions: true,
  busy: false,
  reader: "",          // confirmed reader name (this page only)
  tool: null,          // "erase" | "paint" | null (brush tools)
};

const canvas = $("canvas");
const ctx = canvas.getContext("2d");
const offscreen = document.createElement("canvas");
const offctx = offscreen.getContext("2d");

function rows() { return viewer.study.shape[1]; }
function cols() { return viewer.study.shape[2]; }
function nSlices() { return viewer.study.shape[0]; }

async function openStudy(id) {
  $("list-view").hidden = true;
  $("review-view").hidden = false;
  $("loading").hidden = false;
  $("loading").textContent = "Loading and analysing study…";
  hidePopup();
  viewer.slices.clear();
  viewer.overlays.clear();
  viewer.heartOutlines.clear();
  viewer.pending.clear();
  viewer.selectedId = 0;
  viewer.hoverId = 0;
  askReader();  // every opening asks who reads, prefilled only with this page's name
  try {
    const study = await (await api(`/api/studies/${id}`)).json();
    viewer.study = study;
    viewer.candidateById = new Map(study.candidates.map((row) => [row.id, row]));
    viewer.colours = Object.fromEntries(Object.entries(study.arteries).map(([k, v]) => [k, hexToRgb(v)]));
    offscreen.width = cols();
    offscreen.height = rows();
    renderStudyInfo();
    setState(study.state);
    const start = study.state.lesions.length
      ? [...study.state.lesions].sort((a, b) => b.agatston - a.agatston)[0].key_slice
      : Math.floor(nSlices() / 2);
    $("slice-slider").max = nSlices() - 1;
    resetView();
    await goToSlice(start);
    $("loading").hidden = true;
    canvas.focus();
    prefetch();
  } catch (error) {
    $("loading").textContent = `Cannot open study: ${error.message}`;
  }
}

function renderStudyInfo() {
  const s = viewer.study;
  document.title = `${s.name} · cacscore review`;
  $("crumbs").replaceChildren(el("a", { href: "#/" }, "Studies"), " / ", s.name);
  $("study-name").textContent = s.name;
  const spacing = s.spacing_mm;
  const ids = [
    ["Patient ID", s.patient_id || "–"],
    ["Study UID", s.study_uid || "–"],
    ["Series UID", s.series_uid || "–"],
    ["Grid", `${s.shape[0]} × ${s.shape[1]} × ${s.shape[2]}, ${fmt(spacing[1], 2)} × ${fmt(spacing[2], 2)} mm, increment ${fmt(spacing[0], 2)} mm`],
    ["Thickness / kVp", `${s.slice_thickness_mm ? fmt(s.slice_thickness_mm, 1) + " mm" : "–"} / ${s.kvp ?? "–"}`],
  ];
  $("study-ids").replaceChildren(...ids.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  $("study-warnings").hidden = !s.warnings.length;
  $("study-warnings").textContent = s.warnings.join(" · ");
  // The domain check refused the scan: no automatic result; a reader may have it analysed anyway.
  $("study-refusal").hidden = !s.refusal;
  $("refusal-text").textContent = s.refusal ? `${s.refusal}. The model did not run; calcium scores of such a scan are not those of a calcium-scoring CT.` : "";
  $("legend").replaceChildren(
    ...["LM", "LAD", "LCX", "RCA"].map((a) => el("span", {}, el("span", { class: "chip", style: `background:${s.arteries[a]}` }), a)),
    el("span", {}, el("span", { class: "chip outline" }), "candidate ≥130 HU"));
  // Exports are audited with the confirmed reader's name.
  $("export-json").href = withReader(`/api/studies/${s.id}/report.json`);
  $("export-json").setAttribute("download", `study-${s.id}-report.json`);
  $("export-mask").href = withReader(`/api/studies/${s.id}/mask.nii.gz`);
  $("export-pdf").href = withReader(`/api/studies/${s.id}/report.pdf`);
  // DICOM exports carry the signed result into the source study: offered after sign-off, DICOM sources only.
  for (const [id, name] of [["export-seg", "seg.dcm"], ["export-sr", "sr.dcm"], ["export-pdf-dicom", "report_pdf.dcm"]]) {
    $(id).href = withReader(`/api/studies/${s.id}/${name}`);
  }
  const o = s.orientation || {};
  for (const side of ["left", "right", "top", "bottom"]) $(`orient-${side}`).textContent = o[side] || "";
}

function setState(state) {
  const previous = viewer.state;
  viewer.state = state;
  viewer.lesionById = new Map(state.lesions.map((row) => [row.id, row]));
  if (previous && previous.version !== state.version) {
    // Labels changed: drop cached overlays (candidate ids stay the same but arrive with them).
    viewer.overlays.clear();
  viewer.heartOutlines.clear();
  }
  renderScores();
  renderLesions();
  renderCandidates();
  renderEdits();
  renderTicks();
  const signed = state.status === "signed";
  $("study-status").replaceWith(Object.assign(statusBadge(state.status), { id: "study-status" }));
  syncUndo();
  $("sign").disabled = signed;
  $("unsign").hidden = !signed;
  const dicom = signed && viewer.study && viewer.study.dicom_source;
  $("export-seg").hidden = !dicom || !state.lesions.some((row) => row.artery);  // no SEG without calcium
  $("export-sr").hidden = !dicom;
  $("export-pdf-dicom").hidden = !dicom;
  $("sign").textContent = signed ? "Signed" : "Sign…";
  $("sign").title = signed
    ? `Signed by ${state.signed_by} on ${state.signed_at.slice(0, 16).replace("T", " ")} UTC; read-only`
    : "Sign the review; the study becomes read-only";
}

function renderScores() {
  const { score, interpretation } = viewer.state;
  const total = $("total-agatston");
  total.textContent = fmt(score.agatston);
  total.dataset.value = String(score.agatston);
  $("risk-category").replaceChildren(categoryChip(score.risk_category));
  $("cac-drs").textContent = score.cac_drs;
  $("interpretation").textContent = `${interpretation.risk_category} ${interpretation.cac_drs}`;
  const body = $("scores").querySelector("tbody");
  const rowsOut = ARTERY_ORDER
    .filter((name) => name !== "unspecified" || score.arteries[name].agatston > 0 || score.arteries[name].n_lesions > 0)
    .map((name) => {
      const a = score.arteries[name];
      return el("tr", { "data-artery": name },
        el("td", {}, el("span", { class: "swatch", style: `background:${viewer.study.arteries[name]}` }), name),
        el("td", { class: "num" }, a.n_lesions), el("td", { class: "num", "data-value": a.agatston }, fmt(a.agatston)),
        el("td", { class: "num" }, fmt(a.volume_mm3)), el("td", { class: "num" }, fmt(a.mass_mg)));
    });
  const nLesions = ARTERY_ORDER.reduce((sum, name) => sum + score.arteries[name].n_lesions, 0);
  rowsOut.push(el("tr", { class: "total-row" }, el("td", {}, "Total"), el("td", { class: "num" }, nLesions),
    el("td", { class: "num" }, fmt(score.agatston)), el("td", { class: "num" }, fmt(score.volume_mm3)),
    el("td", { class: "num" }, fmt(score.mass_mg))));
  body.replaceChildren(...rowsOut);
  const s = viewer.study;
  const auto = s.method === "model" ? `model ${s.model_version}` : "no model: candidates only";
  $("auto-note").textContent = `Automatic (${auto}): Agatston ${fmt(viewer.state.auto_agatston)}. Totals are recomputed by cacscore.scoring after every edit.`;
}

function renderLesions() {
  const list = $("lesions");
  const rowsIn = [...viewer.state.lesions].sort((a, b) => (b.artery ? 1 : 0) - (a.artery ? 1 : 0) || b.agatston - a.agatston);
  $("lesion-count").textContent = `(${rowsIn.filter((r) => r.artery).length} counted)`;
  list.replaceChildren(...rowsIn.map((row) => {
    const colour = row.artery ? viewer.study.arteries[row.artery] : "transparent";
    const conf = row.confidence === null || row.confidence === undefined ? "" : ` · conf ${fmt(row.confidence, 2)}`;
    let changed = "";
    if (!row.artery) changed = " · removed";
    else if (!row.auto_artery) changed = " · added";
    else if (row.artery !== row.auto_artery) changed = ` · was ${row.auto_artery}`;
    return el("li", {
      class: `${row.artery ? "" : "removed"} ${row.id === viewer.selectedId ? "selected" : ""}`,
      "data-lesion": row.id,
      title: "Show this lesion",
      onclick: () => selectLesion(row.id, true),
    },
    el("span", { class: "swatch", style: `background:${colour}; border:1px solid ${row.artery ? colour : "#667"}` }),
    el("strong", {}, row.artery || row.auto_artery),
    el("span", { class: "meta" }, `#${row.id} · ${sliceRange(row.slices)}${conf}${changed}`),
    el("span", { class: "num" }, fmt(row.agatston)));
  }));
}

function renderCandidates() {
  const rowsIn = viewer.study.candidates.filter((row) => {
    const lesion = viewer.lesionById.get(row.id);
    return !(lesion && lesion.artery);
  });
  $("candidate-count").textContent = `(${rowsIn.length}${viewer.study.candidates.length >= 500 ? "+" : ""})`;
  $("candidates").replaceChildren(...rowsIn.map((row) => el("li", {
    class: `${row.id === viewer.selectedId ? "selected" : ""} ${row.warnings.length ? "implausible" : ""}`,
    "data-candidate": row.id,
    title: row.warnings.length ? `Unlikely coronary calcium: ${row.warnings.join("; ")}` : "Show this candidate",
    onclick: () => selectLesion(row.id, true),
  },
  el("span", { class: "swatch", style: "border:1.5px solid #ff78c8" }),
  el("strong", {}, row.warnings.length ? `⚠ #${row.id}` : `#${row.id}`),
  el("span", { class: "meta" }, `${sliceRange(row.slices)} · ${fmt(row.volume_mm3)} mm³ · peak ${Math.round(row.peak_hu)} HU`),
  el("span", { class: "num", title: "Agatston it would add" }, `+${fmt(row.agatston)}`))));
}

function renderEdits() {
  const edits = viewer.state.edits;
  $("edit-count").textContent = `(${edits.length})`;
  const undone = new Set(edits.filter((e) => e.action === "undo").map((e) => e.undoes));
  $("edits").replaceChildren(...edits.map((e) => el("li", { class: undone.has(e.id) ? "undone" : "" },
    `${e.time.slice(0, 16).replace("T", " ")} · ${e.reviewer}: ${e.action} lesion #${e.lesion} `
    + (e.action === "trim" ? `(${e.n_voxels} voxels on slice ${e.slice + 1}: ${LABEL_NAMES[e.before]} → ${LABEL_NAMES[e.after]})`
      : `(${LABEL_NAMES[e.before]} → ${LABEL_NAMES[e.after]})`))));
}

function renderTicks() {
  const n = nSlices();
  const seen = new Map();
  for (const row of viewer.state.lesions) {
    if (row.artery) seen.set(row.key_slice, viewer.study.arteries[row.artery]);
  }
  $("ticks").replaceChildren(...[...seen].map(([z, colour]) =>
    el("span", { style: `left:${n > 1 ? (100 * z) / (n - 1) : 50}%; background:${colour}` })));
}

// ------------------------------------------------------------------ pixel data

function fetchSlice(z) {
  if (viewer.slices.has(z)) return Promise.resolve(viewer.slices.get(z));
  const key = `s${z}`;
  if (!viewer.pending.has(key)) {
    const id = viewer.study.id;
    viewer.pending.set(key, api(`/api/studies/${id}/slices/${z}`).then((r) => r.arrayBuffer()).then((buffer) => {
      viewer.pending.delete(key);
      if (!viewer.study || viewer.study.id !== id) return null;
      const data = new Int16Array(buffer);
      viewer.slices.set(z, data);
      return data;
    }));
  }
  return viewer.pending.get(key);
}

// The heart region's outline (only there can calcium count as coronary); fetched once per slice.
function fetchHeartOutline(z) {
  const cached = viewer.heartOutlines.get(z);
  if (cached) return Promise.resolve(cached);
  const id = viewer.study.id;
  return api(`/api/studies/${id}/heart-region/${z}`).then((r) => r.arrayBuffer()).then((buffer) => {
    if (!viewer.study || viewer.study.id !== id) return null;
    const outline = new Uint8Array(buffer);
    viewer.heartOutlines.set(z, outline);
    if (viewer.z === z) draw();
    return outline;
  }).catch(() => null);
}

function fetchOverlay(z) {
  const version = viewer.state.version;
  const cached = viewer.overlays.get(z);
  if (cached && cached.version === version) return Promise.resolve(cached);
  const key = `o${z}v${version}`;
  if (!viewer.pending.has(key)) {
    const id = viewer.study.id;
    viewer.pending.set(key, api(`/api/studies/${id}/overlays/${z}`).then((r) => r.arrayBuffer()).then((buffer) => {
      viewer.pending.delete(key);
      if (!viewer.study || viewer.study.id !== id) return null;
      const n = rows() * cols();
      const overlay = { version, ids: new Int32Array(buffer, 0, n), labels: new Uint8Array(buffer, 4 * n, n) };
      if (version === viewer.state.version) viewer.overlays.set(z, overlay);
      return overlay;
    }));
  }
  return viewer.pending.get(key);
}

async function prefetch() {
  // Neighbours first, so that scrolling from the opening slice never waits.
  const start = viewer.z;
  const id = viewer.study && viewer.study.id;
  for (let d = 1; d < nSlices(); d++) {
    for (const z of [start + d, start - d]) {
      if (!viewer.study || viewer.study.id !== id) return;
      if (z >= 0 && z < nSlices()) {
        try { await Promise.all([fetchSlice(z), fetchOverlay(z)]); } catch (_) { return; }
      }
    }
  }
}

async function goToSlice(z) {
  z = Math.max(0, Math.min(nSlices() - 1, z));
  viewer.z = z;
  $("slice-slider").value = z;
  updateHud();
  const [slice, overlay] = await Promise.all([fetchSlice(z), fetchOverlay(z)]);
  if (viewer.z === z && slice && overlay) draw();
  fetchHeartOutline(z);
}

// ------------------------------------------------------------------ drawing

function composeSlice() {
  const z = viewer.z;
  const hu = viewer.slices.get(z);
  const overlay = viewer.overlays.get(z);
  if (!hu || !overlay) return false;
  const w = cols(), h = rows();
  const image = offctx.createImageData(w, h);
  const px = image.data;
  const low = viewer.win.l - viewer.win.w / 2;
  const scale = 255 / Math.max(1, viewer.win.w);
  const { ids, labels } = overlay;
  const colourOf = [null, viewer.colours.unspecified, viewer.colours.LM, viewer.colours.LAD, viewer.colours.LCX, viewer.colours.RCA];
  const selected = viewer.selectedId, hover = viewer.hoverId;
  const heart = viewer.heartOutlines.get(z);
  for (let i = 0, y = 0; y < h; y++) {
    for (let x = 0; x < w; x++, i++) {
      let g = (hu[i] - low) * scale;
      g = g < 0 ? 0 : g > 255 ? 255 : g;
      let r = g, gg = g, b = g;
      const id = ids[i];
      if (id) {
        const edge = (x === 0 || ids[i - 1] !== id) || (x === w - 1 || ids[i + 1] !== id)
          || (y === 0 || ids[i - w] !== id) || (y === h - 1 || ids[i + w] !== id);
        const label = labels[i];
        if (label && viewer.showLesions) {
          const c = colourOf[label];
          const a = edge ? 0.9 : 0.6;
          r = r * (1 - a) + c[0] * a; gg = gg * (1 - a) + c[1] * a; b = b * (1 - a) + c[2] * a;
        } else if (edge && viewer.showCandidates) {
          const a = id === hover ? 0.95 : 0.55;
          r = r * (1 - a) + OUTLINE[0] * a; gg = gg * (1 - a) + OUTLINE[1] * a; b = b * (1 - a) + OUTLINE[2] * a;
        }
        if (edge && (id === selected || (id === hover && label))) { r = 255; gg = 255; b = 255; }
      }
      if (heart && heart[i]) { r = r * 0.4 + HEART_OUTLINE[0] * 0.6; gg = gg * 0.4 + HEART_OUTLINE[1] * 0.6; b = b * 0.4 + HEART_OUTLINE[2] * 0.6; }
      const o = 4 * i;
      px[o] = r; px[o + 1] = gg; px[o + 2] = b; px[o + 3] = 255;
    }
  }
  offctx.putImageData(image, 0, 0);
  return true;
}

function pixelAspect() {
  // Physical aspect: one row step is dy mm, one column step dx mm.
  const [, dy, dx] = viewer.study.spacing_mm;
  return dy / dx;
}

function baseScale() {
  const wrap = $("canvas-wrap");
  return Math.min(wrap.clientWidth / cols(), wrap.clientHeight / (rows() * pixelAspect()));
}

function resetView() {
  viewer.zoom = 1;
  viewer.panX = 0;
  viewer.panY = 0;
  draw();
}

function transform() {
  const wrap = $("canvas-wrap");
  const sx = baseScale() * viewer.zoom;
  const sy = sx * pixelAspect();
  const ox = (wrap.clientWidth - cols() * sx) / 2 + viewer.panX;
  const oy = (wrap.clientHeight - rows() * sy) / 2 + viewer.panY;
  return { sx, sy, ox, oy };
}

function draw() {
  if (!viewer.study) return;
  const wrap = $("canvas-wrap");
  const ratio = window.devicePixelRatio || 1;
  const width = Math.round(wrap.clientWidth * ratio), height = Math.round(wrap.clientHeight * ratio);
  if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, wrap.clientWidth, wrap.clientHeight);
  if (!composeSlice()) return;
  const { sx, sy, ox, oy } = transform();
  ctx.imageSmoothingEnabled = viewer.zoom < 1.5;
  ctx.drawImage(offscreen, ox, oy, cols() * sx, rows() * sy);
  updateHud();
}

function updateHud() {
  if (!viewer.study) return;
  $("hud-slice").textContent = `Slice ${viewer.z + 1} / ${nSlices()}`;
  $("hud-window").textContent = `W ${Math.round(viewer.win.w)} / L ${Math.round(viewer.win.l)} · zoom ${viewer.zoom.toFixed(1)}×`;
  for (const button of document.querySelectorAll("[data-preset]")) {
    const p = PRESETS[button.dataset.preset];
    button.classList.toggle("active", p.w === viewer.win.w && p.l === viewer.win.l);
  }
}

// ------------------------------------------------------------------ interaction

function voxelAt(clientX, clientY) {
  const rect = canvas.getBoundingClientRect();
  const { sx, sy, ox, oy } = transform();
  const x = Math.floor((clientX - rect.left - ox) / sx);
  const y = Math.floor((clientY - rect.top - oy) / sy);
  if (x < 0 || y < 0 || x >= cols() || y >= rows()) return null;
  return { x, y, i: y * cols() + x };
}

function candidateAt(clientX, clientY) {
  const voxel = voxelAt(clientX, clientY);
  const overlay = viewer.overlays.get(viewer.z);
  if (!voxel || !overlay) return { voxel, id: 0 };
  return { voxel, id: overlay.ids[voxel.i] };
}

function describe(id) {
  const row = viewer.lesionById.get(id);
  if (row && row.artery) {
    const conf = row.confidence === null || row.confidence === undefined ? "" : ` · confidence ${fmt(row.confidence, 2)}`;
    return `<b>${row.artery}</b> lesion #${id} · Agatston ${fmt(row.agatston)} · ${fmt(row.volume_mm3)} mm³${conf}`;
  }
  const was = row && row.auto_artery ? ` (automatic: ${row.auto_artery}, removed)` : "";
  const candidate = viewer.candidateById.get(id);
  let adds = candidate ? ` · would add ${fmt(candidate.agatston)}` : "";
  // Adding counts the whole >= 130 HU component; the model's mask may have covered only part of it.
  if (candidate && row && row.auto_artery) adds += " (its whole ≥ 130 HU component, which can be larger than what the automatic mask counted)";
  const warn = candidate && candidate.warnings.length
    ? `<br><span class="warn">⚠ unlikely coronary calcium: ${candidate.warnings.join("; ")}</span>` : "";
  return `Candidate #${id}, not counted${was}${adds} · click to add${warn}`;
}

let drag = null;

canvas.addEventListener("mousedown", (event) => {
  if (!viewer.study) return;
  drag = { x: event.clientX, y: event.clientY, button: event.button, moved: false, panX: viewer.panX, panY: viewer.panY,
    win: { ...viewer.win } };
  event.preventDefault();
});

window.addEventListener("mousemove", (event) => {
  if (!viewer.study || $("review-view").hidden) return;
  if (drag) {
    const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    if (!drag.moved) return;
    if (drag.button === 2) {
      viewer.win = { w: Math.max(1, drag.win.w + dx * 4), l: drag.win.l + dy * 2 };
    } else {
      viewer.panX = drag.panX + dx;
      viewer.panY = drag.panY + dy;
      canvas.classList.add("grabbing");
    }
    hideTooltip();
    draw();
    return;
  }
  if (event.target !== canvas) return;
  const { voxel, id } = candidateAt(event.clientX, event.clientY);
  const hu = voxel && viewer.slices.get(viewer.z) ? viewer.slices.get(viewer.z)[voxel.i] : null;
  $("hud-cursor").textContent = voxel ? `x ${voxel.x} y ${voxel.y} · ${hu} HU` : "";
  if (id !== viewer.hoverId) {
    viewer.hoverId = id;
    canvas.classList.toggle("pointer", id > 0);
    draw();
  }
  if (id) showTooltip(event, describe(id)); else hideTooltip();
});

window.addEventListener("mouseup", (event) => {
  if (!drag) return;
  const wasClick = !drag.moved && drag.button === 0 && event.target === canvas;
  drag = null;
  canvas.classList.remove("grabbing");
  if (wasClick) {
    const { voxel, id } = candidateAt(event.clientX, event.clientY);
    if (viewer.tool && voxel) { trimAt(voxel, id); return; }
    if (id) selectLesion(id, false, event); else { viewer.selectedId = 0; hidePopup(); renderLesions(); draw(); }
  }
});

canvas.addEventListener("contextmenu", (event) => event.preventDefault());
canvas.addEventListener("mouseleave", () => { hideTooltip(); $("hud-cursor").textContent = ""; });

canvas.addEventListener("wheel", (event) => {
  if (!viewer.study) return;
  event.preventDefault();
  hidePopup();
  if (event.ctrlKey || event.metaKey) {
    zoomAt(event.deltaY < 0 ? 1.2 : 1 / 1.2, event.clientX, event.clientY);
  } else {
    goToSlice(viewer.z + (event.deltaY > 0 ? 1 : -1));
  }
}, { passive: false });

function zoomAt(factor, clientX, clientY) {
  const rect = canvas.getBoundingClientRect();
  const before = transform();
  const px = clientX === undefined ? rect.width / 2 : clientX - rect.left;
  const py = clientY === undefined ? rect.height / 2 : clientY - rect.top;
  const ix = (px - before.ox) / before.sx, iy = (py - before.oy) / before.sy;
  viewer.zoom = Math.max(0.5, Math.min(16, viewer.zoom * factor));
  const after = transform();
  viewer.panX += px - (after.ox + ix * after.sx);
  viewer.panY += py - (after.oy + iy * after.sy);
  draw();
}

function showTooltip(event, html) {
  const tip = $("tooltip");
  const rect = $("canvas-wrap").getBoundingClientRect();
  tip.innerHTML = html;
  tip.hidden = false;
  tip.style.left = `${Math.min(event.clientX - rect.left + 14, rect.width - tip.offsetWidth - 6)}px`;
  tip.style.top = `${event.clientY - rect.top + 14}px`;
}

function hideTooltip() { $("tooltip").hidden = true; }

async function selectLesion(id, jump, event) {
  viewer.selectedId = id;
  const row = viewer.lesionById.get(id) || viewer.candidateById.get(id);
  if (jump && row) {
    if (viewer.z < row.slices[0] || viewer.z > row.slices[1]) await goToSlice(row.key_slice);
    event = lesionOnScreen(row);
  }
  renderLesions();
  renderCandidates();
  draw();
  showPopup(id, event);
}

function lesionOnScreen(row) {
  // Bring the lesion into view (when zoomed in) and return its screen position for the menu.
  const wrap = $("canvas-wrap").getBoundingClientRect();
  let { sx, sy, ox, oy } = transform();
  let x = ox + (row.center_yx[1] + 0.5) * sx, y = oy + (row.center_yx[0] + 0.5) * sy;
  if (x < 40 || y < 40 || x > wrap.width - 40 || y > wrap.height - 40) {
    viewer.panX += wrap.width / 2 - x;
    viewer.panY += wrap.height / 2 - y;
    ({ sx, sy, ox, oy } = transform());
    x = ox + (row.center_yx[1] + 0.5) * sx;
    y = oy + (row.center_yx[0] + 0.5) * sy;
  }
  return { clientX: wrap.left + x + 6, clientY: wrap.top + y + 6 };
}

function showPopup(id, event) {
  const popup = $("popup");
  const row = viewer.lesionById.get(id);
  const current = row ? row.artery : null;
  const signed = viewer.state.status === "signed";
  const title = el("div", { class: "title" });
  title.innerHTML = describe(id);
  const buttons = el("div", { class: "buttons" },
    ...["LM", "LAD", "LCX", "RCA"].map((artery, k) => el("button", {
      type: "button", class: current === artery ? "current" : "", title: `Count in ${artery} (key ${k + 1})`,
      style: `background:${viewer.study.arteries[artery]}33; border-color:${viewer.study.arteries[artery]}`,
      "data-artery": artery, disabled: signed || current === artery ? "" : null,
      onclick: () => applyEdit(id, artery),
    }, artery)),
    el("button", { type: "button", class: "remove", title: "Do not count (key 0 / Delete)", "data-artery": "none",
      disabled: signed || !current ? "" : null, onclick: () => applyEdit(id, null) }, "Remove"));
  const keepPlace = !event && !popup.hidden;  // refreshed after an edit: stay where the reviewer looks
  popup.replaceChildren(title, buttons);
  if (signed) popup.append(el("div", { class: "title" }, "Signed: read-only"));
  popup.hidden = false;
  if (keepPlace) return;
  const rect = $("canvas-wrap").getBoundingClientRect();
  let left = rect.width - popup.offsetWidth - 12, top = 40;
  if (event) {
    left = Math.min(event.clientX - rect.left + 16, rect.width - popup.offsetWidth - 8);
    top = Math.min(event.clientY - rect.top + 16, rect.height - popup.offsetHeight - 8);
  }
  popup.style.left = `${Math.max(8, left)}px`;
  popup.style.top = `${Math.max(8, top)}px`;
}

function hidePopup() { $("popup").hidden = true; }

// Undo is disabled while a change is on its way (and its slice reloads): a click then would be dropped
// by the busy guard, and undo what the reviewer did before instead of the change being shown.
function syncUndo() {
  const state = viewer.state;
  $("undo").disabled = viewer.busy || !state || !state.can_undo || state.status === "signed";
}

async function change(path, body, name) {
  if (viewer.busy) return;
  viewer.busy = true;
  syncUndo();
  try {
    const send = (extra) => api(`/api/studies/${viewer.study.id}/${path}`, {
      method: "POST", json: Object.assign({ version: viewer.state.version, reviewer: name || reviewer() }, body, extra),
    });
    let response;
    try {
      response = await send({});
    } catch (error) {
      // 428: the candidate fails a plausibility check; the server says why and counts it only if confirmed.
      if (error.status !== 428) throw error;
      if (!window.confirm(`${error.message}\n\nCount it anyway?`)) return;
      response = await send({ confirm: true });
    }
    setState(await response.json());
    await goToSlice(viewer.z);
  } catch (error) {
    if (error.status === 409 && /changed by someone else/.test(error.message)) {
      toast("This study was changed by someone else; showing the latest version.", "info");
      setState(await (await api(`/api/studies/${viewer.study.id}/state`)).json());
      await goToSlice(viewer.z);
    } else {
      toast(error.message);
    }
  } finally {
    viewer.busy = false;
    syncUndo();
  }
}

async function applyEdit(id, artery) {
  const row = viewer.lesionById.get(id), candidate = viewer.candidateById.get(id);
  let confirmed = false;
  if (artery && !(row && row.artery) && candidate && candidate.warnings.length) {
    // Ask before sending; candidates not in the list are checked by the server (answer 428, asked then).
    const question = `Candidate ${id} is unlikely to be coronary calcium: ${candidate.warnings.join("; ")}.`
      + `\n\nCount it in ${artery} anyway (adds ${fmt(candidate.agatston)})?`;
    if (!window.confirm(question)) return;
    confirmed = true;
  }
  await change("edits", confirmed ? { lesion: id, artery, confirm: true } : { lesion: id, artery });
  if (viewer.selectedId === id && !$("popup").hidden) showPopup(id, null);
}

// ------------------------------------------------------------------ brush and eraser

// With a tool on, a click trims the lesion under the cursor in this slice only: the eraser takes its
// counted voxels within the radius out, the brush paints its uncounted ones back. The server rescores.
function setTool(tool) {
  viewer.tool = viewer.tool === tool ? null : tool;
  $("tool-erase").classList.toggle("active", viewer.tool === "erase");
  $("tool-paint").classList.toggle("active", viewer.tool === "paint");
  canvas.classList.toggle("brush", Boolean(viewer.tool));
  hidePopup();
}

function trimAt(voxel, id) {
  if (!id) { toast("Click on a lesion to trim it."); return; }
  const radius = Number($("brush-radius").value);
  if (!(radius > 0)) { toast("Set a brush radius above 0."); return; }
  change("trim", { lesion: id, z: viewer.z, center_yx: [voxel.y, voxel.x], radius_px: radius, mode: viewer.tool });
}

$("tool-erase").addEventListener("click", () => setTool("erase"));
$("tool-paint").addEventListener("click", () => setTool("paint"));

$("undo").addEventListener("click", () => { hidePopup(); change("undo", {}); });
$("sign").addEventListener("click", () => {
  $("sign-text").textContent = `Agatston ${fmt(viewer.state.score.agatston)}, category `
    + `${viewer.state.score.risk_category}, CAC-DRS ${viewer.state.score.cac_drs}. The study becomes read-only.`;
  $("sign-name").value = "";  // typed at every sign-off, never filled in
  $("sign-error").textContent = "";
  $("sign-dialog").showModal();
  $("sign-name").focus();
});
$("sign-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("sign-name").value.trim().replace(/\s+/g, " ");
  if (!name) { $("sign-error").textContent = "Type your name to sign."; return; }
  viewer.reader = name;
  showReader();
  $("sign-dialog").close();
  hidePopup();
  change("sign", {}, name);
});
$("sign-cancel").addEventListener("click", () => $("sign-dialog").close());
$("analyse-anyway").addEventListener("click", async () => {
  const s = viewer.study;
  let name;
  try { name = reviewer(); } catch (error) { toast(error.message); return; }
  if (!window.confirm(`${s.refusal}.\n\nAnalyse this scan anyway? Your name (${name}) and this decision go into the audit log.`)) return;
  try {
    await api(`/api/studies/${s.id}/analyse-anyway`, { method: "POST", json: { version: viewer.state.version, reviewer: name } });
    await openStudy(s.id);
  } catch (error) {
    toast(error.message);
  }
});
$("unsign").addEventListener("click", () => {
  $("unsign-reason").value = "";
  $("unsign-name").value = "";
  $("unsign-dialog").showModal();
});
$("unsign-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("unsign-name").value.trim(), reason = $("unsign-reason").value.trim();
  if (!name || !reason) return;
  viewer.reader = name;
  showReader();
  $("unsign-dialog").close();
  change("unsign", { reason }, name);
});
$("unsign-cancel").addEventListener("click", () => $("unsign-dialog").close());

for (const button of document.querySelectorAll("[data-preset]")) {
  button.addEventListener("click", () => { viewer.win = { ...PRESETS[button.dataset.preset] }; draw(); });
}
$("show-candidates").addEventListener("change", (e) => { viewer.showCandidates = e.target.checked; draw(); });
$("show-lesions").addEventListener("change", (e) => { viewer.showLesions = e.target.checked; draw(); });
$("zoom-in").addEventListener("click", () => zoomAt(1.25));
$("zoom-out").addEventListener("click", () => zoomAt(0.8));
$("reset-view").addEventListener("click", resetView);
$("slice-slider").addEventListener("input", (e) => goToSlice(Number(e.target.value)));
$("slice-up").addEventListener("click", () => goToSlice(viewer.z + 1));
$("slice-down").addEventListener("click", () => goToSlice(viewer.z - 1));
window.addEventListener("resize", draw);

document.addEventListener("keydown", (event) => {
  if (!viewer.study || $("review-view").hidden || event.target.tagName === "INPUT"
      || document.querySelector("dialog[open]")) return;
  const key = event.key;
  if ((event.ctrlKey || event.metaKey) && key.toLowerCase() === "z") { event.preventDefault(); $("undo").click(); return; }
  if (key === "ArrowUp" || key === "PageUp") { event.preventDefault(); goToSlice(viewer.z + 1); }
  else if (key === "ArrowDown" || key === "PageDown") { event.preventDefault(); goToSlice(viewer.z - 1); }
  else if (key === "Escape") { viewer.selectedId = 0; hidePopup(); renderLesions(); draw(); }
  else if (key === "r" || key === "R") resetView();
  else if (key === "e" || key === "E") setTool("erase");
  else if (key === "b" || key === "B") setTool("paint");
  else if (key === "c" || key === "C") { viewer.win = { ...PRESETS.calcium }; draw(); }
  else if (key === "s" || key === "S") { viewer.win = { ...PRESETS.soft }; draw(); }
  else if (key === "n" || key === "N" || key === "p" || key === "P") stepLesion(key.toLowerCase() === "n" ? 1 : -1);
  else if (key === "+" || key === "=") zoomAt(1.25);
  else if (key === "-") zoomAt(0.8);
  else if (viewer.selectedId && KEY_ARTERIES[key]) applyEdit(viewer.selectedId, KEY_ARTERIES[key]);
  else if (viewer.selectedId && (key === "0" || key === "Delete" || key === "Backspace")) applyEdit(viewer.selectedId, null);
});

function stepLesion(direction) {
  // Next / previous counted lesion, in slice order (keys N and P).
  const counted = viewer.state.lesions.filter((row) => row.artery).sort((a, b) => a.key_slice - b.key_slice || a.id - b.id);
  if (!counted.length) return;
  const at = counted.findIndex((row) => row.id === viewer.selectedId);
  const next = at < 0 ? (direction > 0 ? 0 : counted.length - 1) : (at + direction + counted.length) % counted.length;
  selectLesion(counted[next].id, true);
}

// ------------------------------------------------------------------ routing

function route() {
  const match = location.hash.match(/^#\/study\/(\d+)$/);
  if (match) openStudy(Number(match[1])); else showList();
}
window.addEventListener("hashchange", route);
showReader();
route();
