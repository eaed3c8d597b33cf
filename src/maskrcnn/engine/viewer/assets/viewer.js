// The report's image viewer: a grid of thumbnails with the ground truth and the detections drawn over
// them, filtered by class and score, sorted by the image's AP50 or an error kind, one page at a time,
// and a full-size view of one image with the list of its instances.
//
// No library and no server (masks.js decodes the masks): the data come as scripts beside this file (data/index.js sets
// window.MASKRCNN_REPORT; data/images/NNNNNN.js calls MASKRCNN_IMAGE(n, details) when loaded), because
// browsers refuse fetch() on file:// pages but load <script> and <img> from the same folder.
// The view's state lives in the address's #fragment (e.g. #class=circle&score=0.8&sort=ap), so a view
// can be bookmarked or shared, and opened as it is by a headless browser.
"use strict";

(function () {
  const report = window.MASKRCNN_REPORT;
  const kinds = report.error_kinds;
  const defaults = { gt: 1, dt: 1, class: "", score: report.default_score, sort: "order", page: 1, view: 0 };
  let state = Object.assign({}, defaults);
  const details = new Map(); // image number -> its objects and detections (once loaded)
  const waiting = new Map(); // image number -> promise of its details
  let drawing = 0; // grid renders in progress; the page is "ready" when none is

  // -------------------------------------------------------------------------------------------------
  // State <-> the address's fragment

  function readHash() {
    const next = Object.assign({}, defaults);
    const params = new URLSearchParams(window.location.hash.slice(1));
    for (const [key, value] of params) {
      if (!(key in defaults)) continue;
      next[key] = typeof defaults[key] === "number" ? Number(value) : value;
    }
    if (!Number.isFinite(next.score)) next.score = defaults.score;
    if (next.class && !report.classes.includes(next.class)) next.class = "";
    return next;
  }

  function writeHash() {
    const params = new URLSearchParams();
    for (const key of Object.keys(defaults)) {
      if (state[key] !== defaults[key]) params.set(key, String(state[key]));
    }
    const hash = params.toString();
    history.replaceState(null, "", hash ? "#" + hash : window.location.pathname + window.location.search);
  }

  // -------------------------------------------------------------------------------------------------
  // Colours and masks

  function classColor(c) {
    const hue = (c * 137.508 + 20) % 360; // the golden angle: neighbouring classes far apart
    return [hue, `hsl(${hue.toFixed(0)}, 85%, 50%)`];
  }

  function rgb(hue) {
    // HSL (s 85%, l 50%) to RGB bytes, for painting masks into pixel buffers.
    const s = 0.85, l = 0.5;
    const a = s * Math.min(l, 1 - l);
    const f = (n) => {
      const k = (n + hue / 30) % 12;
      return Math.round(255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
    };
    return [f(0), f(8), f(4)];
  }

  // -------------------------------------------------------------------------------------------------
  // What is shown

  function classIndex() {
    return state.class ? report.classes.indexOf(state.class) : -1;
  }

  function shownObjects(items) {
    const c = classIndex();
    return state.gt ? items.filter((o) => c < 0 || o.c === c) : [];
  }

  function shownDetections(items) {
    const c = classIndex();
    return state.dt ? items.filter((d) => d.s >= state.score && (c < 0 || d.c === c)) : [];
  }

  function counts(image) {
    const c = classIndex();
    const objects = state.gt ? image.gt.filter((k) => c < 0 || k === c).length : 0;
    const dets = state.dt ? image.dt.filter(([k, s]) => s >= state.score && (c < 0 || k === c)).length : 0;
    return [objects, dets];
  }

  function selected() {
    const c = classIndex();
    let list = report.images.map((image, i) => [i + 1, image]);
    if (c >= 0) {
      list = list.filter(([, image]) =>
        image.gt.includes(c) || image.dt.some(([k, s]) => k === c && s >= state.score));
    }
    const errors = (image) => (image.summary ? kinds.reduce((n, k) => n + image.summary[k], 0) : 0);
    const by = {
      order: null,
      ap: (a, b) => apKey(a, 1) - apKey(b, 1) || errors(b) - errors(a),
      "ap-desc": (a, b) => apKey(b, -1) - apKey(a, -1),
      objects: (a, b) => b.gt.length - a.gt.length,
      problems: (a, b) => (b.problems ? b.problems.length : 0) - (a.problems ? a.problems.length : 0),
    };
    for (const kind of kinds) by[kind] = (a, b) => (b.summary ? b.summary[kind] : 0) - (a.summary ? a.summary[kind] : 0);
    const compare = by[state.sort];
    if (compare) list.sort((x, y) => compare(x[1], y[1]) || x[0] - y[0]);
    return list;
  }

  function apKey(image, direction) {
    // Images without an AP50 (no objects) go last in either order.
    const ap = image.summary ? image.summary.AP50 : null;
    return ap === null || ap === undefined ? direction * Infinity : ap;
  }

  // -------------------------------------------------------------------------------------------------
  // Loading an image's details

  function number(n) {
    return String(n).padStart(6, "0");
  }

  window.MASKRCNN_IMAGE = function (n, data) {
    details.set(n, data);
  };

  function load(n) {
    if (details.has(n)) return Promise.resolve(details.get(n));
    if (!waiting.has(n)) {
      waiting.set(n, new Promise((resolve) => {
        const script = document.createElement("script");
        script.src = `data/images/${number(n)}.js`;
        script.onload = () => resolve(details.get(n) || { objects: [], detections: [] });
        script.onerror = () => resolve({ objects: [], detections: [], missing: true });
        document.head.appendChild(script);
      }));
    }
    return waiting.get(n);
  }

  function loadImage(src) {
    return new Promise((resolve) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => resolve(null);
      img.src = src;
    });
  }

  // -------------------------------------------------------------------------------------------------
  // Drawing

  function drawInstances(ctx, image, data, scale, options) {
    const fontSize = options.fontSize;
    ctx.font = `${fontSize}px sans-serif`;
    ctx.lineWidth = options.lineWidth;
    const layers = [];
    for (const o of shownObjects(data.objects)) layers.push([o, true]);
    for (const d of shownDetections(data.detections)) layers.push([d, false]);
    for (const [item, isObject] of layers) {
      const [hue, css] = classColor(item.c);
      const faded = options.highlight && options.highlight !== item;
      if (item.m) {
        const mask = MaskrcnnMasks.maskCanvas(item.m, image.h, scale, ctx.canvas.width, ctx.canvas.height, rgb(hue));
        ctx.globalAlpha = faded ? 0.08 : isObject ? 0.25 : 0.45;
        ctx.drawImage(mask, 0, 0);
        ctx.globalAlpha = 1;
      }
      const [x, y, w, h] = item.b.map((v) => v * scale);
      ctx.strokeStyle = css;
      ctx.globalAlpha = faded ? 0.3 : 1;
      ctx.setLineDash(isObject ? [4, 3] : []);
      ctx.strokeRect(x, y, w, h);
      ctx.setLineDash([]);
      if (options.labels) {
        const text = isObject ? report.classes[item.c] : `${report.classes[item.c]} ${item.s.toFixed(2)}`;
        const width = ctx.measureText(text).width + 4;
        ctx.fillStyle = css;
        ctx.fillRect(x, Math.max(0, y - fontSize - 2), width, fontSize + 2);
        ctx.fillStyle = "#000";
        ctx.fillText(text, x + 2, Math.max(fontSize - 1, y - 3));
      }
      ctx.globalAlpha = 1;
    }
  }

  async function drawCard(card, n, image) {
    const canvas = card.querySelector("canvas");
    const [data, picture] = await Promise.all([load(n), image.thumb ? loadImage(image.thumb) : null]);
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#ddd";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    if (picture) ctx.drawImage(picture, 0, 0, canvas.width, canvas.height);
    drawInstances(ctx, image, data, canvas.width / (image.w || canvas.width), { fontSize: 10, lineWidth: 1.5, labels: false });
  }

  function cardText(image, shown) {
    const parts = [];
    if (image.summary) {
      const ap = image.summary.AP50;
      parts.push(`AP50 ${ap === null || ap === undefined ? "-" : (100 * ap).toFixed(0)}`);
    }
    parts.push(`${shown[0]} objects`);
    if (report.mode === "evaluation") parts.push(`${shown[1]} detections`);
    return parts.join(" · ");
  }

  function badges(image) {
    if (!image.summary) return "";
    const shown = kinds
      .filter((k) => image.summary[k] > 0)
      .map((k) => `<span class="badge ${k}" title="${k} (at any score)">${k.slice(0, 3)} ${image.summary[k]}</span>`)
      .join("");
    return shown ? `<span class="kinds">${shown}</span>` : "";
  }

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }

  async function render() {
    writeHash();
    syncControls();
    const list = selected();
    const pages = Math.max(1, Math.ceil(list.length / report.page_size));
    if (state.page > pages || state.page < 1) state.page = Math.min(Math.max(1, state.page), pages);
    const first = (state.page - 1) * report.page_size;
    const shown = list.slice(first, first + report.page_size);
    const grid = document.getElementById("grid");
    grid.textContent = "";
    let objects = 0, dets = 0;
    const jobs = [];
    for (const [n, image] of shown) {
      const count = counts(image);
      objects += count[0];
      dets += count[1];
      const card = document.createElement("figure");
      card.className = "card" + (image.problems ? " problem" : "");
      card.dataset.image = String(n);
      card.dataset.objects = String(count[0]);
      card.dataset.detections = String(count[1]);
      // An image that could not be read has no size: a square of grey.
      const [w, h] = [image.w || report.thumb_size, image.h || report.thumb_size];
      const scale = Math.min(report.thumb_size / w, report.thumb_size / h, 1);
      card.innerHTML =
        `<canvas width="${Math.max(1, Math.round(w * scale))}" height="${Math.max(1, Math.round(h * scale))}"></canvas>` +
        `<figcaption><span class="name" title="${escapeHtml(image.name)}">${escapeHtml(image.name)}</span>` +
        `<span class="counts">${cardText(image, count)}</span>${badges(image)}` +
        (image.problems ? `<span class="problems">${image.problems.map(escapeHtml).join("<br>")}</span>` : "") +
        "</figcaption>";
      card.addEventListener("click", () => openView(n));
      grid.appendChild(card);
      jobs.push(drawCard(card, n, image));
    }
    const status = document.getElementById("shown");
    status.dataset.images = String(list.length);
    status.dataset.page = String(state.page);
    status.dataset.pages = String(pages);
    status.dataset.objects = String(objects);
    status.dataset.detections = String(dets);
    status.textContent =
      `${list.length} of ${report.images.length} images` +
      (list.length ? ` · showing ${first + 1}-${first + shown.length}` : "") +
      ` · page ${state.page} of ${pages}`;
    document.getElementById("previous").disabled = state.page <= 1;
    document.getElementById("next").disabled = state.page >= pages;
    drawing++;
    document.body.dataset.state = "drawing";
    await Promise.all(jobs);
    if (state.view) await openView(state.view);
    if (--drawing === 0) document.body.dataset.state = "ready";
  }

  // -------------------------------------------------------------------------------------------------
  // The full-size view

  async function openView(n, highlight) {
    const image = report.images[n - 1];
    if (!image) return;
    state.view = n;
    writeHash();
    const view = document.getElementById("view");
    view.hidden = false;
    view.querySelector("h2").textContent = image.name;
    const [data, picture] = await Promise.all([load(n), loadImage(image.view || image.thumb || "")]);
    const canvas = view.querySelector("canvas");
    const [w, h] = [image.w || report.thumb_size, image.h || report.thumb_size];
    // Small images enlarged to about 640 px, large ones fit to the window's width.
    const scale = Math.min(Math.max(1, 640 / Math.max(w, h)), Math.max(200, window.innerWidth - 80) / w);
    canvas.width = Math.max(1, Math.round(w * scale));
    canvas.height = Math.max(1, Math.round(h * scale));
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#ddd";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    if (picture) ctx.drawImage(picture, 0, 0, canvas.width, canvas.height);
    drawInstances(ctx, image, data, scale, { fontSize: 13, lineWidth: 2, labels: true, highlight });
    instanceTable(view.querySelector("tbody"), n, image, data, highlight);
    view.querySelector(".summary").innerHTML =
      `${image.w} x ${image.h} px · ${cardText(image, counts(image))} ${badges(image)}` +
      (image.problems ? `<div class="problems">${image.problems.map(escapeHtml).join("<br>")}</div>` : "") +
      (data.missing ? `<div class="problems">the details of this image are missing from the report</div>` : "");
  }

  function instanceTable(body, n, image, data, highlight) {
    body.textContent = "";
    const rows = [];
    for (const d of shownDetections(data.detections)) rows.push([d, "detection"]);
    for (const o of shownObjects(data.objects)) rows.push([o, "object"]);
    for (const [item, what] of rows) {
      const tr = document.createElement("tr");
      if (item === highlight) tr.className = "highlight";
      const [, css] = classColor(item.c);
      let outcome = "";
      if (what === "detection") outcome = item.k === "tp" ? "true positive" : item.k || "beyond the 100 best";
      else if (item.crowd) outcome = "crowd region";
      else if (item.found !== undefined) outcome = item.found ? "found" : "missed";
      const iou = item.iou === null || item.iou === undefined ? "" : item.iou.toFixed(2);
      tr.innerHTML =
        `<td>${what}</td><td><span class="swatch" style="background:${css}"></span>${escapeHtml(report.classes[item.c])}</td>` +
        `<td>${what === "detection" ? item.s.toFixed(3) : ""}</td><td class="${item.k || ""}">${outcome}</td><td>${iou}</td>` +
        `<td>${item.b.map((v) => v.toFixed(0)).join(", ")}</td>`;
      tr.addEventListener("click", () => openView(n, item === highlight ? undefined : item));
      body.appendChild(tr);
    }
  }

  function closeView() {
    document.getElementById("view").hidden = true;
    state.view = 0;
    writeHash();
  }

  // -------------------------------------------------------------------------------------------------
  // Controls

  function syncControls() {
    document.getElementById("show-gt").checked = !!state.gt;
    document.getElementById("show-dt").checked = !!state.dt;
    document.getElementById("class").value = state.class;
    document.getElementById("score").value = String(state.score);
    document.getElementById("score-value").textContent = Number(state.score).toFixed(2);
    document.getElementById("sort").value = state.sort;
  }

  function setup() {
    const classSelect = document.getElementById("class");
    for (const name of report.classes) {
      const option = document.createElement("option");
      option.value = option.textContent = name;
      classSelect.appendChild(option);
    }
    const sort = document.getElementById("sort");
    const sorts = report.mode === "evaluation"
      ? [["ap", "AP50, worst first"], ["ap-desc", "AP50, best first"], ...kinds.map((k) => [k, `most ${k} errors`])]
      : [["objects", "most objects"], ["problems", "problems first"]];
    for (const [value, text] of sorts) {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = text;
      sort.appendChild(option);
    }
    const change = (key, value) => {
      state[key] = value;
      if (key !== "page") state.page = 1;
      render();
    };
    document.getElementById("show-gt").addEventListener("change", (e) => change("gt", e.target.checked ? 1 : 0));
    document.getElementById("show-dt").addEventListener("change", (e) => change("dt", e.target.checked ? 1 : 0));
    classSelect.addEventListener("change", (e) => change("class", e.target.value));
    document.getElementById("score").addEventListener("input", (e) => change("score", Number(e.target.value)));
    sort.addEventListener("change", (e) => change("sort", e.target.value));
    document.getElementById("previous").addEventListener("click", () => change("page", state.page - 1));
    document.getElementById("next").addEventListener("click", () => change("page", state.page + 1));
    document.getElementById("close").addEventListener("click", closeView);
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape") closeView();
    });
    window.addEventListener("hashchange", () => {
      state = readHash();
      if (!state.view) document.getElementById("view").hidden = true;
      render();
    });
    if (report.mode !== "evaluation") {
      for (const id of ["dt-control", "score-control"]) document.getElementById(id).hidden = true;
    }
    state = readHash();
    render();
  }

  setup();
})();
