import { Client, type JSONRPCMessage, type Transport } from "@modelcontextprotocol/client";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { StdioClientTransport } from "@modelcontextprotocol/client/stdio";
import { createTaskSessionFromClient, type TaskEnabledSession } from "@modelcontextprotocol/ext-tasks/client";
import { createWriteStream } from "node:fs";
import path from "node:path";
import { SERVER_ENTRY } from "./paths.js";
import { serverEnv, type TestHome } from "./server.js";

/** What the ext-tasks client sends where the SDK Client's codec would refuse a task result (its `rawDispatch`). */
type RawDispatch = (request: unknown) => Promise<{ kind: "result"; result: any } | { kind: "error"; error: { code: number; message: string; data?: any } }>;

const CLIENT_INFO = { name: "kitty-images-task-tests", version: "0.0.0" };
const MODERN = "2026-07-28";

/**
 * A stdio transport the SDK Client drives as usual, with a second way in: `raw` sends a JSON-RPC request of its own
 * id and takes its answer before the Client could see (and refuse) it.
 */
class TappedStdio implements Transport {
  onmessage?: Transport["onmessage"];
  onclose?: Transport["onclose"];
  onerror?: Transport["onerror"];
  private readonly pending = new Map<string, (message: any) => void>();
  private next = 0;

  constructor(readonly inner: StdioClientTransport) {}

  async start(): Promise<void> {
    this.inner.onmessage = (message: JSONRPCMessage) => {
      const id = (message as { id?: unknown }).id;
      const raw = typeof id === "string" ? this.pending.get(id) : undefined;
      if (raw) {
        this.pending.delete(id as string);
        raw(message);
      } else this.onmessage?.(message);
    };
    this.inner.onclose = () => this.onclose?.();
    this.inner.onerror = (error) => this.onerror?.(error);
    await this.inner.start();
  }

  send(message: JSONRPCMessage): Promise<void> {
    return this.inner.send(message);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  readonly raw: RawDispatch = async (request) => {
    const id = `raw-${++this.next}`;
    const answer = new Promise<any>((resolve) => this.pending.set(id, resolve));
    await this.inner.send({ ...(request as object), jsonrpc: "2.0", id } as JSONRPCMessage);
    const message = await answer;
    return message.error ? { kind: "error", error: message.error } : { kind: "result", result: message.result };
  };
}

/** Raw JSON-RPC over the 2026-07-28 HTTP wire: the headers the SDK's HTTP client would send, and a JSON or SSE answer. */
function httpRawDispatch(mcpUrl: string, token?: string): RawDispatch {
  let next = 0;
  return async (request) => {
    const { method, params } = request as { method: string; params?: { name?: string; taskId?: string } };
    // The 2026-07-28 HTTP wire names what a request is about in a header: the tool, or the task (SEP-2663).
    const name = method === "tools/call" ? params?.name : method.startsWith("tasks/") ? params?.taskId : undefined;
    const id = `raw-${++next}`;
    const response = await fetch(mcpUrl, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        "mcp-protocol-version": MODERN,
        "mcp-method": method,
        ...(name ? { "mcp-name": name } : {}),
        ...(token ? { authorization: `Bearer ${token}` } : {}),
      },
      body: JSON.stringify({ ...(request as object), jsonrpc: "2.0", id }),
    });
    const text = await response.text();
    const messages = (response.headers.get("content-type") ?? "").includes("text/event-stream")
      ? text.split("\n").filter((line) => line.startsWith("data:")).map((line) => JSON.parse(line.slice(5)))
      : [JSON.parse(text)];
    const message = messages.find((each) => each.id === id);
    if (!message) throw new Error(`no answer to ${method} (HTTP ${response.status}): ${text.slice(0, 500)}`);
    return message.error ? { kind: "error", error: message.error } : { kind: "result", result: message.result };
  };
}

export interface TaskClient {
  client: Client;
  session: TaskEnabledSession;
  close(): Promise<void>;
}

/** The tasks client the SDK's maintainers wrote (@modelcontextprotocol/ext-tasks), on the 2026-07-28 wire. */
async function modernSession(client: Client, rawDispatch: RawDispatch, endpointId: string): Promise<TaskEnabledSession> {
  return createTaskSessionFromClient(client, {
    endpointId,
    rawDispatch: rawDispatch as never,
    v2RequestFraming: { protocolVersion: MODERN, clientInfo: CLIENT_INFO, clientCapabilities: {} },
  });
}

/** An SDK Client speaking the era asked: 2026-07-28 pinned, or the 2025 handshake. */
const clientIn = (era: "modern" | "legacy") => new Client(CLIENT_INFO, era === "modern" ? { versionNegotiation: { mode: { pin: MODERN } } } : {});

/** The session on its client, and a close that ends both whatever either says. */
function taskClientOf(client: Client, session: TaskEnabledSession): TaskClient {
  return {
    client,
    session,
    async close() {
      await session.close().catch(() => undefined);
      await client.close().catch(() => undefined);
    },
  };
}

/** The built server over stdio, with a task session in the era asked (2025-11-25 needs no raw path). */
export async function stdioTaskClient(testHome: TestHome, era: "modern" | "legacy", endpointId = "kitty-images-stdio"): Promise<TaskClient> {
  const inner = new StdioClientTransport({ command: process.execPath, args: [SERVER_ENTRY, "serve"], env: serverEnv(testHome), stderr: "pipe" });
  inner.stderr?.pipe(createWriteStream(path.join(testHome.home, `task-server-${Date.now()}.log`), { flags: "a" }));
  const transport = new TappedStdio(inner);
  const client = clientIn(era);
  await client.connect(transport);
  const session = era === "modern" ? await modernSession(client, transport.raw, endpointId) : createTaskSessionFromClient(client, { endpointId });
  return taskClientOf(client, session);
}

/** A running HTTP server's /mcp, with a task session in the era asked (2026-07-28 unless told). */
export async function httpTaskClient(baseUrl: string, token?: string, era: "modern" | "legacy" = "modern"): Promise<TaskClient> {
  const mcpUrl = `${baseUrl}/mcp`;
  const client = clientIn(era);
  await client.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), token ? { requestInit: { headers: { authorization: `Bearer ${token}` } } } : {}));
  const session = era === "modern" ? await modernSession(client, httpRawDispatch(mcpUrl, token), "kitty-images-http") : createTaskSessionFromClient(client, { endpointId: "kitty-images-http-2025" });
  return taskClientOf(client, session);
}
