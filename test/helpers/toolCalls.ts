import type { CallToolResult, Client } from "@modelcontextprotocol/client";

export interface ToolCalls {
  call(name: string, args?: Record<string, unknown>): Promise<CallToolResult>;
  /** Calls a tool that must succeed and returns its structuredContent. */
  ok<T = Record<string, any>>(name: string, args?: Record<string, unknown>): Promise<T>;
}

/** All the text a result carries (an isError result's message). */
export function errorText(result: CallToolResult): string {
  return result.content.map((part) => (part.type === "text" ? part.text : "")).join("\n");
}

/** Tool calls through an SDK client; `context` adds what helps read a failure (a server's log tail). */
export function toolCalls(client: Client, context: () => string = () => ""): ToolCalls {
  const call = (name: string, args: Record<string, unknown> = {}) => client.callTool({ name, arguments: args }) as Promise<CallToolResult>;
  return {
    call,
    async ok(name, args = {}) {
      const result = await call(name, args);
      if (result.isError) throw new Error(`${name} failed: ${JSON.stringify(result.content)}${context()}`);
      return result.structuredContent as any;
    },
  };
}
