import type { CallToolResult, McpServer, RegisteredTool, ServerContext } from "@modelcontextprotocol/server";
import { z } from "zod";
import type { Config } from "../../config.js";
import type { EngineName } from "../../core/generation.js";
import { KittyError, messageOf } from "../../core/errors.js";
import type { Logger } from "../../core/log.js";
import type { JobQueue } from "../../queue/jobQueue.js";
import type { ImageIndex, WorkerInfo } from "../../queue/ports.js";
import type { ImageLinks } from "../../storage/imageLinks.js";
import type { ImageStore } from "../../storage/imageStore.js";
import { registerAppTool } from "@modelcontextprotocol/ext-apps/server";
import { leanSchema } from "./leanSchema.js";
import type { Door, ImageInputDeps } from "../../uploads/imageInputs.js";
import type { EngineModels } from "../../models/engineCatalog.js";

/** What a tool handler may use: the queue's door, the image index, storage (to read previews) and links into it; never the worker or an engine. */
export interface ToolDeps {
  config: Config;
  queue: JobQueue;
  index: ImageIndex;
  /** Resolves image arguments (resolveImageInput); `door` says whether local paths may be read. */
  imageInputs: ImageInputDeps;
  door: Door;
  store: ImageStore;
  links: ImageLinks;
  /** A database error a caller can act on (SQLite locked, Postgres restarting) as a typed error; null otherwise. */
  databaseTrouble(error: unknown, doing: string): KittyError | null;
  /** The GPU workers on the shared Postgres queue (who serves which model, who is idle); null on SQLite. */
  workers: (() => Promise<WorkerInfo[]>) | null;
  /** What another engine (AUTOMATIC1111) offers now: list_models asks, never the worker's engines themselves. */
  engineModels(engine: EngineName): Promise<EngineModels>;
  log: Logger;
}

export type { EngineModels };

/** MCP `image` content inlined in a tool result (a preview): base64 bytes and their type. */
export interface ImageContent {
  data: string;
  mimeType: string;
}

/** What a handler may do within the call it answers. */
export interface ToolCall {
  /** Sends `notifications/progress` when the caller asked for it (a progressToken); otherwise does nothing. */
  progress(progress: number, total: number, message: string): void;
}

interface ToolOutput<T> {
  structured: T;
  /** One line that tells the agent what happened and what to call next. */
  summary: string;
  /** Previews asked for: sent as `image` content after the text, never instead of the structured result. */
  images?: ImageContent[];
}

type Shape = z.ZodRawShape;

export interface ToolDefinition<In extends Shape, Out extends Shape> {
  name: string;
  /**
   * What a client shows for the tool (a permission prompt, a menu). None of ours has one: each name already says
   * it ("generate_image"), and tools/list is paid in tokens on every turn; clients show the name instead.
   */
  title?: string;
  description: string;
  /** The tool's icon as one SVG path on a 24-unit grid, drawn as a line (toolIcon makes the data URL clients get). */
  icon: string;
  /**
   * Hints clients use to decide what needs the user's confirmation. destructiveHint and idempotentHint mean
   * something only when readOnlyHint is false (MCP spec), so read-only tools leave them out; a writing tool leaves
   * out what is the default (readOnlyHint and idempotentHint false) but always says destructiveHint, whose default
   * (true) would be wrong for most. openWorldHint is said (false) by the tools that reach nothing outside this
   * server; those that may fetch an image from a listed host leave it at its default, true. tools/list is paid in tokens.
   */
  annotations: { readOnlyHint: true; openWorldHint: false } | { destructiveHint: boolean; idempotentHint?: true; openWorldHint?: false };
  input: In;
  output: Out;
  /** An MCP App (`ui://` resource) that clients supporting Apps render with this tool's result; others ignore it. */
  appUri?: string;
  handler(args: z.infer<z.ZodObject<In>>, deps: ToolDeps, call: ToolCall): Promise<ToolOutput<z.infer<z.ZodObject<Out>>>>;
}

/** Any tool, for the list the server registers; each was type-checked by defineTool where it is written. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyTool = ToolDefinition<any, any>;

export function defineTool<In extends Shape, Out extends Shape>(definition: ToolDefinition<In, Out>): ToolDefinition<In, Out> {
  return definition;
}

export function errorResult(code: string, message: string): CallToolResult {
  return { isError: true, content: [{ type: "text", text: `${code}: ${message}` }] };
}

/**
 * An MCP tool icon (SEP-973) for clients that list tools to people: the path stroked in a mid grey that reads on
 * light and dark themes, as an SVG data URL (no network, no file). Escaped only where a URL must be, so it stays
 * small: tools/list carries eight of these. Clients hand a model a tool's name, description and schemas, not its
 * icons, so the token budget (test/fast/tools.test.ts) is counted without them and the icons have a byte cap of their own.
 */
export function toolIcon(path: string): { src: string; mimeType: string; sizes: string[] } {
  const svg = `<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 24 24' fill='none' stroke='%238a8f98' stroke-width='2' stroke-linejoin='round'><path d='${path}'/></svg>`;
  return { src: `data:image/svg+xml,${svg.replace(/</g, "%3C").replace(/>/g, "%3E")}`, mimeType: "image/svg+xml", sizes: ["any"] };
}

/** A handler's answer as MCP carries it: the structured result, its summary, the same JSON as text, any previews. */
export function toolResult(output: ToolOutput<unknown>): CallToolResult {
  const { structured, summary, images = [] } = output;
  return {
    structuredContent: structured as Record<string, unknown>,
    // The JSON copy is for clients that show the model only text content.
    content: [{ type: "text", text: summary }, { type: "text", text: JSON.stringify(structured) }, ...images.map((image) => ({ type: "image" as const, ...image }))],
  };
}

