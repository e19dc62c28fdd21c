import type { S3Settings } from "../config.js";
import type { ImageStore, StoredImage, StoredSidecar } from "./imageStore.js";
import type { S3ImageStore } from "./s3.js";
import type { ImageSidecar } from "../images/sidecar.js";

/**
 * The S3 store, loaded on first use: the AWS SDK takes a tenth of a second to import, and a stdio server should
 * answer its client's first requests before paying for it. What needs no SDK (URIs, the download host) is
 * answered at once.
 */
export class DeferredS3Store implements ImageStore {
  readonly kind = "s3";
  private loading: Promise<S3ImageStore> | null = null;
  private loaded: S3ImageStore | null = null;

  constructor(private readonly settings: S3Settings) {}

  private store(): Promise<S3ImageStore> {
    this.loading ??= import("./s3.js").then(({ S3ImageStore }) => (this.loaded = new S3ImageStore(this.settings)));
    return this.loading;
  }

  async ensureReady(): Promise<void> {
    await (await this.store()).ensureReady();
  }

  async put(key: string, pngPath: string, sidecar: StoredSidecar, previewPath?: string): Promise<void> {
    await (await this.store()).put(key, pngPath, sidecar, previewPath);
  }

  async readSidecar(key: string): Promise<ImageSidecar | undefined> {
    return (await this.store()).readSidecar(key);
  }

  async *listImages(prefix: string): AsyncIterable<StoredImage> {
    yield* (await this.store()).listImages(prefix);
  }

  async readImage(key: string): Promise<Buffer> {
    return (await this.store()).readImage(key);
  }

  async downloadUrl(key: string, ttlSeconds: number): Promise<string> {
    return (await this.store()).downloadUrl(key, ttlSeconds);
  }

  /** Errors come from calls that loaded the store; before that there is nothing to classify. */
  isPermanentError(error: unknown): boolean {
    return this.loaded?.isPermanentError(error) ?? false;
  }

  storageUri(key: string): string {
    return `s3://${this.settings.bucket}/${key}`;
  }

  /** The host presigned URLs carry, for the start-up warning about loopback links. */
  get downloadHost(): string | null {
    const endpoint = this.settings.publicEndpoint ?? this.settings.endpoint;
    return endpoint ? new URL(endpoint).hostname : null;
  }
}
