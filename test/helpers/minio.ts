import { S3Client } from "@aws-sdk/client-s3";
import { execa, type ResultPromise } from "execa";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { PROJECT_ROOT } from "./paths.js";
import { waitUntil } from "./waitUntil.js";

export interface MinioServer {
  endpoint: string;
  accessKey: string;
  secretKey: string;
  stop(): Promise<void>;
  /** Stops the process but keeps its data, so start() brings the same bucket back (an S3 outage). */
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** SIGSTOP: MinIO keeps its port and sockets but answers nothing, so a request in flight hangs until thaw(). */
  freeze(): void;
  thaw(): void;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

async function waitHealthy(endpoint: string, timeoutMs: number): Promise<void> {
  await waitUntil(`MinIO at ${endpoint} is healthy`, async () => {
    try {
      return (await fetch(`${endpoint}/minio/health/live`)).ok;
    } catch {
      return false; // not listening yet
    }
  }, { timeoutMs, intervalMs: 200 });
}

/** A real MinIO on a free loopback port, in a temp folder, with random credentials. */
export async function startMinio(): Promise<MinioServer> {
  const binary = process.env.KITTY_IMAGES_MINIO_BIN ?? path.join(PROJECT_ROOT, ".cache", "bin", "minio");
  const dataDir = await mkdtemp(path.join(tmpdir(), "kitty-minio-"));
  const port = await freePort();
  const consolePort = await freePort();
  const accessKey = `kitty${randomBytes(6).toString("hex")}`;
  const secretKey = randomBytes(18).toString("hex");
  const endpoint = `http://127.0.0.1:${port}`;
  let child: ResultPromise | null = null;

  const launch = async () => {
    child = execa(binary, ["server", dataDir, "--address", `127.0.0.1:${port}`, "--console-address", `127.0.0.1:${consolePort}`, "--quiet"], {
      env: { MINIO_ROOT_USER: accessKey, MINIO_ROOT_PASSWORD: secretKey, MINIO_BROWSER: "off", MINIO_UPDATE: "off" },
      reject: false,
      stdout: "ignore",
      stderr: "pipe",
    });
    await waitHealthy(endpoint, 60_000);
  };
  const signal = (name: "SIGSTOP" | "SIGCONT") => {
    if (child?.pid === undefined) throw new Error("MinIO is not running");
    process.kill(child.pid, name);
  };
  const halt = async () => {
    if (!child) return;
    child.kill("SIGKILL");
    await child;
    child = null;
  };

  await launch();
  return {
    endpoint,
    accessKey,
    secretKey,
    pause: halt,
    resume: launch,
    freeze: () => signal("SIGSTOP"),
    thaw: () => signal("SIGCONT"),
    async stop() {
      await halt();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** A plain S3 client of the tests' own, to check what the server stored without going through it. */
export function s3ClientFor(minio: MinioServer): S3Client {
  return new S3Client({
    endpoint: minio.endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
  });
}
