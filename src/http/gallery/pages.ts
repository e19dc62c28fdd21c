import { SCHEDULERS } from "../../core/generation.js";
import type { Job } from "../../queue/job.js";
import type { ImageRecord } from "../../queue/ports.js";
import type { ImageRef } from "../../storage/imageLinks.js";
import { storedPreview } from "../../mcp/tools/previewImages.js";
import { html, type Html } from "./html.js";

/** The gallery's server-rendered pages. Plain HTML that works without script; gallery.js adds live jobs and Select. */

/** A key in a path: each segment percent-encoded, the slashes kept. */
export function keyPath(key: string): string {
  return key.split("/").map(encodeURIComponent).join("/");
}

function layout(title: string, body: Html): string {
  return `<!doctype html>${html`<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>${title} · kitty-images</title>
<link rel="stylesheet" href="/gallery/static/gallery.css">
<script src="/gallery/static/gallery.js" defer></script>
</head>
<body>
<header class="top"><a class="brand" href="/gallery">kitty-images</a></header>
${body}
</body>
</html>`}`;
}

function shortTime(iso: string): string {
  return iso.replace("T", " ").replace(/:\d\d(\.\d+)?Z$/, " UTC");
}

/** The strip of running and queued jobs; also what the live event stream sends, so it is rendered in one place. */
export function jobStrip(jobs: Job[]): Html {
  if (jobs.length === 0) return html`<p class="idle">No jobs running or queued.</p>`;
  return html`<ol class="jobs">${jobs.map((job) => {
    const progress = job.progress ?? { step: 0, totalSteps: job.request.steps };
    const running = job.state === "running";
    return html`<li class="job ${job.state}" data-job="${job.id}">
<span class="state">${running ? `step ${progress.step}/${progress.totalSteps}` : "queued"}</span>
${running ? html`<progress max="${progress.totalSteps}" value="${progress.step}"></progress>` : ""}
<span class="what">${job.request.prompt}</span>
<span class="model">${job.request.model.name}</span>
</li>`;
  })}</ol>`;
}

function card(record: ImageRecord): Html {
  const preview = storedPreview(record);
  const [width, height] = preview ? [preview.width, preview.height] : [record.width, record.height];
  return html`<article class="card">
<a href="/gallery/image/${keyPath(record.key)}"><img loading="lazy" decoding="async" src="/gallery/preview/${keyPath(record.key)}" width="${width}" height="${height}" alt="${record.prompt}"></a>
<p class="prompt" title="${record.prompt}">${record.prompt}</p>
<p class="facts">${record.model} · ${record.width}×${record.height} · seed ${record.seed} · <time datetime="${record.createdAt}">${shortTime(record.createdAt)}</time></p>
<button type="button" class="select" data-key="${record.key}">Select</button>
</article>`;
}

/** The dialog Select opens: the imageRef JSON, and a button that copies it. */
const selectDialog = html`<dialog id="select-dialog">
<p>imageRef for <code id="select-key"></code></p>
<pre id="imageref"></pre>
<p class="actions"><button type="button" id="copy">Copy</button> <span id="copied" role="status"></span>
<button type="button" id="close-dialog">Close</button></p>
</dialog>`;

export function galleryPage(view: {
  images: ImageRecord[];
  nextCursor: string | null;
  /** A page size other than the default, kept in the paging links. */
  perPage: number | null;
  paged: boolean;
  jobs: Job[];
  total: number;
  newestKey: string | null;
}): string {
  const { images, nextCursor, perPage, paged, jobs, total, newestKey } = view;
  const sized = perPage === null ? "" : `per_page=${perPage}`;
  return layout(
    "Gallery",
    html`<section id="jobs" aria-live="polite" aria-label="Jobs">${jobStrip(jobs)}</section>
<p id="fresh" hidden><a href="/gallery">New images are ready: show the newest</a></p>
<main data-newest="${newestKey ?? ""}" data-first-page="${paged ? "no" : "yes"}">
${images.length === 0 ? html`<p class="empty">${paged ? "No more images." : "No images yet: generate_image makes the first."}</p>` : ""}
<div class="grid">${images.map(card)}</div>
<nav class="pager">
${paged ? html`<a href="/gallery${sized ? `?${sized}` : ""}">Newest</a>` : ""}
<span class="count">${total} image${total === 1 ? "" : "s"}</span>
${nextCursor ? html`<a rel="next" href="/gallery?${sized ? `${sized}&` : ""}cursor=${encodeURIComponent(nextCursor)}">Older →</a>` : ""}
</nav>
</main>
${selectDialog}`,
  );
}

