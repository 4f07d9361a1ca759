// pconv web page: open a photo, paint the holes, send image + mask to POST api/v1/inpaint.
// No build step, no dependencies. The mask is kept as a list of strokes in image pixels (cheap
// undo/redo) and drawn on a canvas at the image's natural size; it is sent as a PNG, white = hole.
"use strict";

(() => {
  const API = "api/v1";
  const MASK_COLOR = "rgb(255, 48, 96)";
  const METHOD_LABELS = {
    pconv: "Photographic (PConv + texture)",
    "pconv-smooth": "PConv smooth",
    telea: "Telea",
    ns: "Navier-Stokes",
    biharmonic: "Biharmonic",
    patchmatch: "PatchMatch",
  };

  const $ = (id) => document.getElementById(id);
  const el = {
    file: $("file"), drop: $("drop"), stage: $("stage"), workspace: $("workspace"),
    image: $("image-canvas"), mask: $("mask-canvas"), result: $("result-img"),
    divider: $("divider"), cursor: $("cursor"), busy: $("busy"), busyText: $("busy-text"),
    brush: $("tool-brush"), eraser: $("tool-eraser"), size: $("size"), sizeOut: $("size-out"),
    undo: $("undo"), redo: $("redo"), clear: $("clear"), method: $("method"),
    strategy: $("strategy"), format: $("output-format"), run: $("run"),
    error: $("error"), errorText: $("error-text"), errorClose: $("error-close"), status: $("status"),
    resultBar: $("result-bar"), compare: $("compare"), toggle: $("toggle"), edit: $("edit"),
    useResult: $("use-result"), downloadResult: $("download-result"), downloadMask: $("download-mask"),
  };

  const state = {
    file: null,          // the File sent to the server (original bytes and format)
    baseName: "image",
    width: 0, height: 0, // natural size of the photo
    tool: "brush",
    actions: [],         // strokes {erase, size, points: [[x, y], ...]} and {clear: true}
    redo: [],
    drawing: null,       // the stroke being painted
    mode: "empty",       // empty | edit | result
    busy: false,
    resultBlob: null, resultUrl: null, maskUrl: null,
    info: null,
  };

  const ictx = el.image.getContext("2d");
  const mctx = el.mask.getContext("2d");

  // ---------------------------------------------------------------- messages

  function showError(message) {
    el.errorText.textContent = message;
    el.error.hidden = false;
  }
  function hideError() { el.error.hidden = true; }
  function setStatus(text) { el.status.textContent = text; }

  // ------------------------------------------------------------------ server

  async function loadInfo() {
    try {
      const r = await fetch(`${API}/info`);
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      const info = await r.json();
      state.info = info;
      el.method.innerHTML = "";
      for (const m of info.methods) {
        const o = document.createElement("option");
        o.value = m;
        o.textContent = METHOD_LABELS[m] || m;
        if (m === info.default_method) o.selected = true;
        el.method.append(o);
      }
      const mp = (info.limits.max_pixels / 1e6).toFixed(1);
      setStatus(`Ready · pconv ${info.version} · up to ${mp} MP`);
    } catch (e) {
      setStatus("Server not reachable");
      showError(`Cannot read the server's info (${e.message}). Is pconv serve running?`);
    }
  }

  async function errorMessage(response) {
    let detail = "";
    try {
      const body = await response.json();
      detail = body.detail || body.error || "";
    } catch (_) { /* not JSON */ }
    const prefix = {
      400: "The image or mask was refused",
      413: "Too large",
      415: "Bad request",
      422: "Bad options",
      503: "The server is busy",
      504: "Timed out",
    }[response.status] || `Server error ${response.status}`;
    let msg = detail ? `${prefix}: ${detail}` : prefix;
    const retry = response.headers.get("Retry-After");
    if (response.status === 503 && retry && !/try again/.test(msg)) msg += ` (try again in ${retry} s)`;
    return msg;
  }

  // ------------------------------------------------------------------ photo

  function stem(name) {
    const base = (name || "image").split(/[\\/]/).pop();
    return base.replace(/\.[^.]+$/, "") || "image";
  }

  async function openFile(file) {
    if (!file) return;
    hideError();
    if (file.type && !file.type.startsWith("image/")) {
      showError(`${file.name} is not an image. Open a PNG, JPEG or WebP photo.`);
      return;
    }
    const limit = state.info && state.info.limits.max_upload_bytes;
    if (limit && file.size > limit) {
      showError(`${file.name} is ${(file.size / 1e6).toFixed(1)} MB; the server accepts up to ${(limit / 1e6).toFixed(1)} MB.`);
      return;
    }
    let bitmap;
    try {
      bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
    } catch (_) {
      showError(`${file.name || "This file"} could not be decoded as an image.`);
      return;
    }
    state.file = file;
    state.baseName = stem(file.name);
    state.width = bitmap.width;
    state.height = bitmap.height;
    for (const c of [el.image, el.mask]) { c.width = bitmap.width; c.height = bitmap.height; }
    ictx.drawImage(bitmap, 0, 0);
    if (bitmap.close) bitmap.close();
    state.actions = [];
    state.redo = [];
    clearResult();
    redrawMask();
    el.drop.hidden = true;
    el.stage.hidden = false;
    document.body.classList.add("has-image");
    setMode("edit");
    layout();
    setStatus(`${file.name || "image"} · ${state.width}×${state.height}`);
  }

  // ------------------------------------------------------------------- mask

  function drawStroke(ctx, s) {
    ctx.save();
    ctx.globalCompositeOperation = s.erase ? "destination-out" : "source-over";
    ctx.strokeStyle = ctx.fillStyle = MASK_COLOR;
    ctx.lineWidth = s.size;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    const p = s.points;
    if (p.length === 1) {
      ctx.beginPath();
      ctx.arc(p[0][0], p[0][1], s.size / 2, 0, Math.PI * 2);
      ctx.fill();
    } else {
      ctx.beginPath();
      ctx.moveTo(p[0][0], p[0][1]);
      for (let i = 1; i < p.length; i++) ctx.lineTo(p[i][0], p[i][1]);
      ctx.stroke();
    }
    ctx.restore();
  }

  function redrawMask() {
    mctx.clearRect(0, 0, el.mask.width, el.mask.height);
    for (const a of state.actions) {
      if (a.clear) mctx.clearRect(0, 0, el.mask.width, el.mask.height);
      else drawStroke(mctx, a);
    }
    updateButtons();
  }

  function pushAction(a) {
    state.actions.push(a);
    state.redo = [];
    updateButtons();
  }

  function undo() {
    if (!state.actions.length || state.mode !== "edit") return;
    state.redo.push(state.actions.pop());
    redrawMask();
  }
  function redo() {
    if (!state.redo.length || state.mode !== "edit") return;
    state.actions.push(state.redo.pop());
    redrawMask();
  }
  function clearMask() {
    if (!hasStrokes() || state.mode !== "edit") return;
    pushAction({ clear: true });
    redrawMask();
  }
  function hasStrokes() {
    // Something painted since the last clear (an eraser-only history leaves nothing to fill).
    for (let i = state.actions.length - 1; i >= 0; i--) {
      if (state.actions[i].clear) return false;
      if (!state.actions[i].erase) return true;
    }
    return false;
  }

  /** The mask as a binary PNG blob at the image's natural size: white = hole, black = keep. */
  function maskBlob() {
    const w = el.mask.width, h = el.mask.height;
    const src = mctx.getImageData(0, 0, w, h).data;
    const out = new ImageData(w, h);
    const d = out.data;
    let holes = 0;
    for (let i = 0; i < src.length; i += 4) {
      const v = src[i + 3] > 0 ? 255 : 0; // any paint, even an anti-aliased edge, is hole
      holes += v ? 1 : 0;
      d[i] = d[i + 1] = d[i + 2] = v;
      d[i + 3] = 255;
    }
    const c = document.createElement("canvas");
    c.width = w; c.height = h;
    c.getContext("2d").putImageData(out, 0, 0);
    return new Promise((resolve) => c.toBlob((b) => resolve({ blob: b, holes }), "image/png"));
  }

  // ----------------------------------------------------------- pointer input

  function toImage(e) {
    const r = el.mask.getBoundingClientRect();
    return [(e.clientX - r.left) * (el.mask.width / r.width), (e.clientY - r.top) * (el.mask.height / r.height)];
  }
  function scale() {
    const r = el.mask.getBoundingClientRect();
    return r.width ? el.mask.width / r.width : 1;
  }

  function moveCursor(e) {
    if (state.mode !== "edit" || e.pointerType === "touch") { el.cursor.hidden = true; return; }
    const r = el.stage.getBoundingClientRect();
    const s = Number(el.size.value);
    el.cursor.hidden = false;
    el.cursor.style.width = el.cursor.style.height = `${s}px`;
    el.cursor.style.transform = `translate(${e.clientX - r.left - s / 2}px, ${e.clientY - r.top - s / 2}px)`;
    el.cursor.classList.toggle("erase", state.tool === "eraser");
  }

  el.mask.addEventListener("pointerdown", (e) => {
    if (state.mode !== "edit" || state.busy || e.button > 0) return;
    e.preventDefault();
    el.mask.setPointerCapture(e.pointerId);
    const stroke = {
      erase: state.tool === "eraser",
      size: Math.max(1, Number(el.size.value) * scale()),
      points: [toImage(e)],
    };
    state.drawing = stroke;
    drawStroke(mctx, stroke);
  });
  el.mask.addEventListener("pointermove", (e) => {
    moveCursor(e);
    const s = state.drawing;
    if (!s) return;
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
    for (const ev of events.length ? events : [e]) {
      const p = toImage(ev);
      const last = s.points[s.points.length - 1];
      s.points.push(p);
      drawStroke(mctx, { erase: s.erase, size: s.size, points: [last, p] });
    }
  });
  const endStroke = () => {
    if (!state.drawing) return;
    pushAction(state.drawing);
    state.drawing = null;
    redrawMask(); // one clean pass, no overlapping segment caps
  };
  el.mask.addEventListener("pointerup", endStroke);
  el.mask.addEventListener("pointercancel", endStroke);
  el.mask.addEventListener("pointerleave", () => { el.cursor.hidden = true; });

  // Result mode: drag anywhere on the photo to move the before/after divider.
  let comparing = false;
  el.stage.addEventListener("pointerdown", (e) => {
    if (state.mode !== "result") return;
    comparing = true;
    el.stage.setPointerCapture(e.pointerId);
    compareAt(e);
  });
  el.stage.addEventListener("pointermove", (e) => { if (comparing) compareAt(e); });
  el.stage.addEventListener("pointerup", () => { comparing = false; });
  function compareAt(e) {
    const r = el.stage.getBoundingClientRect();
    el.compare.value = Math.round(Math.min(1, Math.max(0, (e.clientX - r.left) / r.width)) * 100);
    applyCompare();
  }

  // --------------------------------------------------------------- tools, UI

  function setTool(tool) {
    state.tool = tool;
    el.brush.setAttribute("aria-pressed", String(tool === "brush"));
    el.eraser.setAttribute("aria-pressed", String(tool === "eraser"));
  }
  function setSize(v) {
    const s = Math.round(Math.min(Number(el.size.max), Math.max(Number(el.size.min), v)));
    el.size.value = s;
    el.sizeOut.textContent = s;
  }

  function setMode(mode) {
    state.mode = mode;
    const result = mode === "result";
    el.result.hidden = !result;
    el.divider.hidden = !result;
    el.mask.hidden = result;
    el.resultBar.hidden = !result;
    el.stage.classList.toggle("comparing", result);
    if (result) applyCompare();
    updateButtons();
    layout();
  }

  function updateButtons() {
    const edit = state.mode === "edit" && !state.busy;
    el.undo.disabled = !edit || !state.actions.length;
    el.redo.disabled = !edit || !state.redo.length;
    el.clear.disabled = !edit || !hasStrokes();
    el.run.disabled = state.busy || state.mode === "empty" || !hasStrokes();
    for (const b of [el.brush, el.eraser, el.size]) b.disabled = !edit;
    el.useResult.disabled = el.edit.disabled = state.busy;
  }

  function applyCompare() {
    const v = Number(el.compare.value);
    el.result.style.clipPath = `inset(0 0 0 ${v}%)`;
    el.divider.style.left = `${v}%`;
  }

  function setBusy(busy) {
    state.busy = busy;
    el.busy.hidden = !busy;
    el.stage.setAttribute("aria-busy", String(busy));
    document.body.classList.toggle("is-busy", busy);
    updateButtons();
  }

  /** Fit the stage to the free space, keeping the photo's aspect ratio. */
  function layout() {
    if (!state.width) return;
    const ws = el.workspace.getBoundingClientRect();
    const bar = el.resultBar.hidden ? 0 : el.resultBar.getBoundingClientRect().height;
    const foot = document.querySelector(".foot").getBoundingClientRect().height;
    const availW = Math.max(120, ws.width);
    const availH = Math.max(200, window.innerHeight - ws.top - bar - foot - 16);
    const k = Math.min(availW / state.width, availH / state.height, 4);
    el.stage.style.width = `${Math.floor(state.width * k)}px`;
    el.stage.style.height = `${Math.floor(state.height * k)}px`;
  }
  window.addEventListener("resize", layout);

  function clearResult() {
    if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
    if (state.maskUrl) URL.revokeObjectURL(state.maskUrl);
    state.resultBlob = state.resultUrl = state.maskUrl = null;
    el.result.removeAttribute("src");
  }

  // -------------------------------------------------------------------- run

  async function run() {
    if (state.busy || !state.file) return;
    hideError();
    const { blob: mask, holes } = await maskBlob();
    if (!holes) { showError("Paint over the part to remove first."); return; }
    const form = new FormData();
    form.append("image", state.file, state.file.name || "image.png");
    form.append("mask", mask, "mask.png");
    if (el.method.value) form.append("method", el.method.value);
    form.append("strategy", el.strategy.value);
    form.append("output_format", el.format.value);
    setBusy(true);
    const t0 = performance.now();
    const tick = setInterval(() => {
      el.busyText.textContent = `Inpainting… ${((performance.now() - t0) / 1000).toFixed(0)} s`;
    }, 500);
    el.busyText.textContent = "Inpainting…";
    try {
      const r = await fetch(`${API}/inpaint`, { method: "POST", body: form });
      if (!r.ok) { showError(await errorMessage(r)); return; }
      const blob = await r.blob();
      clearResult();
      state.resultBlob = blob;
      state.resultUrl = URL.createObjectURL(blob);
      state.maskUrl = URL.createObjectURL(mask);
      await new Promise((resolve, reject) => {
        el.result.onload = resolve;
        el.result.onerror = () => reject(new Error("the result could not be displayed"));
        el.result.src = state.resultUrl;
      });
      const ext = blob.type === "image/jpeg" ? "jpg" : blob.type === "image/webp" ? "webp" : "png";
      el.downloadResult.href = state.resultUrl;
      el.downloadResult.download = `${state.baseName}-inpainted.${ext}`;
      el.downloadMask.href = state.maskUrl;
      el.downloadMask.download = `${state.baseName}-mask.png`;
      el.compare.value = 50;
      setMode("result");
      const secs = ((performance.now() - t0) / 1000).toFixed(1);
      setStatus(`Done in ${secs} s · ${r.headers.get("X-Pconv-Method") || ""} · ${state.width}×${state.height}`);
    } catch (e) {
      showError(`The request failed: ${e.message}. Is the server still running?`);
    } finally {
      clearInterval(tick);
      setBusy(false);
    }
  }

  async function useResult() {
    if (!state.resultBlob) return;
    const ext = state.resultBlob.type === "image/jpeg" ? "jpg" : state.resultBlob.type === "image/webp" ? "webp" : "png";
    const name = `${state.baseName.replace(/-inpainted$/, "")}-inpainted.${ext}`;
    await openFile(new File([state.resultBlob], name, { type: state.resultBlob.type || "image/png" }));
  }

  // ----------------------------------------------------------------- wiring

  el.file.addEventListener("change", () => { openFile(el.file.files[0]); el.file.value = ""; });
  el.brush.addEventListener("click", () => setTool("brush"));
  el.eraser.addEventListener("click", () => setTool("eraser"));
  el.size.addEventListener("input", () => setSize(Number(el.size.value)));
  el.undo.addEventListener("click", undo);
  el.redo.addEventListener("click", redo);
  el.clear.addEventListener("click", clearMask);
  el.run.addEventListener("click", run);
  el.errorClose.addEventListener("click", hideError);
  el.compare.addEventListener("input", applyCompare);
  el.toggle.addEventListener("click", () => {
    el.compare.value = Number(el.compare.value) > 0 ? 0 : 100;
    applyCompare();
  });
  el.edit.addEventListener("click", () => setMode("edit"));
  el.useResult.addEventListener("click", useResult);

  document.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLSelectElement) return;
    const k = e.key;
    const mod = e.ctrlKey || e.metaKey;
    if (k === "[" || k === "]") {
      const v = Number(el.size.value);
      setSize(k === "]" ? v * 1.2 + 1 : v / 1.2 - 1);
      e.preventDefault();
    } else if (mod && (k === "z" || k === "Z")) {
      e.shiftKey ? redo() : undo();
      e.preventDefault();
    } else if (mod && (k === "y" || k === "Y")) {
      redo();
      e.preventDefault();
    } else if (!mod && (k === "b" || k === "B")) {
      setTool("brush");
    } else if (!mod && (k === "e" || k === "E")) {
      setTool("eraser");
    } else if (!mod && k === "Enter" && !el.run.disabled && !(e.target instanceof HTMLButtonElement)) {
      run();
    }
  });

  // Drag and drop anywhere on the page.
  let dragDepth = 0;
  document.addEventListener("dragenter", (e) => { e.preventDefault(); dragDepth++; document.body.classList.add("dragging"); });
  document.addEventListener("dragleave", () => { if (--dragDepth <= 0) { dragDepth = 0; document.body.classList.remove("dragging"); } });
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    dragDepth = 0;
    document.body.classList.remove("dragging");
    const f = e.dataTransfer && e.dataTransfer.files[0];
    if (f) openFile(f);
  });
  // Paste an image from the clipboard.
  document.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData ? e.clipboardData.items : [])].find((i) => i.type.startsWith("image/"));
    if (item) openFile(item.getAsFile());
  });

  setSize(Number(el.size.value));
  updateButtons();
  loadInfo();
})();
