// The gallery's script: live job strip (server-sent events), Select (the select_image tool) and copying.
// The pages work without it; it only adds what needs a live connection or the clipboard.
"use strict";

function showSelection(answer) {
  const dialog = document.getElementById("select-dialog");
  document.getElementById("select-key").textContent = answer.key;
  document.getElementById("imageref").textContent = JSON.stringify(answer.imageRef, null, 2);
  document.getElementById("copied").textContent = "";
  if (!dialog.open) dialog.showModal();
}

async function copyText(text) {
  // navigator.clipboard needs a secure context (https or localhost); a plain-http LAN address falls back.
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.append(area);
  area.select();
  const copied = document.execCommand("copy");
  area.remove();
  if (!copied) throw new Error("the browser refused to copy");
}

async function select(key) {
  const response = await fetch(`/gallery/select?key=${encodeURIComponent(key)}`, { credentials: "same-origin" });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.detail || `select failed (${response.status})`);
  showSelection(answer);
  try {
    await copyText(JSON.stringify(answer.imageRef));
    document.getElementById("copied").textContent = "Copied to the clipboard.";
  } catch (error) {
    document.getElementById("copied").textContent = `Not copied (${error.message}): select the text above.`;
  }
}

function wireSelect() {
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button.select");
    if (button) {
      select(button.dataset.key).catch((error) => alert(error.message));
      return;
    }
    if (event.target.id === "copy") {
      const status = document.getElementById("copied");
      copyText(document.getElementById("imageref").textContent).then(
        () => (status.textContent = "Copied to the clipboard."),
        (error) => (status.textContent = `Not copied (${error.message}): select the text above.`),
      );
    }
    if (event.target.id === "close-dialog") document.getElementById("select-dialog").close();
  });
}

function followJobs() {
  const strip = document.getElementById("jobs");
  if (!strip || !window.EventSource) return;
  const main = document.querySelector("main[data-newest]");
  const events = new EventSource("/gallery/events");
  events.addEventListener("jobs", (message) => {
    const { strip: markup, newest } = JSON.parse(message.data);
    strip.innerHTML = markup;
    // New images arrived since this page was drawn: offer them rather than moving the grid under the reader.
    if (main && newest && newest !== main.dataset.newest) document.getElementById("fresh").hidden = false;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  wireSelect();
  followJobs();
});
