import { z } from "zod";
import { boundedInt } from "../../core/arguments.js";
import { GALLERY_APP_URI } from "./galleryApp.js";
import { defineTool } from "./toolKit.js";

export const listLatestImages = defineTool({
  name: "list_latest_images",
  icon: "M4 4h7v7H4zM13 4h7v7h-7zM4 13h7v7H4zM13 13h7v7h-7z",
  description: "Images made, newest first (index 1), keys for select_image; nextCursor pages.",
  annotations: { readOnlyHint: true, openWorldHint: false },
  appUri: GALLERY_APP_URI,
  input: {
    limit: boundedInt("limit", 1, 200).optional(),
    cursor: z.string({ error: "cursor must be the nextCursor string from an earlier list_latest_images" }).optional(),
  },
  output: {
    images: z.array(
      z.object({
        index: z.number().int(),
        key: z.string(),
        createdAt: z.string(),
        prompt: z.string(),
        model: z.string(),
        width: z.number().int(),
        height: z.number().int(),
        seed: z.number().int(),
      }),
    ),
    nextCursor: z.string().nullable(),
  },
  async handler({ limit, cursor }, { index }) {
    const page = await index.latest(limit ?? 36, cursor);
    const images = page.images.map(({ index: position, key, createdAt, prompt, model, width, height, seed }) => ({
      index: position,
      key,
      createdAt,
      prompt,
      model,
      width,
      height,
      seed,
    }));
    const first = images[0];
    const summary = first
      ? `${images.length} image(s), newest first, #${first.index} ${first.key} ("${first.prompt.slice(0, 60)}"). ` +
        `Next: select_image {"index":${first.index}} or {"key":"…"} for an imageRef${page.nextCursor ? "; more with cursor=nextCursor" : ""}.`
      : cursor
        ? "No more images."
        : "No images yet: call generate_image first.";
    return { structured: { images, nextCursor: page.nextCursor }, summary };
  },
});
