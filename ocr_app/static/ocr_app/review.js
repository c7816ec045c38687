// The review workspace, keyboard first: Enter saves and opens the next line, Down skips, Up goes back,
// Escape undoes the edit. Each action is one small POST; the answer names the next line's page.
"use strict";
(function () {
  const form = document.getElementById("review-form");
  const field = document.getElementById("line-text");
  const errorLine = document.getElementById("review-error");
  const original = field.dataset.original;
  let busy = false;

  function showError(text) {
    errorLine.textContent = text;
    errorLine.hidden = false;
  }

  async function post(url, body) {
    if (busy) return;
    busy = true;
    errorLine.hidden = true;
    // A server that never answers must not leave the page busy and silent: give up after this long.
    // (An AbortController and a timer, not AbortSignal.timeout: that one is missing from browsers before 2022,
    // where calling it threw and every save said the server could not be reached.)
    const timeoutMs = Number(form.dataset.timeoutMs) || 30000;
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => { timedOut = true; controller.abort(); }, timeoutMs);
    try {
      const response = await fetch(url, {
        method: "POST", credentials: "same-origin",
        headers: {
          "Content-Type": "application/json", Accept: "application/json",
          "X-CSRFToken": form.querySelector("input[name=csrfmiddlewaretoken]").value,
        },
        body: JSON.stringify(body || {}),
        signal: controller.signal,
      });
      let data = null;
      try { data = await response.json(); } catch (e) { data = null; }
      if (response.ok && data && data.next_url) {
        window.location.assign(data.next_url);
        return;  // stay busy: the next page is loading
      }
      const error = data && data.error;
      if (error && (error.code === "not_authenticated" || error.code === "authentication_failed")) {
        showError("Your sign-in has expired; sign in again (your edit is still in the box).");
      } else if (error && error.code === "line_changed" && error.details) {
        // Someone saved this line since it was opened: show their reading, and let a second Enter save this
        // edit over it knowingly (the server checks the stamp of the review we now have seen).
        form.dataset.seen = error.details.seen;
        showError(`${error.details.reviewed_by} saved this line after you opened it; it now reads: `
                  + `${error.details.text}. Press Enter again to save your reading over theirs.`);
      } else {
        showError((error && error.message) || `The server answered ${response.status}; try again.`);
      }
    } catch (e) {
      if (timedOut) {
        showError(`The server did not answer within ${Math.round(timeoutMs / 1000)} s; your edit is still in the box. `
                  + "Try again (a save that did arrive is not saved twice).");
      } else {
        showError("The server could not be reached; your edit is still in the box. Try again.");
      }
    } finally {
      clearTimeout(timer);
    }
    busy = false;
    field.focus();
  }

  // "seen": the line's review as this page showed it; a review saved by someone else since is not overwritten
  const save = () => post(form.dataset.saveUrl, { text: field.value, seen: form.dataset.seen });
  const skip = () => post(form.dataset.skipUrl);
  const previous = () => { if (form.dataset.previousUrl) window.location.assign(form.dataset.previousUrl); };
  const undo = () => { field.value = original; field.focus(); };

  form.addEventListener("submit", (event) => { event.preventDefault(); save(); });
  field.addEventListener("keydown", (event) => {
    if (event.isComposing) return;  // an input method is composing: its keys are not ours
    if (event.key === "Escape") { event.preventDefault(); undo(); }
    else if (event.key === "ArrowDown") { event.preventDefault(); skip(); }
    else if (event.key === "ArrowUp") { event.preventDefault(); previous(); }
  });
  document.getElementById("skip-button").addEventListener("click", skip);
  document.getElementById("previous-button").addEventListener("click", previous);
  document.getElementById("undo-button").addEventListener("click", undo);

  // The on-screen row inserts at the caret and leaves the focus in the text.
  document.querySelectorAll(".keyboard .key").forEach((key) => {
    key.addEventListener("mousedown", (event) => event.preventDefault());
    key.addEventListener("click", () => {
      const start = field.selectionStart ?? field.value.length;
      const end = field.selectionEnd ?? start;
      field.setRangeText(key.dataset.char, start, end, "end");
      field.focus();
    });
  });

  // Back to this page after a save may show it from the browser's back-forward cache, script state and all:
  // `busy` is still set from the save that moved on, and Enter would do nothing, without a word. (The server
  // sends the page with no-store, which keeps most browsers from caching it, but not all of them, not always.)
  window.addEventListener("pageshow", (event) => {
    if (!event.persisted) return;
    busy = false;
    field.focus();
  });

  field.focus();
  const end = field.value.length;
  field.setSelectionRange(end, end);
})();
