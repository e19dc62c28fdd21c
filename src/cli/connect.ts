import { VERSION } from "../core/version.js";
import { Client, InMemoryTransport, StreamableHTTPClientTransport, type CallToolResult, type RequestOptions } from "@modelcontextprotocol/client";
import { serveStdio } from "@modelcontextprotocol/server/stdio";
import { loadClientConfig } from "../config.js";
import { createApp, queueIsShared } from "../app/createApp.js";
import { mcpServerFactory } from "../mcp/createMcpServer.js";
import { inCliWords } from "./cliWords.js";
import { describeRemoteFailure } from "./remoteErrors.js";
import { loadSetup } from "./setup.js";
import { UsageError } from "./usage.js";

/** The CLI is one more MCP client: every command goes through the same tools an agent calls, never around them. */
export interface Connection {
  /** True when the tools run in this process on the local data dir (KITTY_IMAGES_URL is not set). */
  inProcess: boolean;
  /** A tool's structuredContent; a refusal (an isError result) throws ToolRefused with the tool's message. */
  call<T = Record<string, any>>(name: string, args: Record<string, unknown>, options?: RequestOptions): Promise<T>;
  close(): Promise<void>;
}

/** The server said no (bad argument, unknown model, no such image): exit code 1 with its message. */
export class ToolRefused extends Error {}

const CLIENT_INFO = { name: "kitty-images-cli", version: VERSION };

/** KITTY_IMAGES_URL names a running server (HTTP, with KITTY_IMAGES_TOKEN); without it the tools run here on the same data dir. */
export async function connect({ runWorker, demo = false }: { runWorker: boolean; demo?: boolean }): Promise<Connection> {
  const { mcpEndpoint, token } = loadClientConfig();
  if (mcpEndpoint && demo) throw new UsageError(`--demo uses the tiny models in this process; KITTY_IMAGES_URL (${mcpEndpoint.origin}) names a server with its own models: unset it for --demo`);
  return mcpEndpoint ? connectRemote(mcpEndpoint, token ?? undefined) : connectInProcess(runWorker, demo);
}

function callThrough(client: Client, onFailure: (error: unknown) => Error = (error) => error as Error): Connection["call"] {
  return async (name, args, options) => {
    let result: CallToolResult;
    try {
      result = (await client.callTool({ name, arguments: args }, options)) as CallToolResult;
    } catch (error) {
      throw onFailure(error);
    }
    if (result.isError) {
      throw new ToolRefused(inCliWords(result.content.map((part) => (part.type === "text" ? part.text : "")).join("\n")) || `${name} refused the request`);
    }
    return result.structuredContent as any;
  };
}

async function connectRemote(endpoint: URL, token: string | undefined): Promise<Connection> {
  const transport = new StreamableHTTPClientTransport(endpoint, token ? { requestInit: { headers: { Authorization: `Bearer ${token}` } } } : {});
  const client = new Client(CLIENT_INFO);
  const explain = (error: unknown) => describeRemoteFailure(error, endpoint, token !== undefined);
  try {
    await client.connect(transport);
  } catch (error) {
    throw explain(error);
  }
  return { inProcess: false, call: callThrough(client, explain), close: () => client.close() };
}

async function connectInProcess(runWorker: boolean, demo: boolean): Promise<Connection> {
  const { config, log } = await loadSetup("person", { demo });
  // runWorker: this process runs jobs only while no server holds the queue's lease; otherwise the server runs them.
  // On Postgres the GPU workers run them: a command never becomes one.
  const app = await createApp(config, log, { runsJobs: runWorker && !queueIsShared(config) });
  const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair();
  const stdio = serveStdio(mcpServerFactory(app, "stdio"), { transport: serverTransport });
  const client = new Client(CLIENT_INFO);
  try {
    await client.connect(clientTransport);
  } catch (error) {
    await app.close();
    throw error;
  }
  return {
    inProcess: true,
    call: callThrough(client),
    async close() {
      await client.close();
      await stdio.close();
      await app.close();
    },
  };
}
