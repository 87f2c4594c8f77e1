// Click-to-segment and annotation page: talks to the JSON API of the same server, nothing else.
// Masks come from the decoder in the browser (decoder.js) when the server offers it, else from
// POST /api/images/{id}/predict. Segment everything runs as a server job (submitted, polled,
// cancellable). Objects (mask + label + prompts) live in the server's project
// (/api/project) when it has one, else in this page only.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const els = {
    file: $("file-input"), stage: $("stage"), hint: $("drop-hint"), wrap: $("canvas-wrap"),
    image: $("image-canvas"), mask: $("mask-canvas"), prompt: $("prompt-canvas"),
    undo: $("undo"), redo: $("redo"), clear: $("clear"), multimask: $("multimask"),
    candidates: $("candidates"),
    grid: $("grid"), everything: $("everything"), png: $("download-png"),
    coco: $("download-coco"), status: $("status"), pos: $("mode-positive"),
    neg: $("mode-negative"), info: $("model-info"), warning: $("weights-warning"),
    projectImage: $("project-image"), exportBox: $("project-export"), exportFormat: $("export-format"),
    exportScope: $("export-scope"), exportBtn: $("export"), label: $("label-input"),
    labelList: $("label-list"), save: $("save-object"), list: $("object-list"),
    decoderMode: $("decoder-mode"), job: $("job"), jobProgress: $("job-progress"),
    jobStage: $("job-stage"), jobCancel: $("job-cancel"),
  };
  const MASK_RGBA = [30, 144, 255, 120];
  const EDGE_RGBA = [255, 255, 255, 230];
  const DRAG_PX = 6;  // pointer travel (CSS px) that turns a click into a box drag
  const POLL_MS = 300;  // how often a running segment-everything job is asked for its progress

  const state = {
    name: "image", imageId: null, width: 0, height: 0,
    prompts: [],        // {type: "point", x, y, label} | {type: "box", x0, y0, x1, y1}
    result: null,       // last /predict response
    selected: 0,
    everything: null,   // last segment-everything result (what /everything answers)
    job: null,          // the segment-everything job running for this image, or null
    view: "none",       // "prompt" | "everything" | "none"
    seq: 0, busy: 0, negative: false, drag: null,
    key: null,          // the image's key in the object store (project file name or image id)
    objects: [],        // stored objects of this image
    editing: null,      // the object being edited (its prompts are the draft), or null
    hover: null,        // {rle} preview under the mouse (browser decoder only)
    hoverBusy: false, hoverNext: null,
    history: [],        // object operations to undo: {op: "add" | "delete" | "edit", ref, ...}
    future: [],         // what undo took back, for redo: those operations and {op: "prompt"}
    refs: new Map(),    // live object id -> the {id} its history entries share (see track)
    labels: [], project: false, browser: false,
  };
  window.__mobilesam = state;  // for tests and the console

  // ------------------------------------------------------------------ helpers
  function setStatus(text, kind) {
    els.status.textContent = text;
    els.status.className = kind || "";
  }

  async function api(path, options) {
    let response;
    try {
      response = await fetch(path, options);
    } catch (err) {
      throw new Error("the server cannot be reached (" + err.message + ")");
    }
    const text = await response.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
    if (!response.ok) {
      const detail = body && body.detail ? body.detail : text || response.statusText;
      const err = new Error(detail + " (" + response.status + ")");
      err.status = response.status;
      err.detail = detail;
      err.retryAfter = Number(response.headers.get("Retry-After")) || null;  // seconds, on a 503
      throw err;
    }
    return body;
  }

  function updateButtons() {
    const has = !!state.imageId;
    els.clear.disabled = !has || (state.prompts.length === 0 && state.view === "none");
    els.everything.disabled = !has || !!state.job;  // one job at a time: Cancel stops it
    els.png.disabled = !(state.view === "prompt" && state.result);
    els.coco.disabled = !((state.view === "prompt" && state.result) || state.everything ||
      state.objects.length);
    els.save.disabled = !(has && state.view === "prompt" && state.result);
    els.undo.disabled = !has || (state.prompts.length === 0 && state.history.length === 0);
    els.redo.disabled = !has || state.future.length === 0;
  }

  function toImage(event) {
    const r = els.prompt.getBoundingClientRect();
    const x = ((event.clientX - r.left) / r.width) * state.width;
    const y = ((event.clientY - r.top) / r.height) * state.height;
    return [Math.min(Math.max(x, 0), state.width), Math.min(Math.max(y, 0), state.height)];
  }

  function pixelScale() {  // image pixels per CSS pixel
    const r = els.prompt.getBoundingClientRect();
    return r.width > 0 ? state.width / r.width : 1;
  }

  // ------------------------------------------------------------------ drawing
  function drawPrompts(preview) {
    const ctx = els.prompt.getContext("2d");
    ctx.clearRect(0, 0, els.prompt.width, els.prompt.height);
    const s = pixelScale();
    const boxes = state.prompts.filter((p) => p.type === "box");
    const shown = preview ? [preview] : boxes.slice(-1);
    for (const b of shown) {
      ctx.lineWidth = 2.5 * s;
      ctx.setLineDash([8 * s, 5 * s]);
      ctx.strokeStyle = "#ffd400";
      ctx.strokeRect(b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0);
      ctx.setLineDash([]);
    }
    for (const p of state.prompts) {
      if (p.type !== "point") continue;
      ctx.beginPath();
      ctx.arc(p.x, p.y, 7 * s, 0, 2 * Math.PI);
      ctx.fillStyle = p.label === 1 ? "#19c37d" : "#ef4146";
      ctx.fill();
      ctx.lineWidth = 2 * s;
      ctx.strokeStyle = "#ffffff";
      ctx.stroke();
      ctx.fillStyle = "#ffffff";
      ctx.fillRect(p.x - 3.5 * s, p.y - 0.9 * s, 7 * s, 1.8 * s);
      if (p.label === 1) ctx.fillRect(p.x - 0.9 * s, p.y - 3.5 * s, 1.8 * s, 7 * s);
    }
  }

  function colourOf(i) {  // distinct hues, golden-angle steps
    const h = (i * 137.508) % 360, s = 0.75, l = 0.55;
    const f = (n) => {
      const k = (n + h / 30) % 12;
      return Math.round(255 * (l - s * Math.min(l, 1 - l) * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
    };
    return [f(0), f(8), f(4), 140];
  }

  function drawMasks() {
    const w = state.width, h = state.height;
    const ctx = els.mask.getContext("2d");
    ctx.clearRect(0, 0, w, h);
    let count = 0;
    const img = ctx.createImageData(w, h);
    let drawn = 0;
    for (const obj of state.objects) {
      if (state.editing && obj.id === state.editing.id) continue;
      RLE.paint(obj.mask, img.data, w, colourOf(obj.id));
      drawn++;
    }
    if (state.hover && state.view !== "everything" && !state.prompts.length) {
      RLE.paint(state.hover.rle, img.data, w, MASK_RGBA);
      drawn++;
    }
    if (state.view === "prompt" && state.result) {
      const m = state.result.masks[state.selected];
      if (m && m.rle) {
        RLE.paint(m.rle, img.data, w, MASK_RGBA);
        RLE.outline(m.rle, img.data, w, EDGE_RGBA);
        count = 1;
      }
    } else if (state.view === "everything" && state.everything) {
      state.everything.masks.forEach((m, i) => RLE.paint(m.segmentation, img.data, w, colourOf(i)));
      count = state.everything.masks.length;
    }
    if (count || drawn) ctx.putImageData(img, 0, 0);
    els.mask.dataset.masks = String(count);
    els.mask.dataset.objects = String(state.objects.length);
    els.mask.dataset.hover = state.hover ? "1" : "0";
    els.mask.dataset.view = state.view;
  }

  function drawCandidates() {
    els.candidates.textContent = "";
    if (state.view !== "prompt" || !state.result) return;
    state.result.masks.forEach((m, i) => {
      const b = document.createElement("button");
      b.className = "toggle candidate" + (i === state.selected ? " on" : "");
      b.textContent = "Mask " + (i + 1) + " · " + m.score.toFixed(2);
      b.title = "predicted IoU " + m.score.toFixed(3) + ", " + m.area + " pixels";
      b.addEventListener("click", () => { state.selected = i; drawCandidates(); drawMasks(); });
      els.candidates.appendChild(b);
    });
  }

  function render() {
    drawPrompts();
    drawMasks();
    drawCandidates();
    drawObjectList();
    updateButtons();
  }

  // ------------------------------------------------------------------ objects
  // One interface over the server's project and the page-only list.
  const serverStore = {
    list: (key) => api("/api/project/images/" + encodeURIComponent(key) + "/objects"),
    add: (key, body) => api("/api/project/images/" + encodeURIComponent(key) + "/objects", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    }),
    update: (obj, changes) => api("/api/project/objects/" + obj.id, {
      method: "PUT", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ version: obj.version, ...changes }),
    }),
    remove: (obj) => api("/api/project/objects/" + obj.id + "?version=" + obj.version,
      { method: "DELETE" }),
  };
  const pageObjects = new Map();  // image key -> objects
  let pageNextId = 1;
  const pageStore = {
    list: async (key) => (pageObjects.get(key) || []).slice(),
    add: async (key, body) => {
      const obj = { id: pageNextId++, image: key, version: 1, ...body, ...RLE.stats(body.mask) };
      pageObjects.set(key, [...(pageObjects.get(key) || []), obj]);
      return obj;
    },
    update: async (obj, changes) => {
      const list = pageObjects.get(obj.image) || [];
      const next = { ...obj, ...changes, version: obj.version + 1 };
      if (changes.mask) Object.assign(next, RLE.stats(changes.mask));
      pageObjects.set(obj.image, list.map((o) => (o.id === obj.id ? next : o)));
      return next;
    },
    remove: async (obj) => {
      pageObjects.set(obj.image, (pageObjects.get(obj.image) || []).filter((o) => o.id !== obj.id));
    },
  };
  const store = () => (state.project ? serverStore : pageStore);

  function currentLabel() {
    return els.label.value.trim() || state.labels[0] || "object";
  }

  function setLabels(labels) {
    state.labels = labels;
    els.labelList.textContent = "";
    for (const name of labels) {
      const o = document.createElement("option");
      o.value = name;
      els.labelList.appendChild(o);
    }
  }

  function drawObjectList() {
    els.list.textContent = "";
    state.objects.forEach((obj) => {
      const li = document.createElement("li");
      li.dataset.id = String(obj.id);
      if (state.editing && state.editing.id === obj.id) li.classList.add("selected");
      const [r, g, b] = colourOf(obj.id);
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = "rgb(" + r + "," + g + "," + b + ")";
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = obj.label;
      const meta = document.createElement("span");
      meta.className = "meta";
      meta.textContent = obj.area + " px";
      const del = document.createElement("button");
      del.textContent = "×";
      del.title = "delete this object (Del)";
      del.setAttribute("aria-label", "delete " + obj.label);
      del.addEventListener("click", (e) => { e.stopPropagation(); deleteObject(obj); });
      li.append(sw, name, meta, del);
      li.addEventListener("click", () => selectObject(obj));
      els.list.appendChild(li);
    });
    els.save.textContent = state.editing ? "Update object" : "Save object";
  }

  async function loadObjects() {
    state.objects = await store().list(state.key);
  }

  function selectObject(obj) {
    state.seq++;
    state.future = [];
    state.editing = obj;
    const pr = obj.prompts || {};
    state.prompts = [];
    (pr.points || []).forEach(([x, y], i) =>
      state.prompts.push({ type: "point", x, y, label: pr.labels ? pr.labels[i] : 1 }));
    if (pr.box) {
      const [x0, y0, x1, y1] = pr.box;
      state.prompts.push({ type: "box", x0, y0, x1, y1 });
    }
    const m = { score: obj.score || 0, area: obj.area, bbox: obj.bbox, rle: obj.mask };
    state.result = { masks: [m], best: 0 };
    state.selected = 0;
    state.view = "prompt";
    els.label.value = obj.label;
    render();
    setStatus("Editing object " + obj.id + " (" + obj.label + "): click to change its mask, " +
      "Enter to save, Esc to stop.");
  }

  function promptBody() {
    const points = state.prompts.filter((p) => p.type === "point");
    const boxes = state.prompts.filter((p) => p.type === "box");
    const b = boxes[boxes.length - 1];
    return {
      points: points.length ? points.map((p) => [p.x, p.y]) : null,
      labels: points.length ? points.map((p) => p.label) : null,
      box: b ? [b.x0, b.y0, b.x1, b.y1] : null,
    };
  }

  async function saveObject() {
    if (!state.key || state.view !== "prompt" || !state.result || state.saving) return;
    state.saving = true;
    const m = state.result.masks[state.selected];
    const body = { label: currentLabel(), mask: m.rle, prompts: promptBody(), score: m.score };
    try {
      let obj;
      if (state.editing) {
        const before = state.editing;
        obj = await store().update(before, body);
        record({ op: "edit", ref: track(obj), before: fieldsOf(before), after: fieldsOf(obj) });
      } else {
        obj = await store().add(state.key, body);
        record({ op: "add", ref: track(obj), fields: fieldsOf(obj) });
      }
      if (!state.labels.includes(obj.label)) setLabels([...state.labels, obj.label]);
      await loadObjects();
      newObject();
      setStatus("Saved object " + obj.id + " (" + obj.label + ", " + obj.area + " pixels).");
      refreshProjectImages();
    } catch (err) {
      setStatus("Saving failed: " + err.message, "error");
      if (/\(409\)/.test(err.message)) { await loadObjects(); render(); }
    } finally {
      state.saving = false;
    }
  }

  async function deleteObject(obj) {
    try {
      await store().remove(obj);
      record({ op: "delete", ref: track(obj), fields: fieldsOf(obj) });
      state.refs.delete(obj.id);  // the store may give the id to the next new object
      if (state.editing && state.editing.id === obj.id) newObject();
      await loadObjects();
      render();
      setStatus("Deleted object " + obj.id + " (" + obj.label + "). Ctrl+Z brings it back.");
      refreshProjectImages();
    } catch (err) {
      setStatus("Deleting failed: " + err.message, "error");
    }
  }

  // ------------------------------------------------------------------ undo / redo
  // History entries name their object through a shared {id}: undoing a delete (or redoing an
  // add) stores the object again under a new id, and every entry about it follows. state.refs
  // holds these handles for live objects only, because a store may reuse a deleted id.
  function track(obj) {
    let ref = state.refs.get(obj.id);
    if (!ref) {
      ref = { id: obj.id };
      state.refs.set(obj.id, ref);
    }
    return ref;
  }

  function fieldsOf(obj) {
    return { label: obj.label, mask: obj.mask, prompts: obj.prompts, score: obj.score };
  }

  function record(entry) {  // a new object operation: what was undone cannot be redone any more
    state.history.push(entry);
    state.future = [];
  }

  // Apply an object operation to the store: forward (do again) or backward (undo it).
  async function replay(h, forward) {
    const adds = h.op === "add" ? forward : h.op === "delete" ? !forward : null;
    if (adds) {
      const obj = await store().add(state.key, h.fields);
      h.ref.id = obj.id;
      state.refs.set(obj.id, h.ref);
      return;
    }
    const live = state.objects.find((o) => o.id === h.ref.id);
    if (!live) throw new Error("object " + h.ref.id + " no longer exists");
    if (adds === false) {
      await store().remove(live);
      state.refs.delete(live.id);
    } else {
      await store().update(live, forward ? h.after : h.before);
    }
  }

  // Move the last object operation from one stack to the other, applying it on the way.
  async function stepObjects(from, to, forward) {
    if (state.replaying || !from.length) return;
    state.replaying = true;
    const h = from.pop();
    try {
      await replay(h, forward);
      to.push(h);
      newObject();
      await loadObjects();
      render();
      setStatus((forward ? "Redid the " : "Undid the last ") + h.op + ".");
      refreshProjectImages();
    } catch (err) {  // the entry is dropped: it no longer matches the store
      setStatus((forward ? "Redo" : "Undo") + " failed: " + err.message, "error");
      await loadObjects().catch(() => {});
      render();
    } finally {
      state.replaying = false;
    }
  }

  function undo() {  // the last point or box of the draft, else the last object operation
    if (!state.prompts.length) { stepObjects(state.history, state.future, false); return; }
    state.future.push({ op: "prompt", prompt: state.prompts.pop() });
    drawPrompts();
    updateButtons();  // Redo is there at once, before the new masks arrive
    predict();
  }

  function redo() {  // what the last undo took back
    const h = state.future[state.future.length - 1];
    if (!h || state.replaying) return;
    if (h.op !== "prompt") { stepObjects(state.future, state.history, true); return; }
    state.future.pop();
    showPrompt(h.prompt);
  }

  function newObject() {  // forget the draft and the selection
    state.seq++;
    state.editing = null;
    state.prompts = [];
    state.result = null;
    if (state.view === "prompt") state.view = "none";
    render();
  }

  // ------------------------------------------------------------------ actions
  async function showImage(info, bitmap, name, key) {
    dropJob();
    Object.assign(state, {
      name, imageId: info.image_id, key, width: info.width, height: info.height, prompts: [],
      result: null, selected: 0, everything: null, view: "none", editing: null, hover: null,
      history: [], future: [], refs: new Map(), objects: [],
    });
    for (const c of [els.image, els.mask, els.prompt]) { c.width = info.width; c.height = info.height; }
    els.image.getContext("2d").drawImage(bitmap, 0, 0, info.width, info.height);
    els.wrap.hidden = false;
    els.hint.hidden = true;
    els.stage.classList.remove("empty");
    await loadObjects();
    render();
    if (state.browser) {
      try { await BrowserDecoder.setImage(info.image_id); } catch (err) {
        setStatus("The embedding did not load (" + err.message + "); the server decodes.", "error");
      }
    }
  }

  async function openFile(file) {
    if (!file) return;
    if (file.type && !file.type.startsWith("image/")) {
      setStatus("“" + file.name + "” is not an image.", "error");
      return;
    }
    setStatus("Uploading and encoding “" + file.name + "”…", "busy");
    let bitmap;
    try {
      bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
    } catch (err) {
      setStatus("The browser cannot decode “" + file.name + "”.", "error");
      return;
    }
    const form = new FormData();
    form.append("file", file, file.name);
    let info;
    try {
      info = await api("/api/images", { method: "POST", body: form });
    } catch (err) {
      setStatus("Upload failed: " + err.message, "error");
      return;
    }
    const wasProject = state.project;
    state.project = false;  // an uploaded file is not part of the project: objects stay here
    els.projectImage.value = "";
    await showImage(info, bitmap, file.name.replace(/\.[^.]+$/, "") || "image", info.image_id);
    if (wasProject) els.exportBox.hidden = true;
    const how = info.cached ? "already encoded" : "encoded in " + Math.round(info.encode_ms) + " ms";
    setStatus(info.width + "×" + info.height + ", " + how + ". Click the object to segment it.");
  }

  async function openProjectImage(name) {
    if (!name) return;
    state.project = true;
    els.exportBox.hidden = false;
    setStatus("Opening “" + name + "”…", "busy");
    try {
      const path = "/api/project/images/" + encodeURIComponent(name);
      const [info, blob] = await Promise.all([
        api(path + "/open", { method: "POST" }),
        fetch(path + "/file").then((r) => r.blob()),
      ]);
      const bitmap = await createImageBitmap(blob, { imageOrientation: "from-image" });
      await showImage(info, bitmap, name.replace(/\.[^.]+$/, ""), name);
      setStatus(info.width + "×" + info.height + ", " + state.objects.length +
        " objects. Click the object to segment it.");
    } catch (err) {
      setStatus("Opening failed: " + err.message, "error");
    }
  }

  async function refreshProjectImages() {
    if (!state.project) return;
    const info = await api("/api/project");
    const chosen = els.projectImage.value;
    els.projectImage.textContent = "";
    for (const im of info.images) {
      const o = document.createElement("option");
      o.value = im.file_name;
      o.textContent = im.file_name + " (" + im.objects + ")";
      els.projectImage.appendChild(o);
    }
    els.projectImage.value = chosen;
    setLabels(info.labels);
    return info;
  }

  // Masks for the draft prompts: in the browser when it can, else from the server.
  async function decodeMasks(body, multimask) {
    if (state.browser && BrowserDecoder.ready()) {
      const t0 = performance.now();
      try {
        await BrowserDecoder.setImage(state.imageId);
        const out = await BrowserDecoder.decode(state.imageId, body, multimask);
        const masks = out.masks.map((m) => {
          const rle = RLE.encode(m.mask, state.width, state.height);
          return { score: m.score, rle, ...RLE.stats(rle) };
        });
        return { masks, best: out.best, elapsed_ms: performance.now() - t0, source: "browser" };
      } catch (err) {
        console.warn("browser decoder failed, asking the server", err);
      }
    }
    const res = await api("/api/images/" + state.imageId + "/predict", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...body, multimask, formats: ["rle"] }),
    });
    res.source = "server";
    return res;
  }

  async function predict() {
    const seq = ++state.seq;
    const body = promptBody();
    if (!body.points && !body.box) {
      state.result = null;
      state.view = "none";
      render();
      return;
    }
    setStatus("Predicting…", "busy");
    try {
      const res = await decodeMasks(body, els.multimask.checked);
      if (seq !== state.seq) return;  // a newer action superseded this one
      state.result = res;
      state.selected = res.best;
      state.view = "prompt";
      state.hover = null;
      render();
      const m = res.masks[res.best];
      setStatus("Mask " + (res.best + 1) + ": predicted IoU " + m.score.toFixed(3) + ", " +
        m.area + " pixels (" + Math.round(res.elapsed_ms) + " ms, " + res.source + "). " +
        "Enter saves it as an object.");
    } catch (err) {
      if (seq === state.seq) setStatus("Prediction failed: " + err.message, "error");
    }
  }

  // The mask under the mouse before the first click (browser decoder only: no request).
  async function hoverPreview(x, y) {
    if (!state.browser || !BrowserDecoder.ready() || state.prompts.length || state.view === "everything") return;
    if (state.hoverBusy) { state.hoverNext = [x, y]; return; }
    state.hoverBusy = true;
    try {
      const label = state.negative ? 0 : 1;
      await BrowserDecoder.setImage(state.imageId);
      const out = await BrowserDecoder.decode(state.imageId, { points: [[x, y]], labels: [label], box: null }, false);
      if (!state.prompts.length && state.view !== "everything") {
        state.hover = { rle: RLE.encode(out.masks[0].mask, state.width, state.height) };
        drawMasks();
      }
    } catch (err) {
      state.hover = null;
    } finally {
      state.hoverBusy = false;
      const next = state.hoverNext;
      state.hoverNext = null;
      if (next) hoverPreview(next[0], next[1]);
    }
  }

  function addPrompt(p) {  // a new point or box: what was undone cannot be redone any more
    state.future = [];
    showPrompt(p);
  }

  function showPrompt(p) {
    state.prompts.push(p);
    state.hover = null;
    drawPrompts();
    updateButtons();
    predict();
  }

  // ------------------------------------------------------------------ segment everything
  // A job on the server: POST .../everything/jobs, then GET /api/jobs/{id} every POLL_MS until
  // it ends. One job at a time (the button is disabled while it runs); Cancel sends DELETE and
  // the polls see it end. The job belongs to the image: opening another one cancels it.
  async function segmentEverything() {
    if (!state.imageId || state.job) return;
    const grid = Number(els.grid.value);
    const job = { id: null, imageId: state.imageId, seq: ++state.seq, timer: 0, cancelling: false };
    state.job = job;
    showJob({ status: "queued", progress: { fraction: 0, stage: "submitting" } });
    updateButtons();
    setStatus("Segmenting everything (" + grid + "×" + grid + " points)…", "busy");
    let body;
    try {
      body = await api("/api/images/" + job.imageId + "/everything/jobs", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ points_per_side: grid }),
      });
    } catch (err) {
      if (state.job !== job) return;
      endJob(job);
      setStatus(submitFailure(err), "error");
      return;
    }
    job.id = body.job_id;
    if (state.job !== job) { deleteJob(job); return; }  // the image changed meanwhile
    if (job.cancelling) deleteJob(job);  // Cancel was pressed before the id was known
    jobUpdate(job, body);
  }

  function submitFailure(err) {
    if (err.status === 503 && err.retryAfter) {
      const at = new Date(Date.now() + err.retryAfter * 1000).toLocaleTimeString();
      return "The server is busy (" + err.detail + "). Try again in " + err.retryAfter +
        " s (at " + at + ").";
    }
    return "Segment everything failed: " + err.message;
  }

  function jobUpdate(job, body) {
    if (state.job !== job) return;  // cancelled by an image change, or replaced
    if (body.status === "done") {
      endJob(job);
      showEverything(body.result, job);
    } else if (body.status === "failed") {
      endJob(job);
      setStatus("Segment everything failed: " + (body.error || "unknown error"), "error");
    } else if (body.status === "cancelled") {
      endJob(job);
      setStatus("Segment everything was cancelled.");
    } else {
      showJob(body);
      job.timer = setTimeout(() => pollJob(job), POLL_MS);
    }
  }

  async function pollJob(job) {
    let body;
    try {
      body = await api("/api/jobs/" + job.id);
    } catch (err) {
      if (state.job !== job) return;
      endJob(job);
      setStatus("Segment everything: the job was lost (" + err.message + ").", "error");
      return;
    }
    jobUpdate(job, body);
  }

  function showJob(body) {  // the progress bar; null hides it
    els.job.hidden = !body;
    if (!body) return;
    els.job.dataset.status = body.status;
    const queued = body.status === "queued";
    if (queued) els.jobProgress.removeAttribute("value");  // indeterminate until it starts
    else els.jobProgress.value = body.progress.fraction;
    const pct = queued ? "" : " · " + Math.round(100 * body.progress.fraction) + "%";
    els.jobStage.textContent = state.job.cancelling ? "cancelling" : body.progress.stage + pct;
    els.jobCancel.disabled = state.job.cancelling;
  }

  function endJob(job) {  // stop polling and hide the bar (the job itself is left as it is)
    clearTimeout(job.timer);
    if (state.job !== job) return;
    state.job = null;
    showJob(null);
    updateButtons();
  }

  function deleteJob(job) {
    if (job.id) api("/api/jobs/" + job.id, { method: "DELETE" }).catch(() => {});
  }

  function cancelJob() {
    const job = state.job;
    if (!job || job.cancelling) return;
    job.cancelling = true;
    els.jobCancel.disabled = true;
    els.jobStage.textContent = "cancelling";
    setStatus("Cancelling segment everything…", "busy");
    deleteJob(job);
  }

  function dropJob() {  // another image: its job is of no use any more
    const job = state.job;
    if (!job) return;
    endJob(job);
    deleteJob(job);
  }

  function showEverything(res, job) {
    if (state.seq !== job.seq && (state.prompts.length || state.editing)) {
      // Drawn while the job ran: keep that draft. The server keeps the result, so pressing
      // the button again answers at once (and replaces the draft, as it always does).
      setStatus(res.count + " masks are ready: press “Segment everything” to show them.");
      return;
    }
    state.everything = res;
    state.prompts = [];
    state.result = null;
    state.editing = null;
    state.view = "everything";
    state.future = [];
    render();
    setStatus(res.count + " masks (" + (res.elapsed_ms / 1000).toFixed(1) + " s).");
  }

  function download(name, href) {
    const a = document.createElement("a");
    a.href = href;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
  }

  function downloadPng() {  // white = mask, painted from its RLE (server or browser mask)
    const m = state.result && state.result.masks[state.selected];
    if (!m) return;
    const c = document.createElement("canvas");
    c.width = state.width;
    c.height = state.height;
    const ctx = c.getContext("2d");
    const img = ctx.createImageData(state.width, state.height);
    for (let i = 3; i < img.data.length; i += 4) img.data[i] = 255;
    RLE.paint(m.rle, img.data, state.width, [255, 255, 255, 255]);
    ctx.putImageData(img, 0, 0);
    download(state.name + "-mask.png", c.toDataURL("image/png"));
  }

  function downloadCoco() {
    let anns;
    let categories = [{ id: 1, name: "object" }];
    if (state.objects.length && state.view !== "everything") {
      const names = [...new Set(state.objects.map((o) => o.label))];
      categories = names.map((name, i) => ({ id: i + 1, name }));
      anns = state.objects.map((o) => ({
        segmentation: o.mask, area: o.area, bbox: o.bbox, score: o.score,
        category_id: names.indexOf(o.label) + 1,
      }));
    } else if (state.view === "prompt" && state.result) {
      const m = state.result.masks[state.selected];
      anns = [{ segmentation: m.rle, area: m.area, bbox: m.bbox, score: m.score }];
    } else if (state.everything) {
      anns = state.everything.masks.map((m) => ({
        segmentation: m.segmentation, area: m.area, bbox: m.bbox, score: m.predicted_iou,
        predicted_iou: m.predicted_iou, stability_score: m.stability_score,
        point_coords: m.point_coords, crop_box: m.crop_box,
      }));
    } else {
      return;
    }
    const coco = {
      info: { description: "masks from mobilesam", date_created: new Date().toISOString() },
      images: [{ id: 1, file_name: state.name, width: state.width, height: state.height }],
      categories,
      annotations: anns.map((a, i) => ({ id: i + 1, image_id: 1, category_id: 1, iscrowd: 0, ...a })),
    };
    const blob = new Blob([JSON.stringify(coco)], { type: "application/json" });
    const url = URL.createObjectURL(blob);
    download(state.name + "-masks.json", url);
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  function clearAll() {
    state.future = [];
    newObject();
    state.view = "none";
    render();
    setStatus("Cleared. Click the object to segment it.");
  }

  function exportProject() {
    const fmt = els.exportFormat.value;
    let url = "/api/project/export?format=" + encodeURIComponent(fmt);
    if (els.exportScope.value === "image" && state.key) url += "&image=" + encodeURIComponent(state.key);
    download("", url);
  }

  function setNegative(on) {
    state.negative = on;
    els.pos.classList.toggle("on", !on);
    els.neg.classList.toggle("on", on);
  }

  // ------------------------------------------------------------------ events
  els.file.addEventListener("change", () => { openFile(els.file.files[0]); els.file.value = ""; });
  els.undo.addEventListener("click", undo);
  els.redo.addEventListener("click", redo);
  els.clear.addEventListener("click", clearAll);
  els.everything.addEventListener("click", segmentEverything);
  els.jobCancel.addEventListener("click", cancelJob);
  els.png.addEventListener("click", downloadPng);
  els.coco.addEventListener("click", downloadCoco);
  els.pos.addEventListener("click", () => setNegative(false));
  els.neg.addEventListener("click", () => setNegative(true));
  els.multimask.addEventListener("change", () => { if (state.prompts.length) predict(); });
  els.save.addEventListener("click", saveObject);
  els.exportBtn.addEventListener("click", exportProject);
  els.projectImage.addEventListener("change", () => openProjectImage(els.projectImage.value));
  els.label.addEventListener("keydown", (e) => {
    if (e.key !== "Enter") return;
    e.preventDefault();
    e.stopPropagation();  // the page's own Enter shortcut would save it a second time
    els.label.blur();
    saveObject();
  });

  els.prompt.addEventListener("contextmenu", (e) => e.preventDefault());
  els.prompt.addEventListener("pointerdown", (e) => {
    if (!state.imageId || (e.button !== 0 && e.button !== 2)) return;
    e.preventDefault();
    els.prompt.setPointerCapture(e.pointerId);
    const [x, y] = toImage(e);
    state.drag = { x, y, cx: e.clientX, cy: e.clientY, button: e.button, shift: e.shiftKey, box: null };
  });
  els.prompt.addEventListener("pointermove", (e) => {
    const d = state.drag;
    if (!d) {
      if (state.imageId && e.pointerType === "mouse") hoverPreview(...toImage(e));
      return;
    }
    if (!d.box && Math.hypot(e.clientX - d.cx, e.clientY - d.cy) < DRAG_PX) return;
    const [x, y] = toImage(e);
    d.box = {
      type: "box", x0: Math.min(d.x, x), y0: Math.min(d.y, y),
      x1: Math.max(d.x, x), y1: Math.max(d.y, y),
    };
    drawPrompts(d.box);
  });
  const endDrag = (e) => {
    const d = state.drag;
    state.drag = null;
    if (!d || e.type === "pointercancel") { drawPrompts(); return; }
    if (d.box) {
      addPrompt(d.box);
    } else {
      const negative = d.button === 2 || d.shift || state.negative;
      addPrompt({ type: "point", x: d.x, y: d.y, label: negative ? 0 : 1 });
    }
  };
  els.prompt.addEventListener("pointerleave", () => {
    if (state.hover) { state.hover = null; drawMasks(); }
  });
  els.prompt.addEventListener("pointerup", endDrag);
  els.prompt.addEventListener("pointercancel", endDrag);

  els.stage.addEventListener("dragover", (e) => { e.preventDefault(); els.stage.classList.add("over"); });
  els.stage.addEventListener("dragleave", () => els.stage.classList.remove("over"));
  els.stage.addEventListener("drop", (e) => {
    e.preventDefault();
    els.stage.classList.remove("over");
    if (e.dataTransfer.files.length) openFile(e.dataTransfer.files[0]);
  });
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey) {
      const key = e.key.toLowerCase();  // Shift makes it "Z"
      if (key === "z" && !e.shiftKey) { e.preventDefault(); undo(); return; }
      if (key === "z" || key === "y") { e.preventDefault(); redo(); return; }
    }
    const typing = /^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement.tagName);
    if (e.key === "Escape") { if (typing) document.activeElement.blur(); clearAll(); return; }
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "Enter") { e.preventDefault(); saveObject(); }
    else if ((e.key === "Delete" || e.key === "Backspace") && state.editing) deleteObject(state.editing);
    else if (/^[1-9]$/.test(e.key) && state.labels[Number(e.key) - 1]) {
      els.label.value = state.labels[Number(e.key) - 1];
      setStatus("Label: " + els.label.value);
    }
  });
  window.addEventListener("resize", () => { if (state.imageId) drawPrompts(); });

  function setDecoderMode(mode, why) {
    els.decoderMode.dataset.mode = mode;
    els.decoderMode.textContent = mode === "browser" ? "decoder: in the browser"
      : mode === "server" ? "decoder: on the server" : "decoder: loading…";
    els.decoderMode.title = why || "";
  }

  async function start() {
    let health, web;
    try {
      [health, web] = await Promise.all([api("/health"), api("/api/web")]);
    } catch (err) {
      setStatus("The server does not answer: " + err.message, "error");
      setDecoderMode("server", err.message);
      return;
    }
    els.info.textContent = health.model + " · " + health.device;
    els.warning.hidden = health.weights !== "random";
    if (web.project) {
      state.project = true;
      els.projectImage.hidden = false;
      els.exportBox.hidden = false;
      const info = await refreshProjectImages();
      if (info.images.length && !state.imageId) {
        els.projectImage.value = info.images[0].file_name;
        openProjectImage(info.images[0].file_name);
      }
    }
    const why = await BrowserDecoder.init(web, health);
    state.browser = why === null;
    setDecoderMode(state.browser ? "browser" : "server", why || web.runtime_hint);
    if (state.browser && state.imageId) {
      BrowserDecoder.setImage(state.imageId).catch(() => {});
    }
  }

  start();
  updateButtons();
})();
