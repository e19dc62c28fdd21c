import type { ServerResponse } from "node:http";
import type { App } from "../mcp/app.js";
import { queryLimit, sendJson } from "./body.js";

/**
 * GET /api/images/uploads: the images users brought (data: URLs, files, fetched URLs), newest first, apart from
 * the generations /api/images/latest lists; each with where it came from and an imageRef to fetch it by.
 */
export async function listUploads(app: App, url: URL, response: ServerResponse): Promise<void> {
  const limit = queryLimit(url, response);
  if (limit === null) return;
  const uploads = await app.imageInputs.uploads.latest(limit);
  const items = await Promise.all(
    uploads.map(async (upload) => {
      const { downloadUrl, storageUri } = await app.links.imageRef(upload.key);
      const origin = upload.metadata.origin as { from?: string } | undefined;
      return {
        key: upload.key,
        width: upload.width,
        height: upload.height,
        created_at: upload.createdAt,
        format: upload.metadata.format ?? null,
        from: origin?.from ?? null,
        image_ref: { downloadUrl, storageUri },
      };
    }),
  );
  sendJson(response, 200, { items });
}
