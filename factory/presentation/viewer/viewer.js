// The trajectory viewer: draws the simulated character beside its reference on a 2D canvas
// (perspective projection, painter's order, floor shadows). No dependencies: the page is one
// self-contained file. Scene data is the JSON in <script id="scene" type="application/json">.
(function () {
  "use strict";
  const errors = [];
  function recordError(message) {
    errors.push(String(message));
    document.body.dataset.errors = String(errors.length);
    const box = document.getElementById("errors");
    if (box) { box.textContent = errors.join("\n"); box.hidden = false; }
  }
  window.addEventListener("error", (e) => recordError(e.message || "error"));
  window.__viewer = { errors: errors, framesDrawn: 0 };

  // ---- scene ---------------------------------------------------------------------------------
  const scene = JSON.parse(document.getElementById("scene").textContent);
  function decodeFloats(b64) {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Float32Array(bytes.buffer);
  }
  const B = scene.bodies;
  const T = scene.frames;
  const sim = decodeFloats(scene.sim);   // T x B x 7: position xyz, quaternion wxyz
  const ref = decodeFloats(scene.ref);
  if (sim.length !== T * B * 7 || ref.length !== T * B * 7) throw new Error("scene arrays have the wrong size");

  // ---- small vector helpers ------------------------------------------------------------------
  const sub = (a, b) => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
  const add = (a, b) => [a[0] + b[0], a[1] + b[1], a[2] + b[2]];
  const scale = (a, s) => [a[0] * s, a[1] * s, a[2] * s];
  const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
  const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
  const norm = (a) => { const n = Math.hypot(a[0], a[1], a[2]) || 1; return [a[0] / n, a[1] / n, a[2] / n]; };
  function rotate(q, v) {  // quaternion wxyz applied to v
    const [w, x, y, z] = q;
    const t = [2 * (y * v[2] - z * v[1]), 2 * (z * v[0] - x * v[2]), 2 * (x * v[1] - y * v[0])];
    return [v[0] + w * t[0] + (y * t[2] - z * t[1]),
            v[1] + w * t[1] + (z * t[0] - x * t[2]),
            v[2] + w * t[2] + (x * t[1] - y * t[0])];
  }
  function bodyPose(data, frame, body) {
    const o = (frame * B + body) * 7;
    return [[data[o], data[o + 1], data[o + 2]], [data[o + 3], data[o + 4], data[o + 5], data[o + 6]]];
  }

  // ---- DOM -------------------------------------------------------------------------------------
  const canvas = document.getElementById("view");
  const ctx = canvas.getContext("2d");
  const plot = document.getElementById("plot");
  const pctx = plot.getContext("2d");
  const slider = document.getElementById("time");
  const playButton = document.getElementById("play");
  const speedSelect = document.getElementById("speed");
  const refSelect = document.getElementById("refmode");
  const followBox = document.getElementById("follow");
  const readout = document.getElementById("readout");
  document.getElementById("title").textContent = scene.title;
  document.getElementById("subtitle").textContent = scene.subtitle || "";
  slider.max = String(T - 1);

  // ---- state -----------------------------------------------------------------------------------
  const view = { frame: 0, playing: true, speed: 1, time: 0, yaw: scene.camera.yaw, pitch: scene.camera.pitch,
                 dist: scene.camera.distance, follow: true, refMode: "beside", target: null };
  const offset = scene.reference_offset;  // world offset of the reference drawn beside the character

  function refShift() {
    return view.refMode === "beside" ? offset : [0, 0, 0];
  }
  function focusPoint(frame) {
    const p = bodyPose(sim, frame, 0)[0];
    if (view.refMode !== "beside") return [p[0], p[1], 0.9];
    const r = add(bodyPose(ref, frame, 0)[0], offset);
    return [(p[0] + r[0]) / 2, (p[1] + r[1]) / 2, 0.9];
  }

  // ---- camera ----------------------------------------------------------------------------------
  function camera(width, height) {
    const target = view.target;
    const cp = Math.cos(view.pitch);
    const eye = [target[0] + view.dist * cp * Math.cos(view.yaw), target[1] + view.dist * cp * Math.sin(view.yaw),
                 target[2] + view.dist * Math.sin(view.pitch)];
    const f = norm(sub(target, eye));
    const r = norm(cross(f, [0, 0, 1]));
    const u = cross(r, f);
    const focal = height / (2 * Math.tan((scene.camera.fov_deg * Math.PI / 180) / 2));
    return { eye, f, r, u, focal, cx: width / 2, cy: height / 2 };
  }
  const NEAR = 0.05;
  function toCamera(cam, p) {
    const d = sub(p, cam.eye);
    return [dot(d, cam.r), dot(d, cam.u), dot(d, cam.f)];
  }
  function project(cam, c) {  // camera-space point -> screen
    return [cam.cx + cam.focal * c[0] / c[2], cam.cy - cam.focal * c[1] / c[2]];
  }
  function clipPolygon(points) {  // camera-space polygon clipped to z > NEAR
    const out = [];
    for (let i = 0; i < points.length; i++) {
      const a = points[i], b = points[(i + 1) % points.length];
      const ain = a[2] > NEAR, bin = b[2] > NEAR;
      if (ain) out.push(a);
      if (ain !== bin) {
        const t = (NEAR - a[2]) / (b[2] - a[2]);
        out.push([a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]), NEAR]);
      }
    }
    return out;
  }

  // ---- drawing ---------------------------------------------------------------------------------
  function shade(hex, k) {  // scale an #rrggbb colour's brightness
    const n = parseInt(hex.slice(1), 16);
    const c = [(n >> 16) & 255, (n >> 8) & 255, n & 255].map((v) => Math.max(0, Math.min(255, Math.round(v * k))));
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  }
  function drawFloor(cam) {
    const tile = 0.5, reach = 8;
    const cx = Math.floor(view.target[0] / tile), cy = Math.floor(view.target[1] / tile);
    const n = Math.round(reach / tile);
    for (let i = -n; i < n; i++) {
      for (let j = -n; j < n; j++) {
        const x0 = (cx + i) * tile, y0 = (cy + j) * tile;
        const poly = clipPolygon([[x0, y0, 0], [x0 + tile, y0, 0], [x0 + tile, y0 + tile, 0], [x0, y0 + tile, 0]]
          .map((p) => toCamera(cam, p)));
        if (poly.length < 3) continue;
        const dist = Math.hypot(x0 + tile / 2 - view.target[0], y0 + tile / 2 - view.target[1]);
        const fade = Math.max(0, 1 - dist / reach);
        const light = ((cx + i + cy + j) & 1) ? 0.93 : 0.86;
        const v = Math.round(255 * (light * fade + 0.97 * (1 - fade)));
        ctx.fillStyle = `rgb(${v},${v},${Math.min(255, v + 4)})`;
        ctx.beginPath();
        poly.forEach((c, k) => { const s = project(cam, c); if (k) ctx.lineTo(s[0], s[1]); else ctx.moveTo(s[0], s[1]); });
        ctx.closePath();
        ctx.fill();
      }
    }
  }
  // World-space primitives of one character at one frame.
  function primitives(data, frame, shift, colour, alpha) {
    const items = [];
    for (const g of scene.geoms) {
      const [pos, q] = bodyPose(data, frame, g.body);
      const base = add(pos, shift);
      const world = (v) => add(base, rotate(q, v));
      if (g.kind === "box") {
        const c = world(g.center);
        const axes = g.axes.map((a) => rotate(q, a));
        items.push({ kind: "box", c, axes, colour, alpha });
      } else {
        items.push({ kind: "capsule", a: world(g.a), b: world(g.b), radius: g.radius, colour, alpha });
      }
    }
    return items;
  }
  const shadowCanvas = document.createElement("canvas");
  const sctx = shadowCanvas.getContext("2d");
  // Shadows: drawn opaque off screen, then laid down with one alpha (overlaps do not darken).
  function drawShadows(cam, items) {
    shadowCanvas.width = canvas.width; shadowCanvas.height = canvas.height;
    sctx.clearRect(0, 0, shadowCanvas.width, shadowCanvas.height);
    sctx.lineCap = "round";
    sctx.strokeStyle = "#283038";
    for (const it of items) {
      const a = it.kind === "box" ? [it.c[0] - it.axes[0][0], it.c[1] - it.axes[0][1], 0.001] : [it.a[0], it.a[1], 0.001];
      const b = it.kind === "box" ? [it.c[0] + it.axes[0][0], it.c[1] + it.axes[0][1], 0.001] : [it.b[0], it.b[1], 0.001];
      const r = it.kind === "box" ? Math.hypot(it.axes[1][0], it.axes[1][1]) : it.radius;
      const ca = toCamera(cam, a), cb = toCamera(cam, b);
      if (ca[2] <= NEAR || cb[2] <= NEAR) continue;
      const sa = project(cam, ca), sb = project(cam, cb);
      sctx.lineWidth = Math.max(1, cam.focal * r * (1 / ca[2] + 1 / cb[2]));
      sctx.beginPath(); sctx.moveTo(sa[0], sa[1]); sctx.lineTo(sb[0], sb[1]); sctx.stroke();
    }
    ctx.save();
    ctx.globalAlpha = 0.16;
    ctx.drawImage(shadowCanvas, 0, 0);
    ctx.restore();
  }
  const LIGHT = norm([-0.4, -0.3, 0.85]);
  function drawCapsule(cam, it) {
    const ca = toCamera(cam, it.a), cb = toCamera(cam, it.b);
    if (ca[2] <= NEAR || cb[2] <= NEAR) return;
    const sa = project(cam, ca), sb = project(cam, cb);
    const ra = cam.focal * it.radius / ca[2], rb = cam.focal * it.radius / cb[2];
    const w = ra + rb;
    ctx.globalAlpha = it.alpha;
    ctx.lineCap = "round";
    ctx.strokeStyle = shade(it.colour, 0.55);
    ctx.lineWidth = w + 2;
    ctx.beginPath(); ctx.moveTo(sa[0], sa[1]); ctx.lineTo(sb[0], sb[1]); ctx.stroke();
    ctx.strokeStyle = it.colour;
    ctx.lineWidth = w;
    ctx.stroke();
    // highlight: a thinner, lighter stroke nudged towards the light
    const lx = dot(LIGHT, cam.r), ly = -dot(LIGHT, cam.u);
    const k = 0.25 * w;
    ctx.strokeStyle = shade(it.colour, 1.35);
    ctx.lineWidth = 0.35 * w;
    ctx.beginPath(); ctx.moveTo(sa[0] + lx * k, sa[1] + ly * k); ctx.lineTo(sb[0] + lx * k, sb[1] + ly * k); ctx.stroke();
    ctx.globalAlpha = 1;
  }
  const BOX_FACES = [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]];
  function drawBox(cam, it) {
    const corners = [];
    for (const sx of [-1, 1]) for (const sy of [-1, 1]) for (const sz of [-1, 1]) {
      corners.push(add(add(add(it.c, scale(it.axes[0], sx)), scale(it.axes[1], sy)), scale(it.axes[2], sz)));
    }
    const cams = corners.map((p) => toCamera(cam, p));
    if (cams.some((c) => c[2] <= NEAR)) return;
    const screen = cams.map((c) => project(cam, c));
    ctx.globalAlpha = it.alpha;
    ctx.lineJoin = "round";
    for (const face of BOX_FACES) {
      const n = norm(cross(sub(corners[face[1]], corners[face[0]]), sub(corners[face[3]], corners[face[0]])));
      const centre = scale(add(add(corners[face[0]], corners[face[1]]), add(corners[face[2]], corners[face[3]])), 0.25);
      const toEye = sub(cam.eye, centre);
      const facing = dot(n, toEye);
      const outward = dot(n, sub(centre, it.c)) > 0 ? 1 : -1;
      if (facing * outward <= 0) continue;  // back face
      const lit = 0.65 + 0.45 * Math.max(0, outward * dot(n, LIGHT));
      ctx.fillStyle = shade(it.colour, lit);
      ctx.strokeStyle = shade(it.colour, 0.55);
      ctx.lineWidth = 1;
      ctx.beginPath();
      face.forEach((i, k) => { if (k) ctx.lineTo(screen[i][0], screen[i][1]); else ctx.moveTo(screen[i][0], screen[i][1]); });
      ctx.closePath(); ctx.fill(); ctx.stroke();
    }
    ctx.globalAlpha = 1;
  }
  function depth(cam, it) {
    const p = it.kind === "box" ? it.c : scale(add(it.a, it.b), 0.5);
    return toCamera(cam, p)[2];
  }
  function segmentAt(step) {
    for (const s of scene.segments) if (step >= s.start_step && step < s.end_step) return s;
    return scene.segments.length ? scene.segments[scene.segments.length - 1] : null;
  }
  function fellBy(frame) {
    return scene.fell_at_step !== null && frame > scene.fell_at_step;
  }

  function resize() {
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
      canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio);
    }
    const pw = plot.clientWidth, ph = plot.clientHeight;
    if (plot.width !== Math.round(pw * ratio) || plot.height !== Math.round(ph * ratio)) {
      plot.width = Math.round(pw * ratio); plot.height = Math.round(ph * ratio);
    }
    return ratio;
  }

  function drawScene() {
    const ratio = resize();
    const width = canvas.width, height = canvas.height;
    const frame = view.frame;
    const focus = focusPoint(frame);
    if (view.follow || view.target === null) view.target = focus;
    const cam = camera(width, height);
    const sky = ctx.createLinearGradient(0, 0, 0, height);
    sky.addColorStop(0, "#dfe7ef"); sky.addColorStop(1, "#f7f8fa");
    ctx.fillStyle = sky;
    ctx.fillRect(0, 0, width, height);
    drawFloor(cam);
    let items = primitives(sim, frame, [0, 0, 0], fellBy(frame) ? "#c0504d" : scene.colours.simulated, 1);
    if (view.refMode !== "hidden") {
      items = items.concat(primitives(ref, frame, refShift(), scene.colours.reference,
                                      view.refMode === "overlay" ? 0.45 : 0.9));
    }
    drawShadows(cam, items);
    items.sort((a, b) => depth(cam, b) - depth(cam, a));
    for (const it of items) { if (it.kind === "box") drawBox(cam, it); else drawCapsule(cam, it); }
    // labels above the characters
    ctx.font = `${13 * ratio}px system-ui, sans-serif`;
    ctx.textAlign = "center";
    const label = (p, text, colour) => {
      const c = toCamera(cam, [p[0], p[1], p[2] + 0.95]);
      if (c[2] <= NEAR) return;
      const s = project(cam, c);
      ctx.fillStyle = colour; ctx.fillText(text, s[0], s[1]);
    };
    label(bodyPose(sim, frame, 0)[0], "simulated", shade(scene.colours.simulated, 0.7));
    if (view.refMode === "beside") label(add(bodyPose(ref, frame, 0)[0], offset), "reference", shade(scene.colours.reference, 0.7));
    // heads-up text
    ctx.textAlign = "left";
    ctx.fillStyle = "#223";
    const step = Math.min(frame, T - 2);
    const seg = segmentAt(step);
    const lines = [`t ${(frame / scene.fps).toFixed(2)} s   frame ${frame}/${T - 1}`];
    if (frame > 0) lines.push(`pose error ${(scene.pose_error_m[frame - 1] * 100).toFixed(1)} cm`);
    if (seg && scene.segments.length > 1) lines.push(`segment ${seg.index}: ${seg.name}`);
    if (fellBy(frame)) lines.push(`fell at ${(scene.fell_at_step / scene.fps).toFixed(2)} s`);
    lines.forEach((t, i) => ctx.fillText(t, 12 * ratio, (20 + 18 * i) * ratio));
    drawPlot(ratio);
    readout.textContent = lines.join("  ·  ");
    slider.value = String(frame);
    window.__viewer.framesDrawn += 1;
    document.body.dataset.framesDrawn = String(window.__viewer.framesDrawn);
  }

  function drawPlot(ratio) {
    const w = plot.width, h = plot.height, pad = 6 * ratio;
    const errs = scene.pose_error_m;
    pctx.fillStyle = "#fff"; pctx.fillRect(0, 0, w, h);
    const top = Math.max(0.1, ...errs.filter((e) => Number.isFinite(e))) * 1.1;
    const x = (i) => pad + (w - 2 * pad) * i / Math.max(1, T - 1);
    const y = (e) => h - pad - (h - 2 * pad) * Math.min(e, top) / top;
    scene.segments.forEach((s, i) => {
      pctx.fillStyle = i % 2 ? "#eef2f7" : "#f8fafc";
      pctx.fillRect(x(s.start_step), 0, x(s.end_step) - x(s.start_step), h);
      pctx.fillStyle = "#667"; pctx.font = `${10 * ratio}px system-ui, sans-serif`; pctx.textAlign = "left";
      if (scene.segments.length > 1) pctx.fillText(s.name, x(s.start_step) + 3 * ratio, 12 * ratio);
    });
    if (scene.target_pose_error_m) {
      pctx.strokeStyle = "#9a9"; pctx.setLineDash([4 * ratio, 3 * ratio]); pctx.lineWidth = ratio;
      pctx.beginPath(); pctx.moveTo(pad, y(scene.target_pose_error_m)); pctx.lineTo(w - pad, y(scene.target_pose_error_m)); pctx.stroke();
      pctx.setLineDash([]);
    }
    pctx.strokeStyle = "#3b7dd8"; pctx.lineWidth = 1.5 * ratio;
    pctx.beginPath();
    errs.forEach((e, i) => { const px = x(i + 1), py = y(Number.isFinite(e) ? e : top); if (i) pctx.lineTo(px, py); else pctx.moveTo(px, py); });
    pctx.stroke();
    if (scene.fell_at_step !== null) {
      pctx.strokeStyle = "#c0504d"; pctx.lineWidth = 2 * ratio;
      pctx.beginPath(); pctx.moveTo(x(scene.fell_at_step + 1), 0); pctx.lineTo(x(scene.fell_at_step + 1), h); pctx.stroke();
    }
    pctx.strokeStyle = "#222"; pctx.lineWidth = ratio;
    pctx.beginPath(); pctx.moveTo(x(view.frame), 0); pctx.lineTo(x(view.frame), h); pctx.stroke();
    pctx.fillStyle = "#445"; pctx.textAlign = "right"; pctx.font = `${10 * ratio}px system-ui, sans-serif`;
    pctx.fillText(`pose error (max ${(top * 100).toFixed(0)} cm)`, w - pad, h - pad);
  }

  // ---- playback and input --------------------------------------------------------------------
  let last = null;
  function tick(now) {
    try {
      if (last === null) last = now;
      const dt = Math.min(0.1, (now - last) / 1000);
      last = now;
      if (view.playing) {
        view.time = (view.time + dt * view.speed) % (T / scene.fps);
        view.frame = Math.min(T - 1, Math.floor(view.time * scene.fps));
      }
      drawScene();
    } catch (err) {
      recordError(err && err.stack ? err.stack : err);
      return;
    }
    window.requestAnimationFrame(tick);
  }
  function seek(frame) {
    view.frame = Math.max(0, Math.min(T - 1, frame));
    view.time = view.frame / scene.fps;
    if (!view.playing) drawScene();
  }
  function setPlaying(playing) {
    view.playing = playing;
    playButton.textContent = playing ? "Pause" : "Play";
  }
  playButton.addEventListener("click", () => setPlaying(!view.playing));
  slider.addEventListener("input", () => { setPlaying(false); seek(parseInt(slider.value, 10)); });
  speedSelect.addEventListener("change", () => { view.speed = parseFloat(speedSelect.value); });
  refSelect.addEventListener("change", () => { view.refMode = refSelect.value; if (!view.playing) drawScene(); });
  followBox.addEventListener("change", () => { view.follow = followBox.checked; });
  plot.addEventListener("click", (e) => {
    const rect = plot.getBoundingClientRect();
    setPlaying(false);
    seek(Math.round((e.clientX - rect.left) / rect.width * (T - 1)));
  });
  window.addEventListener("keydown", (e) => {
    if (e.target && e.target.tagName === "SELECT") return;
    if (e.key === " ") { setPlaying(!view.playing); e.preventDefault(); }
    else if (e.key === "ArrowRight") { setPlaying(false); seek(view.frame + 1); }
    else if (e.key === "ArrowLeft") { setPlaying(false); seek(view.frame - 1); }
  });
  let drag = null;
  canvas.addEventListener("pointerdown", (e) => { drag = [e.clientX, e.clientY]; canvas.setPointerCapture(e.pointerId); });
  canvas.addEventListener("pointerup", () => { drag = null; });
  canvas.addEventListener("pointermove", (e) => {
    if (!drag) return;
    view.yaw -= (e.clientX - drag[0]) * 0.01;
    view.pitch = Math.max(0.05, Math.min(1.4, view.pitch + (e.clientY - drag[1]) * 0.01));
    drag = [e.clientX, e.clientY];
    if (!view.playing) drawScene();
  });
  canvas.addEventListener("wheel", (e) => {
    view.dist = Math.max(1, Math.min(30, view.dist * Math.exp(e.deltaY * 0.001)));
    e.preventDefault();
    if (!view.playing) drawScene();
  }, { passive: false });
  window.addEventListener("resize", () => { if (!view.playing) drawScene(); });

  drawScene();
  window.requestAnimationFrame(tick);
})();
