import { RESOURCE_MIME_TYPE, registerAppResource } from "@modelcontextprotocol/ext-apps/server";
import type { McpServer } from "@modelcontextprotocol/server";
import { readFileSync } from "node:fs";
import path from "node:path";
import { PROJECT_ROOT } from "../../config.js";

/** The gallery as an MCP App: list_latest_images points here, and clients that render Apps show a grid of previews. */
export const GALLERY_APP_URI = "ui://kitty-images/gallery.html";

let html: string | null = null;

/** The App's page: one self-contained file (the host frames it with no network), read once. */
function galleryAppHtml(): string {
  html ??= readFileSync(path.join(PROJECT_ROOT, "web", "gallery-app.html"), "utf8");
  return html;
}

export function registerGalleryApp(server: McpServer): void {
  registerAppResource(
    server,
    "Image gallery",
    GALLERY_APP_URI,
    { description: "The newest images as previews; picking one hands its imageRef to the conversation.", mimeType: RESOURCE_MIME_TYPE },
    async () => ({
      contents: [{ uri: GALLERY_APP_URI, mimeType: RESOURCE_MIME_TYPE, text: galleryAppHtml(), _meta: { ui: { prefersBorder: true } } }],
    }),
  );
}
