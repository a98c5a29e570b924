"use strict";
// The page's whole client: check the photo, upload it as any API client does, wait for its
// analysis, draw it. The API is this page's own origin; the upload goes to the presigned URL.
(function () {
  const MAX_BYTES = Number(document.body.dataset.maxBytes);
  const TYPES = { "image/jpeg": "JPEG", "image/png": "PNG" };
  // How long to wait for the analysis that the upload itself triggers before asking for it.
  const EVENT_WAIT_MS = 8000;
  const POLL_MS = 400;
  const GIVE_UP_MS = 60000;

  const $ = (id) => document.getElementById(id);
  const drop = $("drop");
  const progressArea = $("progress-area");
  const progress = $("progress");
  const status = $("status");
  const errorBox = $("error");
  const result = $("result");
  let busy = false;

  for (const el of document.querySelectorAll(".limit")) el.textContent = megabytes(MAX_BYTES);

  // What went wrong, in words, and what the person can do about it.
  const ADVICE = {
    InvalidRequest: "Choose a JPEG or PNG photo and try again.",
    InvalidImageFormat: "The file is not a JPEG or PNG image that can be read. Choose another photo.",
    UnsupportedMediaType: "Only JPEG and PNG photos can be analysed. Choose another photo.",
    ImageTooLarge: "Choose a smaller photo, or shrink this one, and try again.",
    InvalidParameter: "Choose a larger photo: each side must be at least 80 pixels.",
    NotFound: "The upload could not be found; it may have expired. Upload the photo again.",
    Throttled: "The service is busy right now. Wait a moment and try again.",
    Timeout: "The analysis took too long. Try again in a moment.",
    UpstreamError: "A service behind this page failed. Try again in a minute.",
  };

  class Problem extends Error {
    constructor(what, advice) {
      super(what);
      this.advice = advice;
    }
  }

  function megabytes(bytes) {
    return (bytes / (1024 * 1024)).toFixed(bytes % (1024 * 1024) === 0 ? 0 : 1) + " MB";
  }

  function show(el, visible) {
    el.hidden = !visible;
  }

  function setStatus(text, percent) {
    show(progressArea, true);
    status.textContent = text;
    if (percent === null) progress.removeAttribute("value");
    else progress.value = percent;
  }

  function fail(problem) {
    show(progressArea, false);
    $("error-what").textContent = problem.message;
    $("error-do").textContent = problem.advice;
    show(errorBox, true);
  }

  // An API answer that is not a success, as a Problem: the API's own message, never a body
  // that is not its JSON error (a proxy's HTML page, say).
  async function apiProblem(response, doing) {
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (body && typeof body.error === "string" && typeof body.message === "string") {
      let advice = ADVICE[body.error] || "Try again in a moment.";
      const retry = response.headers.get("Retry-After");
      if (body.error === "Throttled" && retry) advice = "The service is busy. Wait " + retry + " seconds and try again.";
      return new Problem(doing + " failed: " + body.message + ".", advice);
    }
    return new Problem(doing + " failed (HTTP " + response.status + ").", "Try again in a moment.");
  }

  async function call(path, init, doing) {
    try {
      return await fetch(path, Object.assign({ cache: "no-store" }, init));
    } catch (_) {
      throw new Problem(doing + " failed: the service could not be reached.", "Check your connection and try again.");
    }
  }

  function check(file) {
    if (!TYPES[file.type]) {
      const kind = file.type ? "a " + file.type + " file" : "a file of unknown type";
      throw new Problem("“" + file.name + "” is " + kind + ", not a photo this page can analyse.",
        "Choose a JPEG or PNG photo.");
    }
    if (file.size > MAX_BYTES) {
      throw new Problem("“" + file.name + "” is " + megabytes(file.size) + "; the limit is " + megabytes(MAX_BYTES) + ".",
        "Choose a smaller photo, or shrink this one, and try again.");
    }
    if (file.size === 0) throw new Problem("“" + file.name + "” is empty.", "Choose a JPEG or PNG photo.");
  }

  async function uploadUrl(file) {
    // The length is signed into the URL: storage takes exactly this file, and no more.
    const query = new URLSearchParams({ contentType: file.type, contentLength: String(file.size) });
    const response = await call("/upload-url?" + query, {}, "Asking for an upload address");
    if (!response.ok) throw await apiProblem(response, "Asking for an upload address");
    return response.json();
  }

  // PUT with the signed Content-Type, reporting progress. XMLHttpRequest, because fetch
  // reports no upload progress.
  function put(upload, file) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", upload.uploadUrl);
      xhr.setRequestHeader("Content-Type", upload.contentType);
      xhr.upload.onprogress = (event) => {
        if (event.lengthComputable) setStatus("Uploading " + file.name + "…", Math.round((100 * event.loaded) / event.total));
      };
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) resolve();
        else reject(new Problem("The upload was refused by storage (HTTP " + xhr.status + ").",
          xhr.status === 403 ? "The upload address may have expired. Choose the photo again." : "Try again in a moment."));
      };
      xhr.onerror = () => reject(new Problem("The upload could not reach storage.",
        "Check your connection and try again. If it keeps failing, storage does not accept uploads from this page."));
      xhr.send(file);
    });
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // The analysis the upload triggers, read with GET /analysis/{id}. If none appears in time,
  // POST /analyze asks for it (an upload is analysed at most once either way).
  async function analysis(fileKey) {
    const id = fileKey.slice(fileKey.indexOf("/") + 1);
    const started = Date.now();
    let asked = false;
    for (;;) {
      const waited = Date.now() - started;
      let response;
      if (!asked && waited > EVENT_WAIT_MS) {
        asked = true;
        response = await call("/analyze", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ fileKey: fileKey }),
        }, "Analysing the photo");
      } else {
        response = await call("/analysis/" + encodeURIComponent(id), {}, "Reading the analysis");
      }
      if (response.status === 200) return response.json();
      if (response.status !== 202) throw await apiProblem(response, "Analysing the photo");
      if (waited > GIVE_UP_MS) throw new Problem("The analysis did not finish within a minute.", "Try again in a moment.");
      await sleep(POLL_MS);
    }
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const pct = (value) => value.toFixed(1) + "%";
  const title = (word) => word.charAt(0) + word.slice(1).toLowerCase();

  function render(file, body) {
    const photo = $("photo");
    const canvas = $("canvas");
    for (const box of canvas.querySelectorAll(".face")) box.remove();
    const faces = $("faces");
    faces.replaceChildren();
    if (photo.src) URL.revokeObjectURL(photo.src);
    photo.src = URL.createObjectURL(file);
    const count = body.faces.length;
    photo.alt = "Your photo, " + (count === 0 ? "with no faces found" : "with " + count + (count === 1 ? " face" : " faces") + " marked");
    result.dataset.fileKey = body.fileKey;
    $("summary").textContent = count === 0 ? "No faces found in " + file.name + "."
      : count + (count === 1 ? " face" : " faces") + " found in " + file.name + ".";
    $("caption").textContent = count === 0 ? "" : "Each box is numbered as in the list below.";

    for (const face of body.faces) {
      const p = face.position;
      const top = face.emotions[0];
      const label = "#" + face.faceNumber + (top ? " " + top.emotion + " " + pct(top.confidence) : "");
      const box = el("div", { class: p.Top < 0.08 ? "face low" : "face", "aria-hidden": "true", "data-face": face.faceNumber });
      box.style.left = 100 * p.Left + "%";
      box.style.top = 100 * p.Top + "%";
      box.style.width = 100 * p.Width + "%";
      box.style.height = 100 * p.Height + "%";
      box.append(el("span", {}, label));
      canvas.append(box);

      const item = el("li", { "data-face": face.faceNumber });
      item.append(el("h3", {}, "Face " + face.faceNumber + (top ? ": " + title(top.emotion) + ", " + pct(top.confidence) : "")));
      const facts = [];
      if (face.ageRange) facts.push("Age " + face.ageRange.low + "–" + face.ageRange.high);
      if (face.smile) facts.push((face.smile.value ? "Smiling" : "Not smiling") + " (" + pct(face.smile.confidence) + ")");
      facts.push("Face confidence " + pct(face.confidence));
      item.append(el("p", {}, facts.join(" · ")));
      const list = el("ul", { class: "emotions", "aria-label": "Emotions of face " + face.faceNumber });
      for (const emotion of face.emotions) {
        const row = el("li");
        row.append(el("span", {}, title(emotion.emotion)));
        const bar = el("span", { class: "bar", role: "img", "aria-label": title(emotion.emotion) + " " + pct(emotion.confidence) });
        const fill = el("i");
        fill.style.width = Math.max(0, Math.min(100, emotion.confidence)) + "%";
        bar.append(fill);
        row.append(bar, el("span", { class: "pct", "aria-hidden": "true" }, pct(emotion.confidence)));
        list.append(row);
      }
      item.append(list);
      faces.append(item);
    }
    show(result, true);
  }

  async function analyse(file) {
    if (busy) return;
    show(errorBox, false);
    try {
      check(file);
    } catch (problem) {
      fail(problem);
      return;
    }
    busy = true;
    document.body.classList.add("busy");
    show(result, false);
    try {
      setStatus("Preparing the upload…", 0);
      const upload = await uploadUrl(file);
      setStatus("Uploading " + file.name + "…", 0);
      await put(upload, file);
      setStatus("Looking for faces…", null);
      const body = await analysis(upload.fileKey);
      show(progressArea, false);
      render(file, body);
      $("result-title").focus();
    } catch (problem) {
      if (problem instanceof Problem) fail(problem);
      else fail(new Problem("Something went wrong on this page.", "Reload the page and try again."));
    } finally {
      busy = false;
      document.body.classList.remove("busy");
    }
  }

  for (const input of [$("file"), $("camera")]) {
    input.addEventListener("change", () => {
      if (input.files.length > 0) analyse(input.files[0]);
      input.value = "";
    });
  }
  // Dropping anywhere on the page; only the drop area shows it takes the file.
  document.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  document.addEventListener("dragleave", (event) => {
    if (event.relatedTarget === null) drop.classList.remove("over");
  });
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const files = event.dataTransfer ? event.dataTransfer.files : [];
    if (files.length > 0) analyse(files[0]);
  });
  $("result-title").tabIndex = -1;
})();
