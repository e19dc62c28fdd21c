import type { S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, inject } from "vitest";
import { s3ClientFor, startMinio, type MinioServer } from "./minio.js";
import { readPng, type DecodedPng } from "./png.js";
import { makeTestHome, s3Env, startServer, waitForJob, type RunningServer } from "./server.js";

/** generate_image, then job_status until the job ends; throws unless it ended done. */
export async function generateDone(server: RunningServer, args: Record<string, unknown>) {
  const queued = await server.ok("generate_image", args);
  if (queued.status !== "queued") throw new Error(`generate_image answered ${JSON.stringify(queued)}`);
  const status = await waitForJob(server, queued.jobId);
  if (status.status !== "done") throw new Error(`job ${queued.jobId} ended ${JSON.stringify(status)}`);
  return { queued, status };
}

/** select_image, then the PNG its downloadUrl serves (a download that is not 200 throws). */
export async function downloadImage(server: RunningServer, key: string): Promise<{ selected: Record<string, any>; png: DecodedPng }> {
  const selected = await server.ok("select_image", { key });
  const response = await fetch(selected.imageRef.downloadUrl);
  if (response.status !== 200) throw new Error(`GET ${selected.imageRef.downloadUrl} answered ${response.status}`);
  return { selected, png: readPng(Buffer.from(await response.arrayBuffer())) };
}

/**
 * For a describe block: MinIO, the built server over stdio storing in `bucket`, and an S3 client of its own to
 * check what storage holds; started before the block's tests and stopped after them. Read the fields in tests.
 * `extraEnv` is asked for in the hook, after the block's own earlier hooks (a port they opened, a folder they made).
 */
export function serverOnMinio(bucket: string, extraEnv: () => Record<string, string> = () => ({})) {
  const context = {} as { minio: MinioServer; server: RunningServer; s3: S3Client };
  beforeAll(async () => {
    context.minio = await startMinio();
    context.server = await startServer(await makeTestHome(inject("tinyModelsDir")), { ...s3Env(context.minio, bucket), ...extraEnv() });
    context.s3 = s3ClientFor(context.minio);
  });
  afterAll(async () => {
    await context.server?.close();
    context.s3?.destroy();
    await context.minio?.stop();
  });
  return context;
}
