import { z } from "zod";
import { messageOf } from "../../core/errors.js";
import type { ImageRecord } from "../../queue/ports.js";
import type { StoredPreview } from "../../images/sidecar.js";
import type { ImageContent, ToolDeps } from "./toolKit.js";

/**
 * What previews one result may carry, in stored bytes (base64 adds a third). Clients cap a tool result (Claude
 * Desktop ~1 MB, Claude Code ~25k tokens): two previews at the runner's 64 KB ceiling fit, more are left to select_image.
 */
export const PREVIEW_RESULT_BUDGET = 128_000;

export const previewArgument = z
  .boolean({ error: (issue) => `preview must be true or false (got ${JSON.stringify(issue.input)})` })
  .optional();

export function storedPreview(record: ImageRecord): StoredPreview | undefined {
  const preview = record.metadata.preview as StoredPreview | undefined;
  return preview && typeof preview.key === "string" ? preview : undefined;
}

/**
 * The previews of these images as image content, in order, while the budget lasts. What could not be shown
 * (no preview stored, storage unreachable, over budget) comes back as one sentence for the summary, never an error:
 * the text and structured result are the answer, pixels an extra.
 */
export async function previewImages(records: ImageRecord[], { store, log }: Pick<ToolDeps, "store" | "log">): Promise<{ images: ImageContent[]; note: string }> {
  const images: ImageContent[] = [];
  const missing: string[] = [];
  const unread: string[] = [];
  const overBudget: string[] = [];
  let spent = 0;
  for (const record of records) {
    const preview = storedPreview(record);
    if (!preview) {
      missing.push(record.key);
      continue;
    }
    if (spent + preview.bytes > PREVIEW_RESULT_BUDGET) {
      overBudget.push(record.key);
      continue;
    }
    try {
      const bytes = await store.readImage(preview.key);
      spent += bytes.length;
      images.push({ data: bytes.toString("base64"), mimeType: preview.mimeType });
    } catch (error) {
      log.warn({ key: preview.key, error: messageOf(error) }, "could not read a preview");
      unread.push(record.key);
    }
  }
  const notes = [
    missing.length > 0 && `No preview is stored for ${missing.join(", ")} (made before previews existed, or by an engine that writes none).`,
    unread.length > 0 && `The preview of ${unread.join(", ")} could not be read from storage just now.`,
    overBudget.length > 0 && `Previews of ${overBudget.join(", ")} were left out to keep this result small: select_image {"key", "preview": true} shows one.`,
  ].filter((note): note is string => typeof note === "string");
  return { images, note: notes.join(" ") };
}
