// Click-to-segment page: talks to the JSON API of the same server, nothing else.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const els = {
    file: $("file-input"), stage: $("stage"), hint: $("drop-hint"), wrap: $("canvas-wrap"),
    image: $("image-canvas"), mask: $("mask-canvas"), prompt: $("prompt-canvas"),
    undo: $("undo"), clear: $("clear"), multimask: $("multimask"), candidates: $("candidates"),
    grid: $("grid"), everything: $("everything"), png: $("download-png"),
    coco: $("download-coco"), status: $("status"), pos: $("mode-positive"),
    neg: $("mode-negative"), info: $("model-info"), warning: $("weights-warning"),
  };
  const MASK_RGBA = [30, 144, 255, 120];
  const EDGE_RGBA = [255, 255, 255, 230];
  const DRAG_PX = 6;  // pointer travel (CSS px) that turns a click into a box drag

  const state = {
    name: "image", imageId: null, width: 0, height: 0,
    prompts: [],        // {type: "point", x, y, label} | {type: "box", x0, y0, x1, y1}
    result: null,       // last /predict response
    selected: 0,
    everything: null,   // last /everything response
    view: "none",       // "prompt" | "everything" | "none"
    seq: 0, busy: 0, negative: false, drag: null,
  };

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
      throw new Error(detail + " (" + response.status + ")");
    }
    return body;
  }

  function updateButtons() {
    const has = !!state.imageId;
    els.undo.disabled = !has || state.prompts.length === 0;
    els.clear.disabled = !has || (state.prompts.length === 0 && state.view === "none");
    els.everything.disabled = !has;
    els.png.disabled = !(state.view === "prompt" && state.result);
    els.coco.disabled = !((state.view === "prompt" && state.result) || state.everything);
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
    if (count) ctx.putImageData(img, 0, 0);
    els.mask.dataset.masks = String(count);
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
    updateButtons();
  }

  // ------------------------------------------------------------------ actions
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
    Object.assign(state, {
      name: file.name.replace(/\.[^.]+$/, "") || "image", imageId: info.image_id,
      width: info.width, height: info.height, prompts: [], result: null, selected: 0,
      everything: null, view: "none",
    });
    for (const c of [els.image, els.mask, els.prompt]) { c.width = info.width; c.height = info.height; }
    els.image.getContext("2d").drawImage(bitmap, 0, 0, info.width, info.height);
    els.wrap.hidden = false;
    els.hint.hidden = true;
    els.stage.classList.remove("empty");
    render();
    const how = info.cached ? "already encoded" : "encoded in " + Math.round(info.encode_ms) + " ms";
    setStatus(info.width + "×" + info.height + ", " + how + ". Click the object to segment it.");
  }

  async function predict() {
    const seq = ++state.seq;
    const points = state.prompts.filter((p) => p.type === "point");
    const boxes = state.prompts.filter((p) => p.type === "box");
    if (!points.length && !boxes.length) {
      state.result = null;
      state.view = "none";
      render();
      return;
    }
    const body = {
      points: points.length ? points.map((p) => [p.x, p.y]) : null,
      labels: points.length ? points.map((p) => p.label) : null,
      box: boxes.length ? (({ x0, y0, x1, y1 }) => [x0, y0, x1, y1])(boxes[boxes.length - 1]) : null,
      multimask: els.multimask.checked,
      formats: ["png", "rle"],
    };
    setStatus("Predicting…", "busy");
    try {
      const res = await api("/api/images/" + state.imageId + "/predict", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      if (seq !== state.seq) return;  // a newer action superseded this one
      state.result = res;
      state.selected = res.best;
      state.view = "prompt";
      render();
      const m = res.masks[res.best];
      setStatus("Mask " + (res.best + 1) + ": predicted IoU " + m.score.toFixed(3) + ", " +
        m.area + " pixels (" + Math.round(res.elapsed_ms) + " ms).");
    } catch (err) {
      if (seq === state.seq) setStatus("Prediction failed: " + err.message, "error");
    }
  }

  function addPrompt(p) {
    state.prompts.push(p);
    drawPrompts();
    updateButtons();
    predict();
  }

  async function segmentEverything() {
    if (!state.imageId) return;
    const seq = ++state.seq;
    const grid = Number(els.grid.value);
    els.everything.disabled = true;
    setStatus("Segmenting everything (" + grid + "×" + grid + " points)…", "busy");
    try {
      const res = await api("/api/images/" + state.imageId + "/everything", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ points_per_side: grid }),
      });
      if (seq !== state.seq) return;
      state.everything = res;
      state.prompts = [];
      state.result = null;
      state.view = "everything";
      render();
      setStatus(res.count + " masks (" + (res.elapsed_ms / 1000).toFixed(1) + " s).");
    } catch (err) {
      if (seq === state.seq) setStatus("Segment everything failed: " + err.message, "error");
    } finally {
      updateButtons();
    }
  }

  function download(name, href) {
    const a = document.createElement("a");
    a.href = href;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
  }

  function downloadPng() {
    const m = state.result && state.result.masks[state.selected];
    if (!m || !m.png) return;
    download(state.name + "-mask.png", "data:image/png;base64," + m.png);
  }

  function downloadCoco() {
    let anns;
    if (state.view === "prompt" && state.result) {
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
      categories: [{ id: 1, name: "object" }],
      annotations: anns.map((a, i) => ({ id: i + 1, image_id: 1, category_id: 1, iscrowd: 0, ...a })),
    };
    const blob = new Blob([JSON.stringify(coco)], { type: "application/json" });
    const url = URL.createObjectURL(blob);
    download(state.name + "-masks.json", url);
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  function undo() {
    if (!state.prompts.length) return;
    state.prompts.pop();
    drawPrompts();
    predict();
  }

  function clearAll() {
    state.seq++;
    state.prompts = [];
    state.result = null;
    state.view = "none";
    render();
    setStatus("Cleared. Click the object to segment it.");
  }

  function setNegative(on) {
    state.negative = on;
    els.pos.classList.toggle("on", !on);
    els.neg.classList.toggle("on", on);
  }

  // ------------------------------------------------------------------ events
  els.file.addEventListener("change", () => { openFile(els.file.files[0]); els.file.value = ""; });
  els.undo.addEventListener("click", undo);
  els.clear.addEventListener("click", clearAll);
  els.everything.addEventListener("click", segmentEverything);
  els.png.addEventListener("click", downloadPng);
  els.coco.addEventListener("click", downloadCoco);
  els.pos.addEventListener("click", () => setNegative(false));
  els.neg.addEventListener("click", () => setNegative(true));
  els.multimask.addEventListener("change", () => { if (state.prompts.length) predict(); });

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
    if (!d) return;
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
    if ((e.ctrlKey || e.metaKey) && e.key === "z") { e.preventDefault(); undo(); }
    else if (e.key === "Escape") clearAll();
  });
  window.addEventListener("resize", () => { if (state.imageId) drawPrompts(); });

  api("/health").then((h) => {
    els.info.textContent = h.model + " · " + h.device;
    els.warning.hidden = h.weights !== "random";
  }).catch((err) => setStatus("The server does not answer: " + err.message, "error"));
  updateButtons();
})();
