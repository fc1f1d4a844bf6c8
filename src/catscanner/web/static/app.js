// Cat Scanner page: pick, drop or paste a photo -> POST /api/v1/scan -> show the result.
"use strict";

(() => {
  const API = "/api/v1/scan";
  const $ = (id) => document.getElementById(id);
  const els = {
    dropzone: $("dropzone"), file: $("file"), camera: $("camera"), status: $("status"),
    error: $("error"), result: $("result"), frame: $("frame"), preview: $("preview"),
    previewNote: $("preview-note"), boxes: $("boxes"), report: $("report"), verdict: $("verdict"),
    confidence: $("confidence"), wild: $("wild"), cats: $("cats"), breedsNote: $("breeds-note"),
  };
  let current = 0;          // id of the latest scan; answers to older ones are ignored
  let previewUrl = null;

  // shares come with one decimal; a half rounds to even, as the CLI's Python formatting does
  // (Math.round alone showed 91 % where the CLI said 90 % for a share of 90.5)
  const percent = (share) => {
    const r = Math.round(share);
    return `${Math.abs(share % 1) === 0.5 && r % 2 ? r - 1 : r} %`;
  };

  function showError(message) {
    els.result.hidden = true;  // the photo could not be scanned: only the message matters
    els.error.textContent = message;
    els.error.hidden = false;
  }

  function clearMessages() {
    els.error.hidden = true;
    els.error.textContent = "";
    els.status.textContent = "";
  }

  function showPreview(file) {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(file);
    els.frame.hidden = false;
    els.previewNote.hidden = true;
    els.boxes.replaceChildren();
    els.boxes.hidden = false;
    shown = null;
    els.report.hidden = true;
    els.preview.src = previewUrl;
    els.result.hidden = false;
    document.body.classList.add("has-photo");
  }

  // Formats the browser cannot display (e.g. TIFF) still get scanned; only the preview is missing.
  els.preview.addEventListener("error", () => {
    els.frame.hidden = true;
    els.previewNote.textContent = "This browser cannot show a preview of this file.";
    els.previewNote.hidden = false;
  });

  // The server scans the photo upright (it applies the EXIF orientation); a browser may show it
  // unturned (Chromium does for WebP). Boxes drawn on a preview of another shape would miss the cats,
  // so they are hidden there and the note says why; the list below still names every cat.
  let shown = null;  // the result on screen
  function previewTurned(result) {
    const w = els.preview.naturalWidth, h = els.preview.naturalHeight;
    if (!w || !h || !result.width || !result.height) return false;  // not loaded yet: asked again on load
    return Math.abs(Math.log((w / h) / (result.width / result.height))) > 0.05;
  }
  function checkPreviewShape() {
    if (!shown || !previewTurned(shown)) return;
    els.boxes.hidden = true;
    els.previewNote.textContent = "This browser shows the photo turned (it ignores the photo's orientation " +
      "tag), so the boxes are not drawn on it; every cat is listed below.";
    els.previewNote.hidden = false;
  }
  els.preview.addEventListener("load", checkPreviewShape);

  // Tapping a cat in the list (or its box) highlights both; tapping again clears it.
  function highlight(index) {
    const same = els.cats.querySelector(`.cat[data-index="${index}"].highlight`);
    for (const el of document.querySelectorAll(".cat.highlight, .box.highlight")) el.classList.remove("highlight");
    if (same) return;
    for (const el of document.querySelectorAll(`[data-index="${index}"]`)) el.classList.add("highlight");
  }

  function drawBoxes(result) {
    const boxes = result.cats.map((cat, i) => {
      const b = cat.box;
      const box = document.createElement("div");
      box.className = "box";
      box.dataset.testid = "box";
      box.dataset.index = String(i);
      // Percentages of the photo, so the boxes follow the preview at any size.
      box.style.left = `${(100 * b.left) / result.width}%`;
      box.style.top = `${(100 * b.top) / result.height}%`;
      box.style.width = `${(100 * (b.right - b.left)) / result.width}%`;
      box.style.height = `${(100 * (b.bottom - b.top)) / result.height}%`;
      if (b.top < 0.08 * result.height) box.dataset.label = "inside";  // no room above it in the photo
      if (b.right > 0.8 * result.width) box.dataset.side = "right";  // nor to the right of its left edge
      const label = document.createElement("span");
      label.className = "box-label";
      const top = cat.breeds.length ? `: ${cat.breeds[0].breed}` : "";
      label.textContent = `${i + 1}${top}`;
      box.append(label);
      box.addEventListener("click", () => highlight(i));
      return box;
    });
    els.boxes.replaceChildren(...boxes);
  }

  function breedItem(share) {
    const li = document.createElement("li");
    li.className = "breed";
    li.dataset.testid = "breed";
    li.dataset.breed = share.breed;
    li.dataset.percent = String(share.percent);

    const name = document.createElement("span");
    name.className = "breed-name";
    name.textContent = share.breed;

    const bar = document.createElement("span");
    bar.className = "breed-bar";
    bar.setAttribute("role", "meter");
    bar.setAttribute("aria-label", `${share.breed} share`);
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    bar.setAttribute("aria-valuenow", String(share.percent));
    const fill = document.createElement("span");
    fill.className = "breed-fill";
    fill.style.width = `${Math.max(0, Math.min(100, share.percent))}%`;
    bar.append(fill);

    const value = document.createElement("span");
    value.className = "breed-percent";
    value.textContent = percent(share.percent);

    li.append(name, bar, value);
    return li;
  }

  function catItem(cat, i, count) {
    const li = document.createElement("li");
    li.className = "cat";
    li.dataset.testid = "cat";
    li.dataset.index = String(i);
    const head = document.createElement("button");
    head.type = "button";
    head.className = "cat-head";
    head.textContent = count > 1 ? `Cat ${i + 1} (${percent(100 * cat.cat_probability)} sure)`
                                 : `Breed mix (${percent(100 * cat.cat_probability)} sure it is a cat)`;
    head.addEventListener("click", () => highlight(i));
    const list = document.createElement("ol");
    list.className = "breeds";
    list.dataset.testid = "breeds";
    list.replaceChildren(...cat.breeds.map(breedItem));  // already sorted, >= 5 %
    li.append(head, list);
    return li;
  }

  function showResult(result) {
    const n = result.cats.length;
    const verdict = result.is_cat ? (n === 1 ? "Cat found" : `${n} cats found`)
                  : result.wild_cat ? "A wild cat, not a house cat" : "No cat found";
    els.verdict.textContent = verdict;
    els.verdict.className = `verdict ${result.is_cat ? "is-cat" : "no-cat"}`;
    els.verdict.dataset.isCat = String(result.is_cat);
    els.verdict.dataset.cats = String(n);
    els.confidence.textContent = result.is_cat
      ? `Confidence that there is a house cat: ${percent(100 * result.cat_probability)}`
      : `Chance that a house cat was missed: ${percent(100 * result.cat_probability)}`;
    els.wild.textContent = result.wild_cat
      ? `This looks like a ${result.wild_cat}: a wild cat, so no house-cat breeds are given.` : "";
    els.wild.hidden = !result.wild_cat;
    drawBoxes(result);
    shown = result;
    checkPreviewShape();

    els.cats.replaceChildren(...result.cats.map((cat, i) => catItem(cat, i, n)));
    const note = result.breeds_note || "";  // the server says why there are no breeds
    els.breedsNote.textContent = note;
    els.breedsNote.hidden = !note || Boolean(result.wild_cat);
    els.report.hidden = false;
  }

  async function errorMessage(response) {
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) return body.error.message;
    } catch (_) { /* not JSON: e.g. a proxy's error page */ }
    return `The server answered ${response.status} ${response.statusText || ""}`.trim() + ". Try again.";
  }

  async function scan(file) {
    if (!file) return;
    const id = ++current;
    clearMessages();
    showPreview(file);
    els.status.classList.remove("visually-hidden");
    els.status.textContent = "Scanning…";
    const form = new FormData();
    form.append("file", file, file.name || "photo");
    let response;
    try {
      response = await fetch(API, { method: "POST", body: form, headers: { Accept: "application/json" } });
    } catch (_) {
      if (id === current) {
        els.status.textContent = "";
        showError("Could not reach the Cat Scanner server. Check the connection and try again.");
      }
      return;
    }
    const outcome = response.ok ? { result: await response.json().catch(() => null) }
                                : { message: await errorMessage(response) };
    if (id !== current) return;
    els.status.textContent = "";
    if (outcome.result) {
      showResult(outcome.result);
      // the live region tells screen readers the answer; the page already shows it, so it is hidden
      els.status.classList.add("visually-hidden");
      els.status.textContent = `${els.verdict.textContent}. ${els.confidence.textContent}.`;
    } else {
      showError(outcome.message || "The server sent an answer this page could not read. Try again.");
    }
  }

  function firstImageFile(list) {
    const files = Array.from(list || []);
    return files.find((f) => f.type.startsWith("image/")) || files[0] || null;
  }

  // Picking (file chooser or camera).
  for (const input of [els.file, els.camera]) {
    input.addEventListener("change", () => {
      scan(input.files && input.files[0]);
      input.value = "";  // choosing the same file again scans it again
    });
  }

  // Drag and drop anywhere on the page (so a near miss does not open the photo in the tab).
  let dragDepth = 0;
  const hasFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types || []).includes("Files");
  document.addEventListener("dragenter", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    dragDepth += 1;
    els.dropzone.classList.add("dragging");
  });
  document.addEventListener("dragover", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
  });
  document.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) els.dropzone.classList.remove("dragging");
  });
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    dragDepth = 0;
    els.dropzone.classList.remove("dragging");
    const file = firstImageFile(e.dataTransfer && e.dataTransfer.files);
    if (file) scan(file);
    else showError("Drop a photo file (a picture dragged from another web page is only a link).");
  });

  // Paste from the clipboard.
  document.addEventListener("paste", (e) => {
    const data = e.clipboardData;
    if (!data) return;
    let file = firstImageFile(data.files);
    if (!file) {
      const item = Array.from(data.items || []).find((i) => i.kind === "file" && i.type.startsWith("image/"));
      file = item ? item.getAsFile() : null;
    }
    if (file) {
      e.preventDefault();
      scan(file);
    }
  });
})();
