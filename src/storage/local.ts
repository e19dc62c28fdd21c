import { copyFile, mkdir, readdir, readFile, rename, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { KittyError } from "../core/errors.js";
import type { ImageStore, StoredImage } from "./imageStore.js";
import { isPermanentFileError, previewKey, sidecarKey, type StoredSidecar } from "./imageStore.js";
import type { ImageSidecar } from "../images/sidecar.js";

/** The embedded default: a folder on this machine. URIs are file:// URLs, readable by tools on the same host. */
export class LocalImageStore implements ImageStore {
  readonly kind = "local";

  constructor(private readonly root: string) {}

  async ensureReady(): Promise<void> {
    await mkdir(this.root, { recursive: true });
  }

  /** The file a key is stored in; never outside the folder, even for a key no door checked (an index row, a listing). */
  fileFor(key: string): string {
    const file = path.join(this.root, ...key.split("/"));
    const inside = path.relative(this.root, file);
    if (inside === ".." || inside.startsWith(`..${path.sep}`) || path.isAbsolute(inside)) {
      throw new KittyError("invalid_argument", `key ${JSON.stringify(key.slice(0, 80))} would lead outside the image folder ${this.root}`, "key");
    }
    return file;
  }

  async put(key: string, pngPath: string, sidecar: StoredSidecar, previewPath?: string): Promise<void> {
    const target = this.fileFor(key);
    await mkdir(path.dirname(target), { recursive: true });
    // Copy then rename, so a reader never sees half a file.
    const place = async (source: string, file: string) => {
      await copyFile(source, `${file}.partial`);
      await rename(`${file}.partial`, file);
    };
    await place(pngPath, target);
    if (previewPath) await place(previewPath, this.fileFor(previewKey(key)));
    const sidecarPath = this.fileFor(sidecarKey(key));
    await writeFile(`${sidecarPath}.partial`, JSON.stringify(sidecar, null, 2));
    await rename(`${sidecarPath}.partial`, sidecarPath);
  }

  async readSidecar(key: string): Promise<ImageSidecar | undefined> {
    let text: string;
    try {
      // The PNG goes down first, so a sidecar present means both are.
      text = await readFile(this.fileFor(sidecarKey(key)), "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
    return JSON.parse(text) as ImageSidecar;
  }

  async *listImages(prefix: string): AsyncIterable<StoredImage> {
    const names = await readdir(this.fileFor(prefix.replace(/\/+$/, "")), { recursive: true }).catch(() => [] as string[]);
    for (const name of names) {
      if (!name.endsWith(".png")) continue;
      const key = `${prefix.replace(/\/+$/, "")}/${name.split(path.sep).join("/")}`;
      const info = await stat(this.fileFor(key)).catch(() => null);
      if (info?.isFile()) yield { key, bytes: info.size, lastModified: info.mtime };
    }
  }

  readImage(key: string): Promise<Buffer> {
    return readFile(this.fileFor(key));
  }

  isPermanentError(error: unknown): boolean {
    return isPermanentFileError(error);
  }

  storageUri(key: string): string {
    return pathToFileURL(this.fileFor(key)).href;
  }

  async downloadUrl(key: string): Promise<string> {
    return this.storageUri(key);
  }
}
