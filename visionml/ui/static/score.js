// The scoring page of `visionml serve` (GET /ui): each dropped or chosen image is sent to POST /score
// in Azure's request format and its answer drawn. The threshold slider redraws from the answers
// already here; an explanation is one more /score request with model_explainability.
"use strict";

(function () {
  const { el, drawOverlay, drawHeatmap, colour } = window.VML;
  const KEY = "visionml-api-key"; // sessionStorage: this tab only, gone when it closes
  const $ = (id) => document.getElementById(id);
  let config = null;
  let pendingKey = null; // resolves when the user submits the key form
  const results = [];

  async function loadConfig() {
    for (;;) {
      const response = await fetch("/ui/config.json");
      if (response.ok) return response.json();
      const body = await response.json().catch(() => ({}));
      if (body.error) throw new Error(`the model failed to load: ${body.error}`);
      $("model-info").textContent = "The model is still loading...";
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  function describeModel() {
    const parts = [`${config.model_name} (${config.task})`];
    if (config.objects) parts.push(`boxes at or above ${config.box_score_threshold} are returned`);
    if (config.api_key_required) parts.push("API key required");
    $("model-info").textContent = parts.join("; ");
    if (config.objects) {
      const slider = $("threshold");
      slider.value = String(config.box_score_threshold);
      $("threshold-value").textContent = Number(slider.value).toFixed(2);
      $("threshold-control").hidden = false;
      $("legend").hidden = false;
      $("legend").replaceChildren(el("span", {}, "Boxes: label and score; dashed outline = predicted."));
    }
    if (config.explainable) {
      const select = $("algorithm");
      for (const name of config.algorithms) select.append(el("option", { value: name }, name.replace(/_/g, " ")));
      $("explain-control").hidden = false;
    }
  }

  // ---- the API key, asked once per tab ------------------------------------------------------
  function askKey(message) {
    $("key-error").textContent = message || "";
    $("key-form").hidden = false;
    $("api-key").focus();
    if (!pendingKey) {
      let resolve;
      const promise = new Promise((r) => { resolve = r; });
      pendingKey = { promise, resolve };
    }
    return pendingKey.promise;
  }

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY, key);
    $("api-key").value = "";
    $("key-form").hidden = true;
    if (pendingKey) { pendingKey.resolve(key); pendingKey = null; }
  });

  async function score(items) {
    for (;;) {
      let key = sessionStorage.getItem(KEY);
      if (config.api_key_required && !key) key = await askKey();
      const headers = { "Content-Type": "application/json" };
      if (key) headers.Authorization = `Bearer ${key}`;
      const response = await fetch("/score", { method: "POST", headers,
        body: JSON.stringify({ input_data: { columns: ["image"], data: items } }) });
      if (response.status === 401) {
        sessionStorage.removeItem(KEY);
        await askKey("The server refused that key: enter it again.");
        continue;
      }
      const body = await response.json();
      if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
      return body[0];
    }
  }

  // ---- images in --------------------------------------------------------------------------
  function readBase64(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(file);
    });
  }

  async function addFiles(files) {
    const list = Array.from(files).filter((f) => f.type.startsWith("image/") || /\.(jpe?g|png|bmp|gif|webp|tiff?)$/i.test(f.name));
    if (!list.length) { $("status").textContent = "No image among the files given."; return; }
    for (const [n, file] of list.entries()) {
      $("status").textContent = `Scoring ${file.name} (${n + 1} of ${list.length})...`;
      const result = makeResult(file);
      try {
        result.b64 = await readBase64(file);
        result.answer = await score([result.b64]);
        result.node.dataset.state = "scored";
        render(result);
      } catch (error) {
        result.node.dataset.state = "failed";
        result.node.querySelector(".message").textContent = `Not scored: ${error.message}`;
      }
    }
    $("status").textContent = `Scored ${list.length} image(s).`;
  }

  function makeResult(file) {
    const node = el("article", { class: "result", "data-name": file.name, "data-state": "sending" });
    const figure = el("div", { class: "figure" });
    const img = el("img", { alt: file.name });
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("class", "overlay");
    svg.setAttribute("role", "img");
    const canvas = el("canvas", { class: "heatmap", hidden: true, "aria-label": "explanation heat map" });
    figure.append(img, svg, canvas);
    node.append(el("h3", {}, file.name), figure, el("p", { class: "message", role: "status" }), el("div", { class: "details" }));
    $("results").prepend(node);
    const result = { file, node, img, svg, canvas, url: URL.createObjectURL(file) };
    img.src = result.url;
    result.loaded = new Promise((resolve) => { img.onload = resolve; img.onerror = resolve; });
    results.push(result);
    return result;
  }

  // ---- drawing ----------------------------------------------------------------------------
  async function render(result) {
    await result.loaded;
    const { img } = result;
    result.node.querySelector(".figure").style.aspectRatio = `${img.naturalWidth} / ${img.naturalHeight}`;
    if (config.objects) renderBoxes(result); else renderClasses(result);
    result.node.dataset.state = "drawn";
  }

  function threshold() { return Number($("threshold").value); }

  function renderBoxes(result) {
    const boxes = result.answer.boxes || [];
    const shown = boxes.filter((b) => b.score >= threshold());
    const labels = Array.from(new Set(boxes.map((b) => b.label))).sort();
    const items = shown.map((b) => ({ label: b.label, score: b.score, polygon: b.polygon, kind: "pred",
      box: [b.box.topX, b.box.topY, b.box.bottomX, b.box.bottomY] }));
    drawOverlay(result.svg, result.img.naturalWidth, result.img.naturalHeight, items, labels);
    result.svg.setAttribute("aria-label", `${shown.length} boxes drawn`);
    result.node.dataset.boxes = String(shown.length);
    result.node.querySelector(".message").textContent =
      `${shown.length} of ${boxes.length} boxes at or above ${threshold().toFixed(2)}`;
    const table = el("table", { class: "boxes" });
    table.append(el("caption", { class: "visually-hidden" }, `boxes of ${result.file.name}`));
    const head = el("tr");
    for (const name of ["label", "score", "box (topX, topY, bottomX, bottomY)"]) head.append(el("th", { scope: "col" }, name));
    table.append(head);
    for (const b of shown) {
      const row = el("tr");
      const swatch = el("span", { class: "swatch dashed", style: `border-color: ${colour(b.label, labels)}` });
      const name = el("td");
      name.append(swatch, document.createTextNode(b.label));
      row.append(name, el("td", { class: "number" }, b.score.toFixed(3)),
        el("td", {}, [b.box.topX, b.box.topY, b.box.bottomX, b.box.bottomY].map((v) => v.toFixed(3)).join(", ")));
      table.append(row);
    }
    result.node.querySelector(".details").replaceChildren(table);
  }

  function renderClasses(result) {
    const { probs, labels } = result.answer;
    const order = probs.map((p, i) => i).sort((a, b) => probs[b] - probs[a]);
    const list = el("ol", { class: "probs", "aria-label": "class probabilities, highest first" });
    for (const [rank, i] of order.entries()) {
      const item = el("li");
      const bar = el("div", { class: rank === 0 ? "bar top" : "bar", style: `width: ${(probs[i] * 100).toFixed(1)}%` });
      item.append(el("span", {}, labels[i]), bar, el("span", { class: "number" }, probs[i].toFixed(3)));
      list.append(item);
    }
    result.node.querySelector(".message").textContent = config.multilabel
      ? `classes at or above 0.5: ${order.filter((i) => probs[i] >= 0.5).map((i) => labels[i]).join(", ") || "none"}`
      : `${labels[order[0]]} (${probs[order[0]].toFixed(3)})`;
    const details = result.node.querySelector(".details");
    details.replaceChildren(list);
    if (config.explainable) {
      const button = el("button", { type: "button", class: "explain" }, "Explain");
      button.addEventListener("click", () => explain(result, button));
      details.append(button, el("p", { class: "explain-status", role: "status" }), el("div", { class: "visualization" }));
    }
  }

  async function explain(result, button) {
    const algorithm = $("algorithm").value;
    const status = result.node.querySelector(".explain-status");
    button.disabled = true;
    status.textContent = `Explaining with ${algorithm.replace(/_/g, " ")}...`;
    try {
      const item = JSON.stringify({ image_base64: result.b64, model_explainability: true,
        xai_parameters: { xai_algorithm: algorithm, visualizations: true, attributions: true } });
      const answer = await score([item]);
      const attributions = config.multilabel ? answer.attributions : [answer.attributions];
      const pictures = config.multilabel ? answer.visualizations : [answer.visualizations];
      if (!attributions || !attributions.length) {
        status.textContent = "No class is above the threshold: nothing to explain.";
        return;
      }
      placeHeatmap(result);
      drawHeatmap(result.canvas, attributions[0], algorithm);
      result.node.dataset.explained = algorithm;
      status.textContent = `Heat map over the part of the image the model sees (${algorithm.replace(/_/g, " ")}); ` +
        "bright = most important. The server's own rendering:";
      const box = result.node.querySelector(".visualization");
      box.replaceChildren(...pictures.filter(Boolean).map((b64) => el("img", { src: `data:image/png;base64,${b64}`,
        alt: `explanation by ${algorithm.replace(/_/g, " ")}: the model's input beside its heat map` })));
    } catch (error) {
      status.textContent = `Not explained: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  }

  // The classifier sees the centre crop of the image resized to resize_size (shorter side): the
  // heat map covers that square, not the whole image.
  function placeHeatmap(result) {
    const w = result.img.naturalWidth, h = result.img.naturalHeight;
    const side = Math.min(w, h) * Math.min(1, config.crop_size / config.resize_size);
    const style = result.canvas.style;
    style.left = `${((w - side) / 2 / w) * 100}%`;
    style.top = `${((h - side) / 2 / h) * 100}%`;
    style.width = `${(side / w) * 100}%`;
    style.height = `${(side / h) * 100}%`;
  }

  // ---- wiring -----------------------------------------------------------------------------
  function wire() {
    const drop = $("drop");
    $("file").addEventListener("change", (event) => { addFiles(event.target.files); event.target.value = ""; });
    for (const name of ["dragenter", "dragover"]) {
      drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("over"); });
    }
    for (const name of ["dragleave", "drop"]) drop.addEventListener(name, () => drop.classList.remove("over"));
    drop.addEventListener("drop", (event) => { event.preventDefault(); addFiles(event.dataTransfer.files); });
    $("threshold").addEventListener("input", () => {
      $("threshold-value").textContent = threshold().toFixed(2);
      for (const result of results) if (result.answer) renderBoxes(result);
    });
  }

  async function start() {
    wire();
    try {
      config = await loadConfig();
    } catch (error) {
      $("model-info").textContent = error.message;
      return;
    }
    describeModel();
    if (config.api_key_required && !sessionStorage.getItem(KEY)) askKey();
    document.body.dataset.ready = "true";
  }

  start();
})();