/** Sidecar fields shown in the detail table, in this order; the rest are in the full JSON below it. */
function parameterRows(record: ImageRecord): Array<[string, string]> {
  const sidecar = record.metadata as Record<string, any>;
  const request = (sidecar.request ?? {}) as Record<string, any>;
  const rows: Array<[string, unknown]> = [
    ["Prompt", request.prompt ?? record.prompt],
    ["Negative prompt", request.negativePrompt],
    ["Model", `${record.model}${sidecar.family ? ` (${sidecar.family})` : ""}`],
    ["Size", `${record.width}×${record.height}`],
    ["Seed", record.seed],
    ["Steps", request.steps],
    ["CFG scale", request.cfgScale],
    ["Scheduler", sidecar.scheduler],
    ["Refiner", request.refiner ? JSON.stringify(request.refiner) : undefined],
    ["LoRAs", Array.isArray(request.loras) && request.loras.length > 0 ? request.loras.map((lora: { name: string; weight: number }) => `${lora.name}: ${lora.weight}`).join(", ") : undefined],
    ["Start image", request.initImage ? `${request.initImage.key} (strength ${request.initImage.strength})` : undefined],
    ["Batch", sidecar.batch ? `${sidecar.batch.index + 1} of ${sidecar.batch.count}` : undefined],
    ["Prompt tokens", sidecar.promptTokens],
    ["Device", sidecar.device ? `${sidecar.device}${sidecar.dtype ? ` ${sidecar.dtype}` : ""}` : undefined],
    ["Timings (s)", sidecar.timings ? Object.entries(sidecar.timings).map(([name, value]) => `${name.replace(/Seconds$/, "")} ${value}`).join(", ") : undefined],
    ["Engine", sidecar.engine],
    ["Job", record.jobId],
    ["Made", record.createdAt],
    ["Key", record.key],
  ];
  return rows.filter(([, value]) => value !== undefined && value !== null && value !== "").map(([name, value]) => [name, String(value)]);
}

export interface RegenerateDefaults {
  prompt: string;
  negative_prompt?: string;
  model: string;
  width: number;
  height: number;
  steps: number;
  cfg_scale: number;
  seed: number;
  scheduler?: string;
}

export function regenerateDefaults(record: ImageRecord): RegenerateDefaults {
  const request = ((record.metadata as Record<string, any>).request ?? {}) as Record<string, any>;
  return {
    prompt: request.prompt ?? record.prompt,
    negative_prompt: request.negativePrompt ?? undefined,
    model: record.model,
    width: record.width,
    height: record.height,
    steps: request.steps,
    cfg_scale: request.cfgScale,
    seed: record.seed,
    scheduler: request.scheduler ?? undefined,
  };
}

/** "Generate again with this seed": the image's settings, ready to change and queue. */
export function regenerateForm(values: RegenerateDefaults, models: string[], formToken: string, error?: string): Html {
  const number = (name: keyof RegenerateDefaults, label: string, attributes: Html) =>
    html`<label>${label} <input type="number" name="${name}" value="${values[name] ?? ""}" ${attributes}></label>`;
  return html`<form class="regenerate" method="post" action="/gallery/generate">
<h2>Generate again</h2>
<input type="hidden" name="form_token" value="${formToken}">
${error ? html`<p class="error" role="alert">${error}</p>` : ""}
<label>Prompt <textarea name="prompt" rows="3" required>${values.prompt}</textarea></label>
<label>Negative prompt <textarea name="negative_prompt" rows="2">${values.negative_prompt ?? ""}</textarea></label>
<div class="row">
<label>Model <select name="model">${models.map((name) => html`<option${name === values.model ? html` selected` : ""}>${name}</option>`)}</select></label>
<label>Scheduler <select name="scheduler"><option value="">model default</option>${SCHEDULERS.map((name) => html`<option${name === values.scheduler ? html` selected` : ""}>${name}</option>`)}</select></label>
</div>
<div class="row">
${number("width", "Width", html`step="8"`)}
${number("height", "Height", html`step="8"`)}
${number("steps", "Steps", html`min="1"`)}
${number("cfg_scale", "CFG", html`step="0.5"`)}
${number("seed", "Seed", html`min="0"`)}
</div>
<button type="submit">Queue it</button>
</form>`;
}

export function detailPage(record: ImageRecord, imageRef: ImageRef, models: string[], formToken: string): string {
  return layout(
    record.prompt.slice(0, 60),
    html`<main class="detail">
<p><a href="/gallery">← Gallery</a></p>
<figure><a href="${imageRef.downloadUrl}"><img src="${imageRef.downloadUrl}" width="${record.width}" height="${record.height}" alt="${record.prompt}"></a></figure>
<p class="actions"><button type="button" class="select" data-key="${record.key}">Select</button></p>
<table class="parameters">${parameterRows(record).map(([name, value]) => html`<tr><th scope="row">${name}</th><td>${value}</td></tr>`)}</table>
<details><summary>Sidecar JSON</summary><pre>${JSON.stringify(record.metadata, null, 2)}</pre></details>
${regenerateForm(regenerateDefaults(record), models, formToken)}
</main>
${selectDialog}`,
  );
}

export function messagePage(title: string, body: Html): string {
  return layout(title, html`<main class="message">${body}</main>`);
}

export function loginPage(next: string, error?: string): string {
  return layout(
    "Log in",
    html`<main class="login">
<form method="post" action="/gallery/login">
<h1>Log in</h1>
<p>This server needs its token (KITTY_IMAGES_TOKEN). It is kept in a cookie for this browser, not in the page's address.</p>
${error ? html`<p class="error" role="alert">${error}</p>` : ""}
<input type="hidden" name="next" value="${next}">
<label>Token <input type="password" name="token" autocomplete="current-password" required autofocus></label>
<button type="submit">Log in</button>
</form>
</main>`,
  );
}
