import { z } from "zod";
import { KittyError } from "../../core/errors.js";
import { checkImageKey } from "../../storage/imageKeys.js";
import { boundedInt } from "../../core/arguments.js";
import { previewArgument, previewImages } from "./previewImages.js";
import { defineTool } from "./toolKit.js";

export const selectImage = defineTool({
  name: "select_image",
  icon: "M4 4h16v16H4zM8 12l3 3 5-6",
  description:
    "An imageRef {downloadUrl, storageUri} by key or index (1 = newest); preview: true adds a small image.",
  annotations: { readOnlyHint: true, openWorldHint: false },
  input: {
    key: z.string({ error: "key must be a string such as images/20261125_101500_ab12cd34.png" }).optional(),
    index: boundedInt("index", 1, 1_000_000).optional(),
    preview: previewArgument,
  },
  output: {
    imageRef: z.object({ downloadUrl: z.string(), storageUri: z.string() }),
    key: z.string(),
    downloadUrlExpiresAt: z.string().nullable(),
    metadata: z.record(z.string(), z.unknown()),
  },
  async handler({ key, index: position, preview }, deps) {
    const { index, links, config } = deps;
    if ((key === undefined) === (position === undefined)) {
      throw new KittyError("invalid_argument", "give exactly one of key or index (index 1 = the newest image in list_latest_images)");
    }
    let record;
    if (key !== undefined) {
      checkImageKey(key, config.keyPrefix);
      record = await index.byKey(key);
      if (!record) throw new KittyError("not_found", `no image with key '${key}'; list_latest_images shows the keys there are`);
    } else {
      record = await index.atIndex(position!);
      if (!record) throw new KittyError("not_found", `there is no image #${position}; list_latest_images shows how many there are`);
    }
    const { expiresAt: expiry, ...imageRef } = await links.imageRef(record.key);
    const expiresAt = expiry?.toISOString() ?? null;
    const shown = preview ? await previewImages([record], deps) : { images: [], note: "" };
    return {
      structured: {
        imageRef,
        key: record.key,
        downloadUrlExpiresAt: expiresAt,
        metadata: { prompt: record.prompt, model: record.model, width: record.width, height: record.height, seed: record.seed, createdAt: record.createdAt, ...record.metadata },
      },
      summary: `imageRef for ${record.key}: ${imageRef.storageUri}${expiresAt ? ` (downloadUrl valid until ${expiresAt})` : ""}. Pass imageRef to the downstream tool.${shown.note ? ` ${shown.note}` : ""}`,
      images: shown.images,
    };
  },
});
