// The upload page: send the chosen files to the API with the session (and CSRF token), show the answer.
// One handler per kind of input: `line` (POST /api/v1/recognitions/), `page` (POST /api/v1/pages/: its
// lines drawn back over it, ALTO and PAGE downloads) and `book` (a job: POST /api/v1/jobs/, then its
// progress polled until the results download appears).
"use strict";
(function () {
  const form = document.getElementById("upload-form");
  const input = document.getElementById("image-input");
  const dropzone = document.getElementById("dropzone");
  const statusLine = document.getElementById("upload-status");
  const errorLine = document.getElementById("upload-error");
  const preview = document.getElementById("preview");
  const fileList = document.getElementById("file-list");
  const result = document.getElementById("result");
  const jobSection = document.getElementById("job");
  const POLL_MS = 1000;
  let chosen = [];
  let previewUrl = null;
  let kindChosenByHand = false;

  // What each error code of the API means to the person at the page.
  const MESSAGES = {
    not_an_image: "That file is not an image we can read. Choose a PNG, JPEG, TIFF, BMP, WebP or GIF.",
    empty_file: "That file is empty (0 bytes).",
    empty_image: "That image has no pixels.",
    corrupt_image: "That image is damaged or cut short; export it again and retry.",
    not_a_line_image: "That does not look like one line of text (too low, or far too wide). For a whole page or book, choose “A book”.",
    multi_frame_image: "That image has several frames or pages; for one line send one image, or choose “A book”.",
    multi_page_document: "That file has several pages; choose “A book” to have every page read.",
    corrupt_pdf: "That PDF is damaged; export it again and retry.",
    encrypted_pdf: "That PDF is locked with a password; save an unlocked copy and retry.",
    no_pages: "That file has no pages.",
    image_too_large: "That image has too many pixels. Crop it to the line, or scale it down.",
    file_too_large: "A file is too large. Crop or compress it, or split the book.",
    request_too_large: "That upload is too large.",
    too_many_files: "Too many files at once; put the pages in a zip, or send them as one PDF.",
    too_many_fields: "The request has too many form fields.",
    batch_too_large: "Too many images at once.",
    missing_image: "Choose an image first.",
    missing_files: "Choose the book's files first (PDFs, page images, multi-page TIFFs or a zip of them).",
    invalid_base64: "The image could not be read from the request.",
    job_too_large: "The book is larger than the server takes in one job; split it into parts.",
    too_many_pages: "The book has more pages than one job may; split it into parts.",
    corrupt_zip: "That zip file is damaged; pack it again and retry.",
    no_readable_pages: "None of those files is a page image, TIFF, PDF or zip of them.",
    unknown_format: "An output format asked for is unknown.",
    job_finished: "The book had already finished.",
    job_not_finished: "The book is still being read; the results come when it ends.",
    not_found: "That book is no longer there (or is not yours).",
    unknown_model: "That model is not registered.",
    no_active_model: "No model is active on the server yet; ask an administrator.",
    not_authenticated: "Sign in to recognise images.",
    authentication_failed: "Your sign-in has expired; sign in again.",
    permission_denied: "Your account may not do this.",
    throttled: "Too many requests just now; wait a little and try again.",
    invalid_request: "The request was not understood.",
    internal_error: "The server failed unexpectedly; try again, and tell an administrator if it persists.",
  };

  function describe(status, body) {
    const error = body && body.error;
    const code = error && error.code;
    let text = (code && MESSAGES[code]) || (error && error.message) || `The server answered ${status}.`;
    if (code === "not_authenticated" || code === "authentication_failed") {
      return { text, signIn: true };
    }
    if (error && error.message && MESSAGES[code] && !["missing_image", "missing_files"].includes(code)) {
      text += ` (${error.message}${error.request_id ? `; request ${error.request_id}` : ""})`;
    }
    return { text, signIn: false };
  }

  function showError(problem) {
    errorLine.textContent = problem.text + " ";
    if (problem.signIn) {
      const link = document.createElement("a");
      link.href = "/accounts/login/?next=/";
      link.textContent = "Sign in";
      errorLine.append(link);
    }
    errorLine.hidden = false;
    statusLine.textContent = "";
  }

  function clearMessages() {
    errorLine.hidden = true;
    errorLine.textContent = "";
    statusLine.textContent = "";
  }

  function isBookFile(file) {
    return /\.(pdf|zip)$/i.test(file.name) || ["application/pdf", "application/zip"].includes(file.type);
  }

  function setKind(kind) {
    const radio = form.querySelector(`input[name=kind][value=${kind}]`);
    if (radio) radio.checked = true;
  }

  function selectedKind() {
    return form.querySelector("input[name=kind]:checked").value;
  }

  // A line image is long and low; anything squarer is taken for a page (the reader may change it).
  const LINE_ASPECT = 4;

  function choose(files) {
    clearMessages();
    result.hidden = true;
    chosen = Array.from(files || []);
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
    preview.hidden = true;
    fileList.hidden = true;
    fileList.replaceChildren();
    if (!chosen.length) return;
    if (!kindChosenByHand) setKind(chosen.length > 1 || chosen.some(isBookFile) ? "book" : "line");
    const first = chosen[0];
    if (chosen.length === 1 && first.type.startsWith("image/") && first.type !== "image/tiff") {
      previewUrl = URL.createObjectURL(first);
      const image = document.getElementById("preview-image");
      image.onload = () => {
        if (!kindChosenByHand) setKind(image.naturalWidth / image.naturalHeight >= LINE_ASPECT ? "line" : "page");
      };
      image.src = previewUrl;
      document.getElementById("preview-name").textContent = `${first.name} (${Math.ceil(first.size / 1024)} KB)`;
      preview.hidden = false;
    } else {   // a PDF, a zip, a TIFF or several files: their names stand in for a preview
      if (!kindChosenByHand && chosen.length === 1 && !isBookFile(first)) setKind("page");
      for (const file of chosen) {
        const item = document.createElement("li");
        item.textContent = `${file.name} (${Math.ceil(file.size / 1024)} KB)`;
        fileList.append(item);
      }
      fileList.hidden = false;
    }
  }

  function csrfToken() {
    return form.querySelector("input[name=csrfmiddlewaretoken]").value;
  }

  async function send(url, { method = "GET", fields = [] } = {}) {
    const options = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (method !== "GET") {
      options.headers["X-CSRFToken"] = csrfToken();
      options.body = new FormData();
      for (const [name, value] of fields) options.body.append(name, value);
    }
    const response = await fetch(url, options);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return { ok: response.ok, status: response.status, data };
  }

  // The recognised lines drawn over the image: one box each, at [x0, y0, x1, y1] in fractions of the image.
  function drawBoxes(imageUrl, lines) {
    const overlay = document.getElementById("overlay");
    const image = document.getElementById("overlay-image");
    const boxes = lines.map((line) => {
      const box = document.createElement("div");
      box.className = "overlay-box arabic";
      if (line.id) box.id = line.id;
      box.lang = "ar";
      box.dir = "rtl";
      const [x0, y0, x1, y1] = line.box.map((v) => `${(100 * v).toFixed(3)}%`);
      box.style.inset = `${y0} calc(100% - ${x1}) calc(100% - ${y1}) ${x0}`;
      if (line.title) box.title = line.title;
      const span = document.createElement("span");
      span.textContent = line.text;
      box.append(span);
      return box;
    });
    overlay.replaceChildren(image, ...boxes);
    const fitAll = () => overlay.querySelectorAll(".overlay-box").forEach(fitText);
    image.onload = fitAll;
    image.src = imageUrl;
    if (image.complete) fitAll();
  }

  function setDownload(id, href, filename) {
    const link = document.getElementById(id);
    if (link.href.startsWith("blob:")) URL.revokeObjectURL(link.href);
    link.hidden = !href;
    if (!href) return;
    link.href = href;
    link.download = filename;
  }

  function stem(file) {
    return file.name.replace(/\.[^.]*$/, "");
  }

  // Fit the recognised text into the line's box: as large as the box's height allows, no wider than the box.
  function fitText(box) {
    const text = box.firstElementChild;
    box.style.fontSize = `${Math.max(10, box.clientHeight * 0.62)}px`;
    for (let i = 0; i < 30 && text.offsetWidth > box.clientWidth * 0.96; i++) {
      box.style.fontSize = `${parseFloat(box.style.fontSize) * 0.93}px`;
    }
  }

  function seconds(value) {
    if (value === null || value === undefined) return "";
    const s = Math.round(value);
    return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
  }

  // A book: one job, polled until it ends. Starting another upload stops following the previous one.
  const book = {
    job: null,
    timer: null,

    async start(files) {
      const answer = await send(form.dataset.jobsApi, { method: "POST", fields: files.map((f) => ["files", f]) });
      if (!answer.ok) throw describe(answer.status, answer.data);
      return answer.data;
    },

    url(suffix = "") {
      return `${form.dataset.jobsApi}${this.job.id}/${suffix}`;
    },

    follow(job) {
      this.stop();
      this.job = job;
      document.getElementById("job-name").textContent = `“${job.name}”`;
      const download = document.getElementById("job-download");
      download.hidden = true;
      document.getElementById("job-cancel").hidden = false;
      jobSection.hidden = false;
      this.show(job);
      this.timer = setTimeout(() => this.poll(), POLL_MS);
    },

    stop() {
      clearTimeout(this.timer);
      this.timer = null;
    },

    async poll() {
      const following = this.job;
      let answer;
      try {
        answer = await send(this.url());
      } catch (e) {   // the network dropped: say so, keep trying
        document.getElementById("job-status").textContent = "The server could not be reached; trying again…";
        this.timer = setTimeout(() => this.poll(), POLL_MS * 3);
        return;
      }
      if (following !== this.job) return;   // another book was started meanwhile
      if (!answer.ok) {
        showError(describe(answer.status, answer.data));
        if (answer.status >= 500 || answer.status === 429) this.timer = setTimeout(() => this.poll(), POLL_MS * 3);
        return;
      }
      this.job = answer.data;
      this.show(answer.data);
      if (["queued", "running"].includes(answer.data.status)) this.timer = setTimeout(() => this.poll(), POLL_MS);
    },

    show(job) {
      const ended = job.pages_done + job.pages_failed + job.pages_cancelled;
      const progress = document.getElementById("job-progress");
      progress.max = Math.max(1, job.pages_total);
      progress.value = ended;
      const failed = job.pages_failed ? `, ${job.pages_failed} could not be read` : "";
      const pace = job.timings.pages_per_minute ? ` · ${job.timings.pages_per_minute} pages/min` : "";
      const eta = job.timings.eta_s ? ` · about ${seconds(job.timings.eta_s)} left` : "";
      const texts = {
        queued: `Waiting for a free reader: ${job.pages_total} page${job.pages_total === 1 ? "" : "s"} queued.`,
        running: `${ended} of ${job.pages_total} pages read${failed}${pace}${eta}.`,
        done: `Done: ${job.pages_done} of ${job.pages_total} pages read${failed}, in ${seconds(job.timings.elapsed_s)}.`,
        failed: `No page could be read (${job.pages_failed} of ${job.pages_total} failed).`,
        cancelled: `Cancelled after ${job.pages_done} of ${job.pages_total} pages.`,
      };
      document.getElementById("job-status").textContent = texts[job.status] || job.status;
      const failures = document.getElementById("job-failures");
      failures.replaceChildren(...job.failures.map((f) => {
        const item = document.createElement("li");
        item.textContent = `${f.name} (${f.file}${f.number > 1 ? `, page ${f.number}` : ""}): ` +
          `${MESSAGES[f.code] || f.message}`;
        return item;
      }));
      failures.hidden = !job.failures.length;
      if (!["queued", "running"].includes(job.status)) {
        document.getElementById("job-cancel").hidden = true;
        const download = document.getElementById("job-download");
        if (job.pages_done > 0) {
          download.href = this.url("results.zip");
          download.setAttribute("download", `job-${job.id}-results.zip`);
          download.hidden = false;
          download.focus();
        }
      }
    },

    async cancel() {
      if (!this.job) return;
      const answer = await send(this.url("cancel/"), { method: "POST" });
      if (!answer.ok) { showError(describe(answer.status, answer.data)); return; }
      this.stop();
      this.job = answer.data;
      this.show(answer.data);
    },
  };

  const handlers = {
    line: {
      async run(files) {
        if (files.length > 1) throw { text: "One line at a time: choose one image, or choose “A book” for several." };
        const file = files[0];
        const answer = await send(form.dataset.lineApi, { method: "POST", fields: [["image", file]] });
        if (!answer.ok) throw describe(answer.status, answer.data);
        const recognition = answer.data;
        statusLine.textContent = recognition.cached ? "Done (this image was recognised before)." : "Done.";
        this.show(recognition, file);
        return document.getElementById("result-heading");
      },
      show(recognition, file) {
        document.getElementById("result-text").textContent = recognition.text;
        document.getElementById("result-text").classList.remove("page-text");
        document.getElementById("result-meta").textContent = `Confidence ${recognition.confidence.toFixed(2)} ` +
          `(the probability that the line is read exactly right) · model ${recognition.model.name} ${recognition.model.version}`;
        setDownload("download-txt", URL.createObjectURL(new Blob([recognition.text + "\n"],
          { type: "text/plain;charset=utf-8" })), `${stem(file)}.txt`);
        setDownload("download-alto", "");
        setDownload("download-page", "");
        result.hidden = false;
        // a line is one box: the whole image
        drawBoxes(previewUrl || URL.createObjectURL(file), [{ id: "overlay-box", text: recognition.text, box: [0, 0, 1, 1] }]);
      },
    },
    page: {
      async run(files) {
        if (files.length > 1) throw { text: "One page at a time: choose one image, or choose “A book” for several." };
        const file = files[0];
        const answer = await send(form.dataset.pagesApi, { method: "POST", fields: [["image", file]] });
        if (!answer.ok) throw describe(answer.status, answer.data);
        const page = answer.data;
        statusLine.textContent = `Done: ${page.line_count} line${page.line_count === 1 ? "" : "s"} read.`;
        this.show(page);
        return document.getElementById("result-heading");
      },
      show(page) {
        const lines = page.regions.flatMap((region) => region.lines);
        document.getElementById("result-text").textContent = page.text;
        document.getElementById("result-text").classList.add("page-text");
        document.getElementById("result-meta").textContent = `${lines.length} line${lines.length === 1 ? "" : "s"} ` +
          `· model ${page.model.name} ${page.model.version}`;
        const documentUrl = `${form.dataset.pagesApi}${page.id}/?format=`;
        setDownload("download-txt", `${documentUrl}txt`, `${page.name}.txt`);
        setDownload("download-alto", `${documentUrl}alto`, `${page.name}.alto.xml`);
        setDownload("download-page", `${documentUrl}page`, `${page.name}.page.xml`);
        result.hidden = false;
        // The page as the server read it (a PDF page too): line polygons are in its pixels.
        drawBoxes(`/pages/${page.id}/thumbnail.png`, lines.map((line) => {
          const xs = line.polygon.map((p) => p[0]);
          const ys = line.polygon.map((p) => p[1]);
          return {
            text: line.text, title: `confidence ${line.confidence.toFixed(2)}`,
            box: [Math.min(...xs) / page.width, Math.min(...ys) / page.height,
              Math.max(...xs) / page.width, Math.max(...ys) / page.height],
          };
        }));
      },
    },
    book: {
      async run(files) {
        const job = await book.start(files);
        statusLine.textContent = `Book started: ${job.pages_total} page${job.pages_total === 1 ? "" : "s"} queued.`;
        book.follow(job);
        return document.getElementById("job-heading");
      },
    },
  };

  input.addEventListener("change", () => choose(input.files));
  form.querySelectorAll("input[name=kind]").forEach((radio) => radio.addEventListener("change", () => {
    kindChosenByHand = true;
  }));
  ["dragenter", "dragover"].forEach((type) => dropzone.addEventListener(type, (event) => {
    event.preventDefault();
    dropzone.classList.add("dragging");
  }));
  ["dragleave", "drop"].forEach((type) => dropzone.addEventListener(type, () => dropzone.classList.remove("dragging")));
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer.files.length) choose(event.dataTransfer.files);
  });
  document.getElementById("white-background").addEventListener("change", (event) => {
    document.getElementById("overlay").classList.toggle("white", event.target.checked);
  });
  document.getElementById("job-cancel").addEventListener("click", () => book.cancel());
  window.addEventListener("resize", () => {
    if (!result.hidden) document.querySelectorAll("#overlay .overlay-box").forEach(fitText);
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearMessages();
    const kind = selectedKind();
    if (!chosen.length) {
      showError({ text: kind === "book" ? MESSAGES.missing_files : MESSAGES.missing_image });
      input.focus();
      return;
    }
    const button = document.getElementById("recognise-button");
    button.disabled = true;
    result.hidden = true;
    if (kind === "book") book.stop(); else jobSection.hidden = true;
    statusLine.textContent = { book: "Sending the book…", page: "Finding and reading the lines…" }[kind] || "Recognising…";
    try {
      const heading = await handlers[kind].run(chosen);
      heading.focus({ preventScroll: false });
    } catch (problem) {
      result.hidden = true;
      showError(problem && problem.text ? problem : { text: "The server could not be reached; try again." });
    } finally {
      button.disabled = false;
    }
  });
})();
