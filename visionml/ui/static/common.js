// What visionml's two pages share: the palette and the drawing of boxes, polygons and heat maps
// over an image. Plain JavaScript (no build step); everything lives under window.VML.
"use strict";

window.VML = (function () {
  // Okabe and Ito's colour-blind-safe palette; yellow last among the light ones (it is faint on pale images).
  const PALETTE = ["#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#0072B2", "#D55E00", "#F0E442", "#999999"];
  // Ground truth solid, predictions dashed; a missed object dotted: readable without colour too.
  const DASH = { gt: "", tp: "6 3", fp: "2 3", ignored: "1 4", pred: "6 3", missed: "1 2" };
  const SVG_NS = "http://www.w3.org/2000/svg";

  function colour(label, labels) {
    const index = labels.indexOf(label);
    return PALETTE[(index < 0 ? hashCode(String(label)) : index) % PALETTE.length];
  }

  function hashCode(text) {
    let h = 0;
    for (const ch of text) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
    return h;
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svgEl(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    return node;
  }

  // Draw `items` over an image of width x height pixels. Each item: {label, box: [x0, y0, x1, y1]
  // normalised, polygon?: [[x, y, ...], ...] normalised, kind: "gt"|"tp"|"fp"|"ignored"|"pred"|"missed",
  // score?}. Boxes get class "box" (one element per drawn box), polygons class "shape".
  function drawOverlay(svg, width, height, items, labels, options) {
    const opts = Object.assign({ text: true }, options || {});
    svg.replaceChildren();
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("preserveAspectRatio", "none");
    const fontSize = Math.max(8, Math.round(Math.max(width, height) / 28));
    for (const item of items) {
      const stroke = colour(item.label, labels);
      const [x0, y0, x1, y1] = item.box;
      const x = x0 * width, y = y0 * height, w = Math.max(0, (x1 - x0) * width), h = Math.max(0, (y1 - y0) * height);
      const group = svgEl("g", { class: `item ${item.kind}`, "data-label": item.label });
      if (item.polygon) {
        for (const segment of item.polygon) {
          const points = [];
          for (let i = 0; i + 1 < segment.length; i += 2) points.push(`${segment[i] * width},${segment[i + 1] * height}`);
          group.append(svgEl("polygon", { class: "shape", points: points.join(" "), fill: stroke, stroke: stroke,
            "stroke-width": 1.5, "vector-effect": "non-scaling-stroke", "stroke-dasharray": DASH[item.kind] || "" }));
        }
      }
      group.append(svgEl("rect", { class: "halo", x, y, width: w, height: h, "stroke-width": 4,
        "vector-effect": "non-scaling-stroke" }));
      const rect = svgEl("rect", { class: `box ${item.kind}`, x, y, width: w, height: h, stroke: stroke,
        "stroke-width": item.kind === "missed" ? 3 : 2, "vector-effect": "non-scaling-stroke",
        "stroke-dasharray": DASH[item.kind] || "" });
      const title = svgEl("title", {});
      title.textContent = describe(item);
      rect.append(title);
      group.append(rect);
      if (opts.text) {
        const text = svgEl("text", { x: x + 2, y: Math.max(fontSize, y - 3), "font-size": fontSize,
          "stroke-width": Math.max(1, fontSize / 6) });
        text.textContent = describe(item);
        group.append(text);
      }
      svg.append(group);
    }
  }

  function describe(item) {
    const words = { tp: "", fp: " FP", ignored: " (crowd)", missed: " missed", gt: "", pred: "" };
    const score = item.score === undefined ? "" : ` ${item.score.toFixed(2)}`;
    return `${item.label}${score}${words[item.kind] || ""}`;
  }

  // Viridis (perceptually uniform and colour-blind-safe), 9 stops, interpolated.
  const VIRIDIS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
    [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];

  function heatColour(v) {
    const t = Math.min(1, Math.max(0, v)) * (VIRIDIS.length - 1);
    const i = Math.min(VIRIDIS.length - 2, Math.floor(t));
    const f = t - i;
    return VIRIDIS[i].map((c, k) => Math.round(c + f * (VIRIDIS[i + 1][k] - c)));
  }

  // Paint attributions [3][H][W] into `canvas` as a heat map in [0, 1]: |values| summed over the
  // channels, scaled to the 99th percentile (XRAI: its region scores, min to max), as the server's
  // own visualization scales them. Cold pixels are transparent so the image shows through.
  function drawHeatmap(canvas, attributions, algorithm) {
    const channels = attributions, height = channels[0].length, width = channels[0][0].length;
    const heat = new Float32Array(width * height);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        heat[y * width + x] = algorithm === "xrai" ? channels[0][y][x]
          : Math.abs(channels[0][y][x]) + Math.abs(channels[1][y][x]) + Math.abs(channels[2][y][x]);
      }
    }
    const sorted = Float32Array.from(heat).sort();
    const low = sorted[0];
    const high = algorithm === "xrai" ? sorted[sorted.length - 1] : sorted[Math.floor(0.99 * (sorted.length - 1))];
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext("2d");
    const pixels = ctx.createImageData(width, height);
    for (let i = 0; i < heat.length; i++) {
      const v = high > low ? Math.min(1, Math.max(0, (heat[i] - low) / (high - low))) : 0;
      const [r, g, b] = heatColour(v);
      pixels.data.set([r, g, b, Math.round(255 * (0.15 + 0.85 * v))], i * 4);
    }
    ctx.putImageData(pixels, 0, 0);
    canvas.hidden = false;
  }

  async function getJSON(url) {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return response.json();
  }

  return { PALETTE, colour, el, svgEl, drawOverlay, describe, drawHeatmap, heatColour, getJSON };
})();
