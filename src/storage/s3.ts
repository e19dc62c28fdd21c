import {
  CreateBucketCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  HeadBucketCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { readFile } from "node:fs/promises";
import type { S3Settings } from "../config.js";
import { KittyError, messageOf } from "../core/errors.js";
import type { ImageStore, StoredImage } from "./imageStore.js";
import { isPermanentFileError, previewKey, sidecarKey, type StoredSidecar } from "./imageStore.js";
import type { ImageSidecar } from "../images/sidecar.js";

/** S3 refusals that waiting will not fix; anything else (timeouts, 5xx, SlowDown, RequestTimeout) is retried. */
const PERMANENT_S3_ERRORS = new Set([
  "AccessDenied",
  "AllAccessDisabled",
  "InvalidAccessKeyId",
  "SignatureDoesNotMatch",
  "NoSuchBucket",
  "InvalidBucketName",
  "AccountProblem",
  "EntityTooLarge",
  // Only reads meet it (an image-to-image job's start image deleted): waiting will not bring the object back.
  "NoSuchKey",
]);

function isNotFound(error: unknown): boolean {
  if (!(error instanceof S3ServiceException)) return false;
  return error.$metadata.httpStatusCode === 404 || error.name === "NotFound" || error.name === "NoSuchBucket" || error.name === "NoSuchKey";
}

/** MinIO or any S3. Path-style addressing whenever an endpoint is given, as MinIO expects. */
export class S3ImageStore implements ImageStore {
  readonly kind = "s3";
  private readonly client: S3Client;
  /** Signs download URLs for the address other machines use (S3_PUBLIC_ENDPOINT_URL); no request goes through it. */
  private readonly presigner: S3Client;
  /** Set once the bucket is known to exist; until then every put checks (and creates) it first. */
  private bucketReady = false;

  constructor(private readonly settings: S3Settings) {
    this.client = S3ImageStore.clientFor(settings, settings.endpoint);
    this.presigner = settings.publicEndpoint ? S3ImageStore.clientFor(settings, settings.publicEndpoint) : this.client;
  }

  private static clientFor(settings: S3Settings, endpoint: string | undefined): S3Client {
    return new S3Client({
      region: settings.region,
      ...(endpoint && { endpoint, forcePathStyle: true }),
      ...(settings.accessKeyId &&
        settings.secretAccessKey && {
          credentials: { accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey },
        }),
      maxAttempts: 3,
      // A dropped VPN or a sleeping NAS must fail a call, not hang the queue behind it.
      requestHandler: { connectionTimeout: 5_000, requestTimeout: 120_000 },
    });
  }

  private describe(): string {
    return `s3://${this.settings.bucket} at ${this.settings.endpoint ?? "AWS"}`;
  }

  async ensureReady(): Promise<void> {
    const Bucket = this.settings.bucket;
    try {
      await this.client.send(new HeadBucketCommand({ Bucket }));
      this.bucketReady = true;
      return;
    } catch (error) {
      if (!isNotFound(error)) {
        throw new KittyError("storage_unavailable", `cannot reach ${this.describe()}: ${messageOf(error)}; check S3_ENDPOINT_URL and the S3 keys`);
      }
    }
    try {
      await this.client.send(new CreateBucketCommand({ Bucket }));
    } catch (error) {
      const name = (error as { name?: string }).name;
      if (name !== "BucketAlreadyOwnedByYou" && name !== "BucketAlreadyExists") {
        throw new KittyError("storage_unavailable", `cannot create bucket ${this.describe()}: ${messageOf(error)}`);
      }
    }
    this.bucketReady = true;
  }

  async put(key: string, pngPath: string, sidecar: StoredSidecar, previewPath?: string): Promise<void> {
    const Bucket = this.settings.bucket;
    // Storage may have been down when the server started: make sure of the bucket before the first upload.
    if (!this.bucketReady) await this.ensureReady();
    await this.client.send(new PutObjectCommand({ Bucket, Key: key, Body: await readFile(pngPath), ContentType: "image/png" }));
    if (previewPath) {
      await this.client.send(new PutObjectCommand({ Bucket, Key: previewKey(key), Body: await readFile(previewPath), ContentType: "image/webp" }));
    }
    await this.client.send(
      new PutObjectCommand({
        Bucket,
        Key: sidecarKey(key),
        Body: JSON.stringify(sidecar, null, 2),
        ContentType: "application/json",
      }),
    );
  }

  async readSidecar(key: string): Promise<ImageSidecar | undefined> {
    const Bucket = this.settings.bucket;
    try {
      // The PNG goes up first, so a sidecar present means both are.
      const object = await this.client.send(new GetObjectCommand({ Bucket, Key: sidecarKey(key) }));
      return JSON.parse(await object.Body!.transformToString()) as ImageSidecar;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async *listImages(prefix: string): AsyncIterable<StoredImage> {
    const Bucket = this.settings.bucket;
    // ListObjectsV2 hands out at most 1,000 keys a page: follow the continuation token to the end.
    let ContinuationToken: string | undefined;
    do {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket, Prefix: prefix, ContinuationToken }));
      for (const object of page.Contents ?? []) {
        if (object.Key?.endsWith(".png")) yield { key: object.Key, bytes: object.Size ?? 0, lastModified: object.LastModified ?? new Date(0) };
      }
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken);
  }

  async readImage(key: string): Promise<Buffer> {
    const object = await this.client.send(new GetObjectCommand({ Bucket: this.settings.bucket, Key: key }));
    return Buffer.from(await object.Body!.transformToByteArray());
  }

  isPermanentError(error: unknown): boolean {
    if (error instanceof S3ServiceException) return PERMANENT_S3_ERRORS.has(error.name);
    // Otherwise reading the staged PNG failed, which no retry mends.
    return isPermanentFileError(error);
  }

  storageUri(key: string): string {
    return `s3://${this.settings.bucket}/${key}`;
  }

  downloadUrl(key: string, ttlSeconds: number): Promise<string> {
    return getSignedUrl(this.presigner, new GetObjectCommand({ Bucket: this.settings.bucket, Key: key }), { expiresIn: ttlSeconds });
  }
}
