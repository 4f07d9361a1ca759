// pconv web page: open a photo, paint the holes, fill them through the job API (POST api/v1/jobs,
// then poll its progress, fetch the result; DELETE cancels). No build step, no dependencies.
// The mask is a list of strokes in photo pixels (cheap undo/redo), drawn on a canvas at the photo's
// natural size and sent as a PNG, white = hole. Zoom and pan are one CSS transform of the layers
// (photo, result, mask): the brush, painting and the before/after divider all work in photo pixels.
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
  const SEEDED = new Set(["pconv"]); // methods whose fill depends on the seed: "another result" makes sense
  const STAGE_LABELS = {
    queued: "Waiting for the server", decode: "Reading the photo", mask: "Reading the mask", network: "Filling",
    texture: "Adding detail", encode: "Encoding the result", done: "Finishing",
  };
  const RESULTS_KEPT = 5;      // results kept as thumbnails to compare and pick
  const MAX_ZOOM = 16;         // screen pixels per photo pixel, at most
  const POLL_MS = 250;         // how often a running job is asked for its progress
  const UPLOAD_SHARE = 0.9;    // of the server's upload limit for the photo (the mask needs the rest)
  const BRUSH_SCREEN_PX = 40;  // a new photo's brush: this many screen pixels at the fitted view

  const $ = (id) => document.getElementById(id);
  const el = {
    file: $("file"), drop: $("drop"), stage: $("stage"), workspace: $("workspace"), layers: $("layers"),
    image: $("image-canvas"), mask: $("mask-canvas"), result: $("result-img"),
    divider: $("divider"), cursor: $("cursor"), busy: $("busy"), busyText: $("busy-text"),
    progress: $("progress"), cancel: $("cancel"),
    brush: $("tool-brush"), eraser: $("tool-eraser"), size: $("size"), sizeOut: $("size-out"),
    undo: $("undo"), redo: $("redo"), clear: $("clear"), method: $("method"),
    zoomIn: $("zoom-in"), zoomOut: $("zoom-out"), zoomFit: $("zoom-fit"), zoomLevel: $("zoom-level"),
    opacity: $("mask-opacity"), hideMask: $("hide-mask"),
    strategy: $("strategy"), format: $("output-format"), run: $("run"),
    notice: $("notice"), noticeText: $("notice-text"), noticeAccept: $("notice-accept"),
    noticeDismiss: $("notice-dismiss"),
    error: $("error"), errorText: $("error-text"), errorClose: $("error-close"), status: $("status"),
    resultBar: $("result-bar"), compare: $("compare"), toggle: $("toggle"), edit: $("edit"),
    another: $("another"), history: $("history"),
    useResult: $("use-result"), downloadResult: $("download-result"), downloadMask: $("download-mask"),
  };

  const state = {
    file: null,          // the File sent to the server (original bytes and format, or the downscaled copy)
    baseName: "image",
    width: 0, height: 0, // natural size of the photo
    tool: "brush",
    actions: [],         // strokes {erase, size, points: [[x, y], ...]} and {clear: true}
    redo: [],
    drawing: null,       // the stroke being painted
    mode: "empty",       // empty | edit | result
    busy: false,
    info: null,
    results: [],         // {blob, url, maskUrl, thumb, seed, method, seconds}, oldest first
    selected: -1,
    view: { k: 1, tx: 0, ty: 0, fit: 1, fitted: true }, // screen = photo * k + t (stage pixels)
    run: 0,              // counts runs and cancels: a run that is no longer the latest leaves the page alone
    job: null,           // id of the server's job for the running fill
    gesture: null,       // {kind: stroke | pan | pinch | compare, ...}
    touches: new Map(),  // touch pointers on the stage: id -> [x, y] (stage pixels)
    space: false,        // Space held over the stage: drag pans
    overStage: false,
    onNotice: null,      // what the notice's accept button does
  };

  const ictx = el.image.getContext("2d");
  const mctx = el.mask.getContext("2d");
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // ---------------------------------------------------------------- messages

  function showError(message) {
    el.errorText.textContent = message;
    el.error.hidden = false;
  }
  function hideError() { el.error.hidden = true; }
  function setStatus(text) { el.status.textContent = text; }
  function photoLine() {
    return `${(state.file && state.file.name) || "image"} · ${state.width}×${state.height}`;
  }
  /** How a result's seed is shown; ``undefined`` is the server's default seed, 0. */
  function seedLabel(seed) { return `seed ${seed === undefined ? 0 : seed}`; }

  /** A notice with a choice (accept runs ``onAccept``) or, without one, a plain message to dismiss. */
  function showNotice(text, acceptLabel, onAccept, dismissLabel = "Cancel") {
    el.noticeText.textContent = text;
    el.noticeAccept.hidden = !onAccept;
    el.noticeAccept.textContent = acceptLabel || "OK";
    el.noticeDismiss.textContent = onAccept ? dismissLabel : "OK";
    state.onNotice = onAccept;
    el.notice.hidden = false;
    (onAccept ? el.noticeAccept : el.noticeDismiss).focus();
  }
  function hideNotice() { el.notice.hidden = true; state.onNotice = null; }

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
      updateButtons();
    } catch (e) {
      setStatus("Server not reachable");
      showError(`Cannot read the server's info (${e.message}). Is pconv serve running?`);
    }
  }

  function describe(status, detail, retry) {
    const prefix = {
      400: "The image or mask was refused",
      413: "Too large",
      415: "Bad request",
      422: "Bad options",
      503: "The server is busy",
      504: "Timed out",
    }[status] || `Server error ${status}`;
    let msg = detail ? `${prefix}: ${detail}` : prefix;
    if (status === 503 && retry && !/try again/.test(msg)) msg += ` (try again in ${retry} s)`;
    return msg;
  }

  async function errorMessage(response) {
    let detail = "";
    try {
      const body = await response.json();
      detail = body.detail || body.error || "";
    } catch (_) { /* not JSON */ }
    return describe(response.status, detail, response.headers.get("Retry-After"));
  }

  /** Tell the server a job's result is no longer wanted: a running job stops, a finished one is freed. */
  function forgetJob(id) {
    fetch(`${API}/jobs/${encodeURIComponent(id)}`, { method: "DELETE" }).catch(() => {});
  }

  // ------------------------------------------------------------------ photo

  function stem(name) {
    const base = (name || "image").split(/[\\/]/).pop();
    return base.replace(/\.[^.]+$/, "") || "image";
  }

  /** The size a photo must be brought down to for this server, or null when it fits as it is. */
  function fittedSize(w, h, bytes) {
    const limits = state.info && state.info.limits;
    if (!limits) return null;
    let s = 1;
    if (w * h > limits.max_pixels) s = Math.sqrt(limits.max_pixels / (w * h));
    const budget = limits.max_upload_bytes * UPLOAD_SHARE;
    if (bytes > budget) s = Math.min(s, Math.sqrt(budget / bytes) * 0.95); // bytes follow the area, roughly
    if (s >= 1) return null;
    let nw = Math.max(1, Math.floor(w * s)), nh = Math.max(1, Math.floor(h * s));
    while (nw * nh > limits.max_pixels && nw > 1) { nw -= 1; nh = Math.max(1, Math.floor((nw * h) / w)); }
    return { w: nw, h: nh };
  }

  async function openFile(file) {
    if (!file) return;
    if (state.busy) cancelRun();
    hideError();
    hideNotice();
    if (file.type && !file.type.startsWith("image/")) {
      showError(`${file.name} is not an image. Open a PNG, JPEG or WebP photo.`);
      return;
    }
    let bitmap;
    try {
      bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
    } catch (_) {
      showError(`${file.name || "This file"} could not be decoded as an image.`);
      return;
    }
    const target = fittedSize(bitmap.width, bitmap.height, file.size);
    if (target) { offerDownscale(file, bitmap, target); return; }
    showPhoto(file, bitmap);
  }

  /** Before painting: the photo is beyond the server's limits; offer a copy that fits. */
  function offerDownscale(file, bitmap, target) {
    const limits = state.info.limits;
    const mp = (n) => (n / 1e6).toFixed(1);
    const pixels = bitmap.width * bitmap.height;
    const why = pixels > limits.max_pixels
      ? `${bitmap.width}×${bitmap.height} (${mp(pixels)} MP); this server fills photos up to `
        + `${mp(limits.max_pixels)} MP`
      : `${mp(file.size)} MB; this server accepts uploads up to ${mp(limits.max_upload_bytes)} MB`;
    showNotice(`${file.name || "This photo"} is ${why}. Downscale it to ${target.w}×${target.h} before painting?`,
      `Downscale to ${target.w}×${target.h}`, async () => {
        try {
          const small = await downscale(file, bitmap, target);
          showPhoto(small.file, small.bitmap);
        } catch (e) {
          showError(`The photo could not be downscaled: ${e.message}`);
        } finally {
          if (bitmap.close) bitmap.close();
        }
      });
  }

  /** A copy of the photo at ``target`` size (smaller still if its file would pass the upload limit). */
  async function downscale(file, bitmap, target) {
    const jpeg = file.type === "image/jpeg";
    const type = jpeg ? "image/jpeg" : "image/png";
    const budget = state.info.limits.max_upload_bytes * UPLOAD_SHARE;
    let { w, h } = target;
    for (let attempt = 0; attempt < 6; attempt++) {
      const c = document.createElement("canvas");
      c.width = w; c.height = h;
      const ctx = c.getContext("2d");
      ctx.imageSmoothingQuality = "high";
      ctx.drawImage(bitmap, 0, 0, w, h);
      const blob = await new Promise((resolve) => c.toBlob(resolve, type, 0.95));
      if (!blob) throw new Error("the browser could not encode it");
      if (blob.size <= budget) {
        const name = `${stem(file.name)}-${w}x${h}.${jpeg ? "jpg" : "png"}`;
        const small = new File([blob], name, { type });
        return { file: small, bitmap: await createImageBitmap(c) };
      }
      w = Math.max(1, Math.floor(w * 0.85));
      h = Math.max(1, Math.floor(h * 0.85));
    }
    throw new Error("even a much smaller copy passes the server's upload limit");
  }

  function showPhoto(file, bitmap) {
    const sameSize = bitmap.width === state.width && bitmap.height === state.height;
    state.file = file;
    state.baseName = stem(file.name);
    state.width = bitmap.width;
    state.height = bitmap.height;
    for (const c of [el.image, el.mask]) { c.width = bitmap.width; c.height = bitmap.height; }
    el.layers.style.width = `${bitmap.width}px`;
    el.layers.style.height = `${bitmap.height}px`;
    ictx.drawImage(bitmap, 0, 0);
    if (bitmap.close) bitmap.close();
    state.actions = [];
    state.redo = [];
    clearResults();
    redrawMask();
    el.drop.hidden = true;
    el.stage.hidden = false;
    document.body.classList.add("has-image");
    state.view.fitted = true;
    setMode("edit");
    layout();
    el.size.max = String(Math.max(64, Math.round(Math.max(state.width, state.height) / 4)));
    if (!sameSize) setSize(BRUSH_SCREEN_PX / state.view.fit);
    else setSize(Number(el.size.value));
    setStatus(photoLine());
  }

  // ------------------------------------------------------------------- view

  function viewport() { return { w: el.stage.clientWidth, h: el.stage.clientHeight }; }
  function minZoom() { return state.view.fit; }
  function maxZoom() { return Math.max(MAX_ZOOM, state.view.fit); }

  /** Show the photo at ``k`` screen pixels per photo pixel, offset (tx, ty); a photo smaller than
   * the stage is centred, a larger one never leaves empty stage beside it. */
  function setView(k, tx, ty) {
    const v = viewport();
    const s = state.view;
    k = clamp(k, minZoom(), maxZoom());
    const w = state.width * k, h = state.height * k;
    s.k = k;
    s.tx = w <= v.w ? (v.w - w) / 2 : clamp(tx, v.w - w, 0);
    s.ty = h <= v.h ? (v.h - h) / 2 : clamp(ty, v.h - h, 0);
    s.fitted = Math.abs(k - s.fit) < 1e-9;
    el.layers.style.transform = `translate(${s.tx}px, ${s.ty}px) scale(${k})`;
    el.layers.style.backgroundSize = `${20 / k}px ${20 / k}px`; // the checkerboard stays 20 screen px
    el.zoomLevel.textContent = `${k < 0.1 ? (k * 100).toFixed(1) : Math.round(k * 100)}%`;
    updateViewButtons();
    applyCompare();
  }

  function updateViewButtons() {
    const none = state.mode === "empty", s = state.view;
    el.zoomOut.disabled = none || s.k <= minZoom() + 1e-9;
    el.zoomIn.disabled = none || s.k >= maxZoom() - 1e-9;
    el.zoomFit.disabled = none || s.fitted;
    el.hideMask.disabled = el.opacity.disabled = none;
  }

  /** Zoom by ``factor`` keeping the photo point under (cx, cy) (stage pixels) in place. */
  function zoomAt(factor, cx, cy) {
    const s = state.view;
    const k = clamp(s.k * factor, minZoom(), maxZoom());
    const px = (cx - s.tx) / s.k, py = (cy - s.ty) / s.k;
    setView(k, cx - px * k, cy - py * k);
  }
  function zoomBy(factor) {
    const v = viewport();
    zoomAt(factor, v.w / 2, v.h / 2);
  }
  function fitView() { setView(state.view.fit, 0, 0); }

  /** The stage changed size (window, banners, bars): refit, or keep the zoom and the centre. */
  function layout() {
    if (!state.width || el.stage.hidden) return;
    const v = viewport();
    if (!v.w || !v.h) return;
    const s = state.view;
    const fit = Math.min(v.w / state.width, v.h / state.height, 4);
    if (s.fitted) { s.fit = fit; setView(fit, 0, 0); return; }
    const cx = (v.w / 2 - s.tx) / s.k, cy = (v.h / 2 - s.ty) / s.k; // photo point at the old centre
    s.fit = fit;
    setView(s.k, v.w / 2 - cx * s.k, v.h / 2 - cy * s.k);
  }
  new ResizeObserver(layout).observe(el.workspace);
  window.addEventListener("resize", layout);

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
    if (!state.actions.length || state.mode !== "edit" || state.busy) return;
    state.redo.push(state.actions.pop());
    redrawMask();
  }
  function redo() {
    if (!state.redo.length || state.mode !== "edit" || state.busy) return;
    state.actions.push(state.redo.pop());
    redrawMask();
  }
  function clearMask() {
    if (!hasStrokes() || state.mode !== "edit" || state.busy) return;
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

  /** The mask as a binary PNG at the photo's natural size (white = hole, black = keep), its number
   * of hole pixels and their bounding box [x0, y0, x1, y1]. */
  function maskBlob() {
    const w = el.mask.width, h = el.mask.height;
    const src = mctx.getImageData(0, 0, w, h).data;
    const out = new ImageData(w, h);
    const d = out.data;
    let holes = 0, x0 = w, y0 = h, x1 = -1, y1 = -1;
    for (let i = 0, p = 0; i < src.length; i += 4, p++) {
      const v = src[i + 3] > 0 ? 255 : 0; // any paint, even an anti-aliased edge, is hole
      if (v) {
        holes++;
        const x = p % w, y = (p - x) / w;
        if (x < x0) x0 = x; if (x > x1) x1 = x;
        if (y < y0) y0 = y; if (y > y1) y1 = y;
      }
      d[i] = d[i + 1] = d[i + 2] = v;
      d[i + 3] = 255;
    }
    const c = document.createElement("canvas");
    c.width = w; c.height = h;
    c.getContext("2d").putImageData(out, 0, 0);
    const box = [x0, y0, x1 + 1, y1 + 1];
    return new Promise((resolve) => c.toBlob((blob) => resolve({ blob, holes, box }), "image/png"));
  }

  // ----------------------------------------------------------- pointer input

  /** Stage pixels of a pointer event. */
  function local(e) {
    const r = el.stage.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  }
  /** Photo pixels of a pointer event, through the view. */
  function toImage(e) {
    const [x, y] = local(e);
    return [(x - state.view.tx) / state.view.k, (y - state.view.ty) / state.view.k];
  }
  function brushSize() { return Number(el.size.value); }

  function moveCursor(e) {
    const painting = state.mode === "edit" && !state.busy && !state.space && state.gesture?.kind !== "pan"
      && state.gesture?.kind !== "pinch";
    if (!painting || e.pointerType === "touch") { el.cursor.hidden = true; return; }
    const [x, y] = local(e);
    const s = brushSize() * state.view.k;
    el.cursor.hidden = false;
    el.cursor.style.width = el.cursor.style.height = `${s}px`;
    el.cursor.style.transform = `translate(${x - s / 2}px, ${y - s / 2}px)`;
    el.cursor.classList.toggle("erase", state.tool === "eraser");
  }

  function startPinch() {
    const [a, b] = [...state.touches.values()];
    if (state.drawing) { state.drawing = null; redrawMask(); } // the first finger did not mean to paint
    state.gesture = {
      kind: "pinch", dist: Math.hypot(a[0] - b[0], a[1] - b[1]) || 1,
      mid: [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2], k: state.view.k, tx: state.view.tx, ty: state.view.ty,
    };
  }
  function movePinch() {
    const g = state.gesture;
    const [a, b] = [...state.touches.values()];
    const k = clamp((g.k * Math.hypot(a[0] - b[0], a[1] - b[1])) / g.dist, minZoom(), maxZoom());
    const mid = [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
    const px = (g.mid[0] - g.tx) / g.k, py = (g.mid[1] - g.ty) / g.k; // photo point under the first midpoint
    setView(k, mid[0] - px * k, mid[1] - py * k);
  }

  el.stage.addEventListener("pointerdown", (e) => {
    if (!state.width || e.target.closest("button")) return;
    if (e.pointerType === "touch") {
      state.touches.set(e.pointerId, local(e));
      if (state.touches.size === 2) { startPinch(); return; }
      if (state.touches.size > 2) return;
    }
    const [x, y] = local(e);
    if (e.button === 1 || (e.button === 0 && state.space)) { // pan: middle button, or Space + drag
      e.preventDefault();
      el.stage.setPointerCapture(e.pointerId);
      state.gesture = { kind: "pan", id: e.pointerId, x, y, tx: state.view.tx, ty: state.view.ty };
      el.stage.classList.add("panning");
      el.cursor.hidden = true;
      return;
    }
    if (e.button !== 0 || state.busy) return;
    if (state.mode === "edit") {
      e.preventDefault();
      el.stage.setPointerCapture(e.pointerId);
      const stroke = { erase: state.tool === "eraser", size: brushSize(), points: [toImage(e)] };
      state.drawing = stroke;
      state.gesture = { kind: "stroke", id: e.pointerId };
      drawStroke(mctx, stroke);
    } else if (state.mode === "result") { // drag anywhere on the photo to move the before/after divider
      el.stage.setPointerCapture(e.pointerId);
      state.gesture = { kind: "compare", id: e.pointerId };
      compareAt(e);
    }
  });

  el.stage.addEventListener("pointermove", (e) => {
    if (state.touches.has(e.pointerId)) state.touches.set(e.pointerId, local(e));
    moveCursor(e);
    const g = state.gesture;
    if (!g) return;
    if (g.kind === "pinch") { if (state.touches.size === 2) movePinch(); return; }
    if (g.id !== e.pointerId) return;
    if (g.kind === "pan") {
      const [x, y] = local(e);
      setView(state.view.k, g.tx + x - g.x, g.ty + y - g.y);
    } else if (g.kind === "compare") {
      compareAt(e);
    } else if (g.kind === "stroke" && state.drawing) {
      const s = state.drawing;
      const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
      for (const ev of events.length ? events : [e]) {
        const p = toImage(ev);
        const last = s.points[s.points.length - 1];
        s.points.push(p);
        drawStroke(mctx, { erase: s.erase, size: s.size, points: [last, p] });
      }
    }
  });

  function endPointer(e) {
    state.touches.delete(e.pointerId);
    const g = state.gesture;
    if (!g) return;
    if (g.kind === "pinch") { if (state.touches.size < 2) state.gesture = null; return; }
    if (g.id !== e.pointerId) return;
    if (g.kind === "stroke" && state.drawing) {
      pushAction(state.drawing);
      state.drawing = null;
      redrawMask(); // one clean pass, no overlapping segment caps
    }
    el.stage.classList.remove("panning");
    state.gesture = null;
  }
  el.stage.addEventListener("pointerup", endPointer);
  el.stage.addEventListener("pointercancel", endPointer);
  el.stage.addEventListener("pointerenter", () => { state.overStage = true; });
  el.stage.addEventListener("pointerleave", () => { state.overStage = false; el.cursor.hidden = true; });
  // The middle button must pan, not start the browser's autoscroll or paste.
  el.stage.addEventListener("mousedown", (e) => { if (e.button === 1) e.preventDefault(); });
  el.stage.addEventListener("auxclick", (e) => e.preventDefault());

  el.stage.addEventListener("wheel", (e) => {
    if (!state.width) return;
    e.preventDefault();
    const unit = e.deltaMode === 1 ? 16 : e.deltaMode === 2 ? 400 : 1;
    const speed = e.ctrlKey ? 0.01 : 0.002; // ctrlKey: a trackpad's pinch, in small steps
    const [x, y] = local(e);
    zoomAt(Math.exp(-e.deltaY * unit * speed), x, y);
    moveCursor(e);
  }, { passive: false });

  function setSpace(down) {
    state.space = down;
    el.stage.classList.toggle("pan-ready", down);
    if (down) el.cursor.hidden = true;
  }

  // --------------------------------------------------------------- tools, UI

  function setTool(tool) {
    state.tool = tool;
    el.brush.setAttribute("aria-pressed", String(tool === "brush"));
    el.eraser.setAttribute("aria-pressed", String(tool === "eraser"));
  }
  function setSize(v) {
    const s = Math.round(clamp(v, Number(el.size.min), Number(el.size.max)));
    el.size.value = s;
    el.sizeOut.textContent = `${s} px`;
  }
  function setMaskOpacity() { el.mask.style.opacity = String(Number(el.opacity.value) / 100); }
  function toggleMask() {
    const hidden = !el.layers.classList.contains("mask-hidden");
    el.layers.classList.toggle("mask-hidden", hidden);
    el.hideMask.setAttribute("aria-pressed", String(hidden));
    el.hideMask.textContent = hidden ? "Show mask" : "Hide mask";
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
  }

  function updateButtons() {
    const edit = state.mode === "edit" && !state.busy;
    el.undo.disabled = !edit || !state.actions.length;
    el.redo.disabled = !edit || !state.redo.length;
    el.clear.disabled = !edit || !hasStrokes();
    el.run.disabled = state.busy || state.mode === "empty" || !hasStrokes();
    for (const b of [el.brush, el.eraser, el.size]) b.disabled = !edit;
    el.useResult.disabled = el.edit.disabled = state.busy;
    const method = el.method.value || (state.info && state.info.default_method);
    el.another.disabled = state.busy || !SEEDED.has(method);
    el.another.title = SEEDED.has(method)
      ? "The photographic fill draws its texture at random: a new seed gives another result to compare"
      : `${METHOD_LABELS[method] || method} gives the same result every time; choose the photographic fill for others`;
    updateViewButtons();
  }

  function applyCompare() {
    const v = Number(el.compare.value);
    el.result.style.clipPath = `inset(0 0 0 ${v}%)`;
    const s = state.view, vp = viewport();
    const top = Math.max(0, s.ty), bottom = Math.min(vp.h, s.ty + state.height * s.k);
    el.divider.style.left = `${s.tx + (v / 100) * state.width * s.k}px`;
    el.divider.style.top = `${top}px`;
    el.divider.style.height = `${Math.max(0, bottom - top)}px`;
  }
  function compareAt(e) {
    el.compare.value = Math.round(clamp(toImage(e)[0] / state.width, 0, 1) * 100);
    applyCompare();
  }

  function setBusy(busy) {
    state.busy = busy;
    el.busy.hidden = !busy;
    el.progress.value = 0;
    el.stage.setAttribute("aria-busy", String(busy));
    document.body.classList.toggle("is-busy", busy);
    updateButtons();
  }

  function showProgress(job, t0) {
    const secs = ((performance.now() - t0) / 1000).toFixed(0);
    const what = job.state === "queued" ? STAGE_LABELS.queued : STAGE_LABELS[job.stage] || "Inpainting";
    el.busyText.textContent = `${what}… ${Math.round(job.progress * 100)} % · ${secs} s`;
    el.progress.value = job.progress;
  }

  // ---------------------------------------------------------------- results

  function clearResults() {
    for (const r of state.results) { URL.revokeObjectURL(r.url); URL.revokeObjectURL(r.maskUrl); }
    state.results = [];
    state.selected = -1;
    el.history.replaceChildren();
    el.result.removeAttribute("src");
  }

  /** A small picture of the filled region (the mask's box with a margin), to tell results apart. */
  async function thumbnail(blob, box) {
    const c = document.createElement("canvas");
    c.width = 96; c.height = 72;
    let [x0, y0, x1, y1] = box;
    const m = Math.max(x1 - x0, y1 - y0) * 0.25 + 8;
    x0 = clamp(x0 - m, 0, state.width); x1 = clamp(x1 + m, 0, state.width);
    y0 = clamp(y0 - m, 0, state.height); y1 = clamp(y1 + m, 0, state.height);
    const k = Math.min(c.width / (x1 - x0), c.height / (y1 - y0));
    try {
      const bmp = await createImageBitmap(blob, x0, y0, x1 - x0, y1 - y0);
      const w = (x1 - x0) * k, h = (y1 - y0) * k;
      c.getContext("2d").drawImage(bmp, (c.width - w) / 2, (c.height - h) / 2, w, h);
      if (bmp.close) bmp.close();
    } catch (_) { /* a thumbnail is a nicety */ }
    return c;
  }

  async function addResult(r) {
    const entry = { ...r, url: URL.createObjectURL(r.blob), maskUrl: URL.createObjectURL(r.mask) };
    entry.thumb = await thumbnail(r.blob, r.box);
    state.results.push(entry);
    while (state.results.length > RESULTS_KEPT) {
      const old = state.results.shift();
      URL.revokeObjectURL(old.url);
      URL.revokeObjectURL(old.maskUrl);
    }
    renderHistory();
    await selectResult(state.results.length - 1);
  }

  function renderHistory() {
    el.history.replaceChildren(...state.results.map((r, i) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "thumb";
      b.setAttribute("aria-pressed", String(i === state.selected));
      const label = seedLabel(r.seed);
      b.title = `${METHOD_LABELS[r.method] || r.method} · ${SEEDED.has(r.method) ? `${label} · ` : ""}${r.seconds} s`;
      const caption = document.createElement("span");
      caption.textContent = SEEDED.has(r.method) ? label : r.method;
      b.append(r.thumb, caption);
      b.addEventListener("click", () => selectResult(i));
      return b;
    }));
  }

  /** Show result ``i`` in the before/after view; the downloads are its image and mask. */
  async function selectResult(i) {
    const r = state.results[i];
    if (!r) return;
    state.selected = i;
    await new Promise((resolve, reject) => {
      el.result.onload = resolve;
      el.result.onerror = () => reject(new Error("the result could not be displayed"));
      el.result.src = r.url;
    });
    const ext = r.blob.type === "image/jpeg" ? "jpg" : r.blob.type === "image/webp" ? "webp" : "png";
    const tag = state.results.length > 1 && SEEDED.has(r.method) ? `-${seedLabel(r.seed).replace(" ", "")}` : "";
    el.downloadResult.href = r.url;
    el.downloadResult.download = `${state.baseName}-inpainted${tag}.${ext}`;
    el.downloadMask.href = r.maskUrl;
    el.downloadMask.download = `${state.baseName}-mask.png`;
    [...el.history.children].forEach((b, j) => b.setAttribute("aria-pressed", String(j === i)));
    if (state.mode === "result") {
      setStatus(`${SEEDED.has(r.method) ? `${seedLabel(r.seed)} · ` : ""}${r.method} · ${photoLine()}`);
    }
  }

  function newSeed() {
    const a = new Uint32Array(1);
    crypto.getRandomValues(a);
    return (a[0] % 999999) + 1; // 1 ... 999999, short to read (the first run uses the server's seed, 0)
  }

  // -------------------------------------------------------------------- run

  /** Fill the painted holes: a job on the server, followed until it ends. ``seed`` undefined = the
   * server's default. One run at a time: the busy flag is set before the first await. */
  async function run(seed) {
    if (state.busy || !state.file || state.mode === "empty" || !hasStrokes()) return;
    const token = ++state.run;
    const stale = () => token !== state.run; // cancelled, or a newer run took over
    setBusy(true);
    hideError();
    hideNotice();
    el.busyText.textContent = "Preparing…";
    const t0 = performance.now();
    try {
      const { blob: mask, holes, box } = await maskBlob();
      if (stale()) return;
      if (!holes) { showError("Paint over the part to remove first."); return; }
      const form = new FormData();
      form.append("image", state.file, state.file.name || "image.png");
      form.append("mask", mask, "mask.png");
      if (el.method.value) form.append("method", el.method.value);
      form.append("strategy", el.strategy.value);
      form.append("output_format", el.format.value);
      if (seed !== undefined) form.append("seed", String(seed));
      el.busyText.textContent = "Uploading…";
      const created = await fetch(`${API}/jobs`, { method: "POST", body: form });
      if (!created.ok) { if (!stale()) showError(await errorMessage(created)); return; }
      let job = await created.json();
      if (stale()) { forgetJob(job.id); return; } // cancelled during the upload
      state.job = job.id;
      while (job.state === "queued" || job.state === "running") {
        showProgress(job, t0);
        await sleep(POLL_MS);
        if (stale()) return; // the cancel has told the server
        const r = await fetch(`${API}/jobs/${encodeURIComponent(job.id)}`, { cache: "no-store" });
        if (stale()) return;
        if (!r.ok) { showError(await errorMessage(r)); return; }
        job = await r.json();
      }
      if (job.state !== "done") {
        const e = job.error || { status: 500, detail: `the job was ${job.state}` };
        showError(describe(e.status, e.detail));
        forgetJob(job.id);
        return;
      }
      el.busyText.textContent = "Downloading the result…";
      el.progress.value = 1;
      const r = await fetch(`${API}/jobs/${encodeURIComponent(job.id)}/result`, { cache: "no-store" });
      if (stale()) return;
      if (!r.ok) { showError(await errorMessage(r)); return; }
      const blob = await r.blob();
      forgetJob(job.id); // the page keeps its copy; free the server's
      state.job = null;
      if (stale()) return;
      const method = r.headers.get("X-Pconv-Method") || job.method;
      const secs = ((performance.now() - t0) / 1000).toFixed(1);
      await addResult({ blob, mask, box, seed, method, seconds: secs });
      el.compare.value = 50;
      setMode("result");
      const drawn = SEEDED.has(method) ? ` · ${seedLabel(seed)}` : "";
      setStatus(`Done in ${secs} s · ${method}${drawn} · ${state.width}×${state.height}`);
      const warning = r.headers.get("X-Pconv-Warning");
      if (warning) showNotice(`Filled, but check the mask: ${warning}`);
    } catch (e) {
      if (!stale()) showError(`The request failed: ${e.message}. Is the server still running?`);
    } finally {
      if (!stale()) { state.job = null; setBusy(false); }
    }
  }

  /** Stop the running fill: the server's job is cancelled (its work stops), the page is free at once. */
  function cancelRun() {
    if (!state.busy) return;
    state.run++;
    if (state.job) forgetJob(state.job);
    state.job = null;
    setBusy(false);
    setStatus(`Cancelled · ${photoLine()}`);
  }

  async function useResult() {
    const r = state.results[state.selected];
    if (!r || state.busy) return;
    const ext = r.blob.type === "image/jpeg" ? "jpg" : r.blob.type === "image/webp" ? "webp" : "png";
    const name = `${state.baseName.replace(/-inpainted$/, "")}-inpainted.${ext}`;
    await openFile(new File([r.blob], name, { type: r.blob.type || "image/png" }));
  }

  function editMask() {
    if (state.busy) return;
    setMode("edit");
    setStatus(`${photoLine()} · editing the mask`);
  }

  // ----------------------------------------------------------------- wiring

  el.file.addEventListener("change", () => { openFile(el.file.files[0]); el.file.value = ""; });
  el.brush.addEventListener("click", () => setTool("brush"));
  el.eraser.addEventListener("click", () => setTool("eraser"));
  el.size.addEventListener("input", () => setSize(Number(el.size.value)));
  el.opacity.addEventListener("input", setMaskOpacity);
  el.hideMask.addEventListener("click", toggleMask);
  el.zoomIn.addEventListener("click", () => zoomBy(1.5));
  el.zoomOut.addEventListener("click", () => zoomBy(1 / 1.5));
  el.zoomFit.addEventListener("click", fitView);
  el.undo.addEventListener("click", undo);
  el.redo.addEventListener("click", redo);
  el.clear.addEventListener("click", clearMask);
  el.method.addEventListener("change", updateButtons);
  el.run.addEventListener("click", () => run());
  el.another.addEventListener("click", () => run(newSeed()));
  el.cancel.addEventListener("click", cancelRun);
  el.errorClose.addEventListener("click", hideError);
  el.noticeAccept.addEventListener("click", () => { const f = state.onNotice; hideNotice(); if (f) f(); });
  el.noticeDismiss.addEventListener("click", hideNotice);
  el.compare.addEventListener("input", applyCompare);
  el.toggle.addEventListener("click", () => {
    el.compare.value = Number(el.compare.value) > 0 ? 0 : 100;
    applyCompare();
  });
  el.edit.addEventListener("click", editMask);
  el.useResult.addEventListener("click", useResult);

  const typing = (t) => t instanceof HTMLSelectElement || (t instanceof HTMLInputElement && t.type !== "range");
  document.addEventListener("keydown", (e) => {
    if (typing(e.target)) return;
    const k = e.key;
    const mod = e.ctrlKey || e.metaKey;
    if (e.code === "Space" && state.width && (state.overStage || state.space)) {
      e.preventDefault(); // pan, not a click on the focused button or a page scroll
      if (!e.repeat) setSpace(true);
    } else if (k === "Escape" && state.busy) {
      cancelRun();
    } else if (k === "[" || k === "]") {
      const v = brushSize();
      setSize(k === "]" ? v * 1.2 + 1 : v / 1.2 - 1);
      e.preventDefault();
    } else if (mod && (k === "z" || k === "Z")) {
      e.shiftKey ? redo() : undo();
      e.preventDefault();
    } else if (mod && (k === "y" || k === "Y")) {
      redo();
      e.preventDefault();
    } else if (!mod && state.width && (k === "+" || k === "=")) {
      zoomBy(1.5);
    } else if (!mod && state.width && k === "-") {
      zoomBy(1 / 1.5);
    } else if (!mod && state.width && k === "0") {
      fitView();
    } else if (!mod && state.width && (k === "h" || k === "H")) {
      toggleMask();
    } else if (!mod && (k === "b" || k === "B")) {
      setTool("brush");
    } else if (!mod && (k === "e" || k === "E")) {
      setTool("eraser");
    } else if (!mod && k === "Enter" && !el.run.disabled && !(e.target instanceof HTMLButtonElement)) {
      run();
    }
  });
  document.addEventListener("keyup", (e) => {
    if (e.code === "Space" && state.space) { e.preventDefault(); setSpace(false); }
  });
  window.addEventListener("blur", () => setSpace(false));

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
  setMaskOpacity();
  updateButtons();
  loadInfo();
})();
