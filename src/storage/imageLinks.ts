import type { ImageStore } from "./imageStore.js";
import { LinkSigner } from "./signedLinks.js";

/** What downstream tools get for an image: a URL to fetch it and where it lives. */
export interface ImageRef {
  downloadUrl: string;
  storageUri: string;
}

/** Turns a stored key into an imageRef; every door (select_image, REST select) goes through the same one. */
export interface ImageLinks {
  imageRef(key: string): Promise<ImageRef & { expiresAt: Date | null }>;
}

/**
 * S3: a presigned GET. Local folder: a `file://` URL, or, when an HTTP door serves the files
 * (`filesBaseUrl`), a signed link to it that other hosts can open; `storageUri` stays `file://` either way.
 */
export function imageLinks(store: ImageStore, ttlSeconds: number, files?: { baseUrl: string; home: string }): ImageLinks {
  const signer = files && store.kind === "local" ? LinkSigner.forHome(files.home) : null;
  return {
    async imageRef(key) {
      const storageUri = store.storageUri(key);
      if (signer && files) {
        const { url, expiresAt } = signer.link(files.baseUrl, key, ttlSeconds);
        return { downloadUrl: url, storageUri, expiresAt };
      }
      const downloadUrl = await store.downloadUrl(key, ttlSeconds);
      return { downloadUrl, storageUri, expiresAt: store.kind === "s3" ? new Date(Date.now() + ttlSeconds * 1000) : null };
    },
  };
}
