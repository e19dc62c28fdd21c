import { execa, type ResultPromise } from "execa";
import { createWriteStream } from "node:fs";
import path from "node:path";
import { freePort } from "./minio.js";
import { SERVER_ENTRY } from "./paths.js";
import { serverEnv, type TestHome } from "./server.js";
import { waitUntil } from "./waitUntil.js";

export interface RunningHttpServer {
  url: string;
  logPath: string;
  stop(): Promise<void>;
}

/** The built server with `serve --http` on a free loopback port, ready once /healthz answers (503 too: storage may be down on purpose). */
export async function startHttpServer(testHome: TestHome, extraEnv: Record<string, string> = {}): Promise<RunningHttpServer> {
  const port = await freePort();
  const logPath = path.join(testHome.home, `http-server-${port}.log`);
  const child: ResultPromise = execa(process.execPath, [SERVER_ENTRY, "serve", "--http", "--port", String(port)], {
    env: serverEnv(testHome, extraEnv),
    extendEnv: false,
    reject: false,
    stdout: "ignore",
    stderr: "pipe",
  });
  child.stderr?.pipe(createWriteStream(logPath));
  const url = `http://127.0.0.1:${port}`;
  await waitUntil(`the HTTP server on ${url} answers /healthz`, async () => (await fetch(`${url}/healthz`).catch(() => null)) !== null, { timeoutMs: 30_000, intervalMs: 100 });
  return {
    url,
    logPath,
    async stop() {
      child.kill("SIGTERM");
      await child;
    },
  };
}