/**
 * Runs a tool's handler for an MCP call: its answer, or the `isError` result for whatever it threw (a KittyError's
 * code and words, the database's trouble, or internal_error). `structured` is there when the handler answered.
 */
export async function runTool<In extends Shape, Out extends Shape>(
  definition: ToolDefinition<In, Out>,
  args: z.infer<z.ZodObject<In>>,
  deps: ToolDeps,
  context: ServerContext,
): Promise<{ result: CallToolResult; structured?: z.infer<z.ZodObject<Out>> }> {
  const tokenProblem = progressTokenProblem(context.mcpReq._meta?.progressToken);
  if (tokenProblem) return { result: errorResult("invalid_argument", tokenProblem) };
  try {
    const output = await definition.handler(args, deps, progressReporter(context, deps));
    return { result: toolResult(output), structured: output.structured };
  } catch (error) {
    if (error instanceof KittyError) return { result: errorResult(error.code, error.message) };
    const busy = deps.databaseTrouble(error, `${definition.name} failed`);
    if (busy) {
      deps.log.warn({ tool: definition.name, error: busy.code }, "the database cannot answer now; call refused");
      return { result: errorResult(busy.code, busy.message) };
    }
    deps.log.error({ tool: definition.name, error: messageOf(error) }, "tool failed unexpectedly");
    return { result: errorResult("internal_error", `${definition.name} failed: ${messageOf(error)}`) };
  }
}

/**
 * Registers a tool. Unknown argument names are refused rather than dropped, so a misspelt `step` is an error the
 * agent sees instead of a silent default. Argument errors come back as `isError` results (SEP-1303) that the
 * model can read and fix; nothing a tool throws reaches the transport.
 */
export function registerTool<In extends Shape, Out extends Shape>(server: McpServer, definition: ToolDefinition<In, Out>, deps: ToolDeps): RegisteredTool {
  const inputSchema = argumentSchema(definition);
  const config = {
    ...(definition.title && { title: definition.title }),
    description: definition.description,
    annotations: definition.annotations,
    icons: [toolIcon(definition.icon)],
    inputSchema: leanSchema(inputSchema, { role: "arguments" }),
    outputSchema: leanSchema(z.object(definition.output), { role: "result" }),
  };
  const callback = async (args: unknown, context: ServerContext): Promise<CallToolResult> =>
    (await runTool(definition, args as z.infer<z.ZodObject<In>>, deps, context)).result;
  if (definition.appUri) return registerAppTool(server, definition.name, { ...config, _meta: { ui: { resourceUri: definition.appUri } } }, callback);
  return server.registerTool(definition.name, config, callback);
}

/** A tool's arguments checked as registerTool's schema checks them: the parsed arguments, or every problem in one line. */
export function parseArguments<In extends Shape, Out extends Shape>(definition: ToolDefinition<In, Out>, args: unknown): { ok: true; args: z.infer<z.ZodObject<In>> } | { ok: false; problems: string } {
  const parsed = argumentSchema(definition).safeParse(args ?? {});
  if (parsed.success) return { ok: true, args: parsed.data as z.infer<z.ZodObject<In>> };
  return { ok: false, problems: parsed.error.issues.map((issue) => issue.message).join("; ") };
}

/** A tool's arguments as one strict object: the schema MCP clients see, and the one every door checks against. */
function argumentSchema<In extends Shape, Out extends Shape>(definition: ToolDefinition<In, Out>) {
  const allowed = Object.keys(definition.input);
  return z.strictObject(definition.input, {
    error: (issue) =>
      issue.code === "unrecognized_keys"
        ? `unknown argument(s) ${issue.keys.join(", ")}; ${definition.name} accepts ${allowed.join(", ") || "no arguments"}`
        : undefined,
  });
}

/**
 * A tool called from another door (the gallery page): the same argument rules and handler as over MCP, so a
 * button's answer is the tool's. Bad arguments throw a KittyError("invalid_argument") listing every problem.
 */
export async function invokeTool<In extends Shape, Out extends Shape>(definition: ToolDefinition<In, Out>, args: unknown, deps: ToolDeps) {
  const parsed = parseArguments(definition, args);
  if (!parsed.ok) throw new KittyError("invalid_argument", parsed.problems);
  return definition.handler(parsed.args, deps, { progress() {} });
}

/** Every progress notification repeats the token: an unbounded one would make a single wait send megabytes. */
export const MAX_PROGRESS_TOKEN_CHARS = 256;

function progressTokenProblem(token: unknown): string | null {
  if (token === undefined || typeof token === "number") return null;
  if (typeof token !== "string") return "_meta.progressToken must be a string or an integer";
  if (token.length <= MAX_PROGRESS_TOKEN_CHARS) return null;
  return `_meta.progressToken is ${token.length} characters; at most ${MAX_PROGRESS_TOKEN_CHARS} are accepted (a job id is plenty)`;
}

function progressReporter(context: ServerContext, deps: ToolDeps): ToolCall {
  const progressToken = context.mcpReq._meta?.progressToken;
  return {
    progress(progress, total, message) {
      if (progressToken === undefined) return;
      context.mcpReq
        .notify({ method: "notifications/progress", params: { progressToken, progress, total, message } })
        // Progress is advisory: a client gone mid-wait must not fail the call's answer.
        .catch((error: unknown) => deps.log.debug({ error: messageOf(error) }, "could not send progress"));
    },
  };
}
