// The page of `visionml view`: one JSON document (/api/dataset) drawn as a grid of thumbnails with
// the ground truth (and the model's answers), the problems by FILE:LINE, the confusion matrix,
// the likely label mistakes and the audit. Thumbnails load as they scroll into view.
"use strict";

(function () {
  const { el, drawOverlay, getJSON } = window.VML;
  const $ = (id) => document.getElementById(id);
  const PAGE = 120; // tiles added at a time
  let doc = null;
  let labels = [];
  let byWhere = new Map();
  let filtered = [];
  let shown = 0;

  // ---- drawing one image's labels and answers ----------------------------------------------
  function drawnItems(image, withPredictions) {
    const items = [];
    const scored = Boolean(doc.predictions) && image.found !== undefined;
    (image.objects || []).forEach((o, k) => {
      const missed = scored && !image.found[k];
      items.push({ label: o.crowd ? `${o.label} (crowd)` : o.label, box: o.box, polygon: o.polygon,
        kind: missed ? "missed" : "gt" });
    });
    if (withPredictions && image.predictions) {
      for (const p of image.predictions) items.push({ label: p.label, box: p.box, polygon: p.polygon, score: p.score, kind: p.outcome });
    }
    return items;
  }

  function withPredictions() { return Boolean(doc.predictions) && $("show-predictions").checked; }

  function describeImage(image) {
    const parts = [image.where];
    if (image.label !== undefined) parts.push(`label: ${Array.isArray(image.label) ? image.label.join(", ") || "none" : image.label}`);
    if (image.objects) parts.push(`${image.objects.length} labelled object(s)`);
    if (image.prediction) parts.push(`predicted: ${image.prediction.label ?? image.prediction.labels.join(", ")}`);
    if (image.outcome && image.outcome.tp !== undefined) {
      parts.push(`${image.outcome.tp} true positive(s), ${image.outcome.fp} false positive(s), ${image.outcome.missed} missed`);
    }
    if (image.flags.length) parts.push(`flags: ${image.flags.join(", ")}`);
    return parts.join("; ");
  }

  function badges(image) {
    const box = el("span", { class: "badges" });
    if (image.label !== undefined) {
      const text = Array.isArray(image.label) ? image.label.join(", ") || "(none)" : String(image.label);
      box.append(el("span", { class: "badge" }, text));
    }
    if (image.prediction) {
      const good = image.outcome.correct;
      const said = image.prediction.label ?? image.prediction.labels.join(", ");
      const score = image.prediction.score !== undefined ? ` ${image.prediction.score.toFixed(2)}` : "";
      box.append(el("span", { class: `badge ${good ? "good" : "bad"}` }, `${good ? "right" : "wrong"}: ${said}${score}`));
    }
    if (image.outcome && image.outcome.tp !== undefined) {
      box.append(el("span", { class: "badge good" }, `TP ${image.outcome.tp}`));
      if (image.outcome.fp) box.append(el("span", { class: "badge bad" }, `FP ${image.outcome.fp}`));
      if (image.outcome.missed) box.append(el("span", { class: "badge bad" }, `missed ${image.outcome.missed}`));
    }
    if (image.problems.length) box.append(el("span", { class: "badge bad" }, `${image.problems.length} problem(s)`));
    if (image.missing) box.append(el("span", { class: "badge bad" }, "no prediction"));
    return box;
  }

  function figure(image, source, text) {
    const box = el("span", { class: "figure" });
    if (image.width && image.height) box.style.aspectRatio = `${image.width} / ${image.height}`;
    const img = el("img", { src: source, alt: "", loading: "lazy", decoding: "async" });
    const svg = VML.svgEl("svg", { class: "overlay", "aria-hidden": "true" });
    box.append(img, svg);
    const draw = () => {
      const w = img.naturalWidth || image.width || 1, h = img.naturalHeight || image.height || 1;
      box.style.aspectRatio = `${w} / ${h}`;
      drawOverlay(svg, w, h, drawnItems(image, withPredictions()), labels, { text });
    };
    img.addEventListener("load", draw);
    img.addEventListener("error", () => { box.classList.add("broken"); box.title = "the image could not be read"; });
    draw();
    return box;
  }

  function tile(image) {
    const button = el("button", { type: "button", class: "tile", "data-id": image.id, "aria-label": describeImage(image) });
    button.append(figure(image, `/api/thumb/${image.id}`, false), el("span", { class: "caption" }, image.where), badges(image));
    button.addEventListener("click", () => openDetail(image.id));
    return button;
  }

  // ---- the grid and its filters --------------------------------------------------------------
  function applyFilters() {
    const cls = $("class-filter").value, flag = $("problem-filter").value;
    filtered = doc.images.filter((im) => (!cls || im.classes.includes(cls) ||
      (im.predictions || []).some((p) => p.label === cls)) && (!flag || im.flags.includes(flag)));
    shown = 0;
    $("grid").replaceChildren();
    showMore();
  }

  function showMore() {
    const next = filtered.slice(shown, shown + PAGE);
    $("grid").append(...next.map(tile));
    shown += next.length;
    $("more").hidden = shown >= filtered.length;
    $("shown-count").textContent = `${filtered.length} of ${doc.images.length} images match; showing ${shown}.`;
  }

  function fillFilters() {
    const cls = $("class-filter"), problem = $("problem-filter");
    const chosen = [cls.value, problem.value];
    cls.replaceChildren(cls.options[0]);
    problem.replaceChildren(problem.options[0]);
    for (const name of labels) cls.append(el("option", { value: name }, name));
    const counts = new Map();
    for (const im of doc.images) for (const f of im.flags) counts.set(f, (counts.get(f) || 0) + 1);
    for (const flag of doc.flags) {
      if (counts.get(flag)) problem.append(el("option", { value: flag }, `${flag} (${counts.get(flag)})`));
    }
    [cls.value, problem.value] = chosen;
    if (cls.selectedIndex < 0) cls.value = "";
    if (problem.selectedIndex < 0) problem.value = "";
  }

  function legend() {
    const parts = [["", "labelled object"]];
    if (doc.predictions && doc.objects) {
      parts.push(["dotted", "labelled object the model missed"], ["dashed", "predicted: true positive (label and score)"],
        ["dotted", "predicted: false positive (marked FP)"]);
    }
    $("legend").replaceChildren(...parts.map(([style, text]) => {
      const item = el("span");
      item.append(el("span", { class: `swatch ${style}`, style: "border-color: #555" }), document.createTextNode(text));
      return item;
    }), el("span", { class: "hint" }, "Colours name classes (a colour-blind-safe palette); line styles name outcomes."));
  }

  // ---- the enlarged view -----------------------------------------------------------------------
  function openDetail(id) {
    const image = doc.images[id];
    const dialog = $("detail");
    $("detail-title").textContent = `${image.where}: ${image.image_url}`;
    const box = $("detail-figure");
    const img = $("detail-image");
    img.alt = describeImage(image);
    const draw = () => {
      box.style.aspectRatio = `${img.naturalWidth} / ${img.naturalHeight}`;
      drawOverlay($("detail-overlay"), img.naturalWidth, img.naturalHeight, drawnItems(image, withPredictions()), labels);
    };
    img.onload = draw;
    img.src = `/api/image/${id}`;
    $("detail-text").replaceChildren(...detailText(image));
    dialog.showModal();
    $("detail-close").focus();
  }

  function detailText(image) {
    const out = [];
    const list = (title, rows) => {
      if (!rows.length) return;
      out.push(el("h3", {}, title));
      const ul = el("ul");
      for (const row of rows) ul.append(el("li", {}, row));
      out.push(ul);
    };
    if (image.label !== undefined) list("Label", [Array.isArray(image.label) ? image.label.join(", ") || "(no class)" : String(image.label)]);
    if (image.objects) {
      list("Labelled objects", image.objects.map((o, k) => `${o.label}${o.crowd ? " (crowd)" : ""}` +
        (image.found ? (image.found[k] ? ": found" : ": missed") : "")));
    }
    if (image.prediction) list("Model", image.prediction.top.map(([name, p]) => `${name}: ${p.toFixed(3)}`));
    if (image.predictions) list("Predicted boxes", image.predictions.map((p) => `${p.label} ${p.score.toFixed(3)}: ${{ tp: "true positive", fp: "false positive", ignored: "on a crowd region (ignored)" }[p.outcome]}`));
    const suspect = doc.predictions && doc.predictions.suspects.find((s) => s.id === image.id);
    if (suspect) list(`Likely label mistake (${suspect.score.toFixed(2)})`, suspect.reasons);
    list("Problems", image.problems);
    if (image.missing) list("Not scored", [image.missing]);
    out.push(el("p", { class: "hint" }, `${image.width || "?"} x ${image.height || "?"} pixels`));
    return out;
  }

  // ---- problems --------------------------------------------------------------------------------
  function problemTable(tableId, noneId, rows, withTraining) {
    const body = $(tableId).querySelector("tbody");
    body.replaceChildren();
    for (const p of rows) {
      const tr = el("tr", { "data-where": p.where });
      tr.append(el("td", {}, p.where), el("td", {}, p.field), el("td", {}, p.reason));
      if (withTraining) tr.append(el("td", {}, p.training));
      const cell = el("td");
      if (p.image !== null && p.image !== undefined) {
        const button = el("button", { type: "button" }, "show");
        button.setAttribute("aria-label", `show the image of ${p.where}`);
        button.addEventListener("click", () => openDetail(p.image));
        cell.append(button);
      } else {
        cell.append(el("span", { class: "hint" }, "line left out"));
      }
      tr.append(cell);
      body.append(tr);
    }
    $(tableId).hidden = rows.length === 0;
    $(noneId).hidden = rows.length > 0;
  }

  // ---- confusion matrix ------------------------------------------------------------------------
  function confusion() {
    const c = doc.predictions.confusion;
    $("confusion-help").textContent = doc.objects
      ? `Rows: the labelled class (last row: predictions that overlap no labelled object); columns: the predicted ` +
        `class (last: missed). Counts are ${c.unit}, matched as visionml evaluate matches them (IoU ` +
        `${doc.predictions.iou_threshold}). Choose a cell to see its images.`
      : `Rows: ${c.row_title}; columns: ${c.column_title}. Counts are ${c.unit}. Choose a cell to see its images.`;
    const table = el("table", { class: "matrix" });
    table.append(el("caption", { class: "visually-hidden" }, "confusion matrix"));
    const head = el("tr");
    head.append(el("th", { scope: "col" }, `${c.row_title} \\ ${c.column_title}`));
    for (const col of c.columns) head.append(el("th", { scope: "col" }, col));
    table.append(head);
    c.rows.forEach((row, r) => {
      const tr = el("tr");
      tr.append(el("th", { scope: "row" }, row));
      c.columns.forEach((col, k) => {
        const count = c.counts[r][k];
        const images = c.images[r][k];
        const td = el("td", { class: row === col ? "diagonal" : "" });
        const button = el("button", { type: "button", "data-row": r, "data-col": k, disabled: count === 0 },
          String(count));
        button.setAttribute("aria-label", `${c.row_title} ${row}, ${c.column_title} ${col}: ${count} ${c.unit}, ${images.length} image(s)`);
        button.addEventListener("click", () => openCell(r, k));
        td.append(button);
        tr.append(td);
      });
      table.append(tr);
    });
    $("confusion").replaceChildren(table);
  }

  function openCell(r, k) {
    const c = doc.predictions.confusion;
    const ids = c.images[r][k];
    $("cell-title").textContent = `${c.row_title} ${c.rows[r]}, ${c.column_title} ${c.columns[k]}: ${ids.length} image(s)`;
    $("cell-grid").replaceChildren(...ids.map((id) => tile(doc.images[id])));
    $("cell-title").focus();
  }

  // ---- likely label mistakes -------------------------------------------------------------------
  function suspects() {
    const list = doc.predictions.suspects;
    $("mistakes-none").hidden = list.length > 0;
    $("suspects").replaceChildren(...list.map((s) => {
      const image = doc.images[s.id];
      const li = el("li", { "data-id": s.id });
      const check = el("input", { type: "checkbox", id: `pick-${s.id}`, value: s.id });
      const label = el("label", { for: `pick-${s.id}`, class: "visually-hidden" }, `select ${image.where} for export`);
      const text = el("div");
      text.append(el("strong", {}, `${image.where} (${s.score.toFixed(2)})`));
      const ul = el("ul");
      for (const reason of s.reasons.slice(0, 6)) ul.append(el("li", {}, reason));
      if (s.reasons.length > 6) ul.append(el("li", {}, `... and ${s.reasons.length - 6} more`));
      text.append(ul);
      const pick = el("div");
      pick.append(check, label);
      li.append(pick, tile(image), text);
      return li;
    }));
  }

  async function exportIds(ids) {
    if (!ids.length) { $("export-status").textContent = "Tick at least one image first."; return; }
    const response = await fetch("/api/export", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ids }) });
    if (!response.ok) { $("export-status").textContent = `Export failed: HTTP ${response.status}`; return; }
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: "relabel.jsonl" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    $("export-status").textContent = `Exported ${ids.length} image(s) as relabel.jsonl.`;
  }

  // ---- audit -----------------------------------------------------------------------------------
  let auditStarted = false;
  async function audit() {
    if (auditStarted) return;
    auditStarted = true;
    $("audit-status").textContent = "Running the audit (perceptual hashes of every image: about a minute per 10,000)...";
    let state;
    for (;;) {
      state = await getJSON("/api/audit");
      if (state.state === "done" || state.state === "failed") break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    if (state.state === "failed") { $("audit-status").textContent = `The audit failed: ${state.error}`; return; }
    const report = state.report;
    $("audit-status").textContent = `${report.near_duplicate_groups} group(s) of near-duplicate images (perceptual ` +
      `hashes within ${report.max_distance} bits). visionml audit --validation-data also finds images in both training and validation.`;
    const groups = el("div");
    for (const group of report.near_duplicates.slice(0, 50)) {
      groups.append(el("h3", {}, group.identical ? "Identical files" : `Near duplicates (up to ${group.max_distance} bits apart)`));
      const grid = el("div", { class: "grid" });
      for (const member of group.images) {
        const id = byWhere.get(member.where);
        if (id !== undefined) grid.append(tile(doc.images[id]));
      }
      groups.append(grid);
    }
    $("audit-duplicates").replaceChildren(groups);
    const alt = { class_balance: "class balance: bar chart of the count per class",
      box_sizes: "histogram of box sizes (square root of the area, pixels)",
      aspect_ratios: "histogram of box aspect ratios (width to height)",
      image_sizes: "scatter plot of image width against height, marker area by number of images" };
    $("audit-figures").replaceChildren(...state.figures.map((name) => {
      const fig = el("figure");
      fig.append(el("img", { src: `/api/audit/${name}.png`, alt: alt[name] || name }), el("figcaption", {}, name.replace(/_/g, " ")));
      return fig;
    }));
  }

  // ---- tabs (arrow keys move between them, as WAI-ARIA's tab pattern) --------------------------
  function tabs() {
    const list = Array.from(document.querySelectorAll('[role="tab"]'));
    const select = (tab) => {
      for (const t of list) {
        const on = t === tab;
        t.setAttribute("aria-selected", String(on));
        t.tabIndex = on ? 0 : -1;
        $(t.getAttribute("aria-controls")).hidden = !on;
      }
      if (tab.id === "tab-audit") audit();
    };
    for (const tab of list) {
      tab.addEventListener("click", () => select(tab));
      tab.addEventListener("keydown", (event) => {
        const visible = list.filter((t) => !t.hidden);
        const i = visible.indexOf(tab);
        const next = { ArrowRight: visible[(i + 1) % visible.length], ArrowLeft: visible[(i - 1 + visible.length) % visible.length],
          Home: visible[0], End: visible[visible.length - 1] }[event.key];
        if (next) { event.preventDefault(); select(next); next.focus(); }
      });
    }
  }

  function summary() {
    const counts = [`${doc.images.length} images`, `${doc.problems.length} problem(s)`, `${doc.warnings.length} warning(s)`];
    $("summary").textContent = `${doc.sources.join(", ")}: ${doc.task || "task unknown"}; ${counts.join(", ")}`;
    if (doc.predictions) {
      const m = doc.predictions.metrics;
      const values = Object.entries(m.values).map(([k, v]) => `${k} ${Number(v).toFixed(3)}`).join(", ");
      $("metrics").textContent = `Predictions: ${doc.predictions.source}. ${values}` +
        (doc.objects ? ` (matched at IoU ${doc.predictions.iou_threshold}, as visionml evaluate)` : "");
    }
  }

  async function start() {
    tabs();
    $("detail-close").addEventListener("click", () => $("detail").close());
    $("more").addEventListener("click", showMore);
    new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && !$("more").hidden) showMore();
    }, { rootMargin: "600px" }).observe($("more"));
    $("class-filter").addEventListener("change", applyFilters);
    $("problem-filter").addEventListener("change", applyFilters);
    $("show-predictions").addEventListener("change", applyFilters);
    try {
      show(await getJSON("/api/dataset"));
      // The lines are shown at once; the images' checks (as training does them) come after.
      if (!doc.checked) show(await getJSON("/api/dataset?checked=1"));
    } catch (error) {
      $("summary").textContent = `Could not load the dataset: ${error.message}`;
      return;
    }
    document.body.dataset.ready = "true";
  }

  // Draws the document; called again with the document whose images are all checked (the same
  // ids, perhaps more problems), keeping the filters chosen meanwhile.
  function show(next) {
    doc = next;
    labels = doc.labels;
    byWhere = new Map(doc.images.map((im) => [im.where, im.id]));
    summary();
    if (!doc.checked) $("summary").textContent += "; checking every image (header and end marker) as training does...";
    fillFilters();
    legend();
    problemTable("problems-table", "problems-none", doc.problems, true);
    problemTable("warnings-table", "warnings-none", doc.warnings, false);
    $("tab-problems").textContent = `Problems (${doc.problems.length})`;
    if (doc.predictions) {
      $("predictions-toggle").hidden = !doc.objects;
      $("tab-confusion").hidden = false;
      $("tab-mistakes").hidden = false;
      $("tab-mistakes").textContent = `Likely label mistakes (${doc.predictions.suspects.length})`;
      confusion();
      suspects();
      $("export-selected").addEventListener("click", () => exportIds(
        Array.from(document.querySelectorAll("#suspects input:checked")).map((c) => Number(c.value))));
      $("export-all").addEventListener("click", () => exportIds(doc.predictions.suspects.map((s) => s.id)));
    }
    applyFilters();
    document.body.dataset.shown = "true";
  }

  start();
})();
