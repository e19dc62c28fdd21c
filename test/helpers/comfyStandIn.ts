import { randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { acceptWebSocket, type MiniWebSocket } from "./miniWebSocket.js";
import { makePng } from "./png.js";
import { readJson } from "./standInHttp.js";

/**
 * A stand-in for ComfyUI's server API, written from its routes and checked against ComfyUI 0.8.0 running here
 * (test/comfyuiReal.test.ts): POST /prompt, the /ws websocket (status, execution_start, progress, executing,
 * executed, execution_success, execution_error, execution_interrupted), /history/{id}, /view, /interrupt (with a
 * prompt_id only that prompt; without one whatever runs), POST /queue {delete}, /object_info/CheckpointLoaderSimple.
 * As in ComfyUI, `execution_success` is sent before /history has the entry (the executor sends it; `task_done`
 * writes the history afterwards on the prompt worker's thread), and `executing` with node null only after.
 * The websocket is a minimal RFC 6455 server (text frames out, nothing read in), enough for a client that only listens.
 */
export type ComfyMode = "ok" | "execution-error" | "node-errors" | "silent-socket" | "no-outputs" | "never-finishes";

export interface ComfyStandIn {
  url: string;
  mode: ComfyMode;
  stepMs: number;
  /** Every graph queued, in order. */
  prompts: Array<{ id: string; graph: Record<string, any>; clientId: string }>;
  /** Each POST /interrupt: the prompt_id it named, or null for ComfyUI's global interrupt. */
  interrupts: Array<string | null>;
  /** How long after `execution_success` /history still answers `{}` for the prompt. */
  historyLagMs: number;
  deleted: string[];
  /** Hold the next prompts in the queue (not started) until release(). */
  holdQueue: boolean;
  release(): void;
  close(): Promise<void>;
}

export const COMFY_CHECKPOINTS = ["sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly.safetensors"];

export async function startComfyStandIn(): Promise<ComfyStandIn> {
  const sockets = new Map<string, MiniWebSocket>();
  const history: Record<string, unknown> = {};
  const queue: Array<{ id: string; graph: Record<string, any>; clientId: string }> = [];
  let running: string | null = null;
  let interrupted = false;
  let wake: (() => void) | null = null;
  const standIn: ComfyStandIn = { url: "", mode: "ok", stepMs: 5, historyLagMs: 40, prompts: [], interrupts: [], deleted: [], holdQueue: false, release: () => undefined, close: async () => undefined };

  const tell = (clientId: string, type: string, data: Record<string, unknown>) => {
    if (standIn.mode === "silent-socket") return;
    sockets.get(clientId)?.send(JSON.stringify({ type, data }));
  };

  // ComfyUI runs one prompt at a time, in order.
  const runQueue = async () => {
    for (;;) {
      const next = standIn.holdQueue ? undefined : queue.shift();
      if (!next) {
        await new Promise<void>((resolve) => (wake = resolve));
        continue;
      }
      // Taken and then forgotten: no event, no history, as a ComfyUI stuck on a node would look.
      if (standIn.mode === "never-finishes") continue;
      running = next.id;
      interrupted = false;
      const { id, graph, clientId } = next;
      tell(clientId, "execution_start", { prompt_id: id });
      const nodeOf = (...classes: string[]) => Object.keys(graph).find((node) => classes.includes(graph[node].class_type))!;
      const samplerNode = nodeOf("KSampler", "KSamplerAdvanced");
      const steps: number = graph[samplerNode].inputs.steps;
      tell(clientId, "executing", { node: samplerNode, prompt_id: id });
      let step = 0;
      for (step = 1; step <= steps && !interrupted; step++) {
        await new Promise((resolve) => setTimeout(resolve, standIn.stepMs));
        tell(clientId, "progress", { value: step, max: steps, prompt_id: id, node: samplerNode });
        if (standIn.mode === "execution-error" && step === 2) break;
      }
      running = null;
      if (interrupted) {
        tell(clientId, "execution_interrupted", { prompt_id: id, node_id: "3", node_type: "KSampler", executed: [] });
        history[id] = { prompt: [0, id, graph, {}, ["9"]], outputs: {}, status: { status_str: "error", completed: false, messages: [["execution_interrupted", {}]] } };
        continue;
      }
      if (standIn.mode === "execution-error") {
        tell(clientId, "execution_error", { prompt_id: id, node_id: "3", node_type: "KSampler", exception_type: "torch.OutOfMemoryError", exception_message: "CUDA out of memory. Tried to allocate 2.00 GiB" });
        history[id] = { outputs: {}, status: { status_str: "error", completed: false, messages: [] } };
        continue;
      }
      const filename = `kitty-images_${String(standIn.prompts.findIndex((prompt) => prompt.id === id) + 1).padStart(5, "0")}_.png`;
      const latent = graph[nodeOf("EmptyLatentImage")].inputs;
      const saveNode = nodeOf("SaveImage");
      // A prompt sent over the API carries no editor workflow: ComfyUI writes the `prompt` chunk alone.
      images.set(filename, makePng(latent.width, latent.height, { prompt: JSON.stringify(graph) }));
      tell(clientId, "executing", { node: saveNode, display_node: saveNode, prompt_id: id });
      if (standIn.mode !== "no-outputs") tell(clientId, "executed", { node: saveNode, display_node: saveNode, output: { images: [{ filename, subfolder: "", type: "output" }] }, prompt_id: id });
      tell(clientId, "execution_success", { prompt_id: id, timestamp: Date.now() });
      await new Promise((resolve) => setTimeout(resolve, standIn.historyLagMs));
      history[id] = {
        prompt: [0, id, graph, {}, [saveNode]],
        outputs: standIn.mode === "no-outputs" ? {} : { [saveNode]: { images: [{ filename, subfolder: "", type: "output" }] } },
        status: { status_str: "success", completed: true, messages: [["execution_start", {}], ["execution_success", {}]] },
        meta: {},
      };
      tell(clientId, "executing", { node: null, prompt_id: id });
    }
  };
  const images = new Map<string, Buffer>();

  const server: Server = createServer((request, response) => {
    const send = (status: number, body: unknown) => {
      response.writeHead(status, { "content-type": "application/json" });
      response.end(JSON.stringify(body));
    };
    const url = new URL(request.url ?? "/", "http://standin.invalid");
    const route = `${request.method} ${url.pathname}`;
    void (async () => {
      if (route === "GET /object_info/CheckpointLoaderSimple") {
        return send(200, { CheckpointLoaderSimple: { input: { required: { ckpt_name: [COMFY_CHECKPOINTS, {}] } }, output: ["MODEL", "CLIP", "VAE"], name: "CheckpointLoaderSimple" } });
      }
      if (route === "POST /prompt") {
        const body = await readJson(request);
        if (standIn.mode === "node-errors") {
          return send(400, {
            error: { type: "prompt_outputs_failed_validation", message: "Prompt outputs failed validation", details: "", extra_info: {} },
            node_errors: { "4": { errors: [{ type: "value_not_in_list", message: "Value not in list", details: "ckpt_name: 'missing.safetensors' not in [...]" }], class_type: "CheckpointLoaderSimple" } },
          });
        }
        const id = randomUUID();
        const entry = { id, graph: body.prompt, clientId: body.client_id };
        standIn.prompts.push(entry);
        queue.push(entry);
        wake?.();
        return send(200, { prompt_id: id, number: standIn.prompts.length - 1, node_errors: {} });
      }
      if (route.startsWith("GET /history/")) {
        const id = decodeURIComponent(url.pathname.slice("/history/".length));
        return send(200, history[id] ? { [id]: history[id] } : {});
      }
      if (route === "GET /view") {
        const image = images.get(url.searchParams.get("filename") ?? "");
        if (!image || url.searchParams.get("type") !== "output") return send(404, {});
        response.writeHead(200, { "content-type": "image/png" });
        return response.end(image);
      }
      if (route === "POST /interrupt") {
        // ComfyUI reads an optional JSON body; a prompt_id that is not the running prompt interrupts nothing.
        const body: Record<string, any> = await readJson(request).catch(() => ({}));
        const promptId = typeof body?.prompt_id === "string" && body.prompt_id ? body.prompt_id : null;
        standIn.interrupts.push(promptId);
        if (running && (promptId === null || promptId === running)) interrupted = true;
        // As ComfyUI 0.8.0 answers: 200, no content type, no body.
        response.writeHead(200, { "content-length": "0" });
        return response.end();
      }
      if (route === "POST /queue") {
        const body = await readJson(request);
        for (const id of body.delete ?? []) {
          const at = queue.findIndex((prompt) => prompt.id === id);
          if (at >= 0) {
            queue.splice(at, 1);
            standIn.deleted.push(id);
          }
        }
        response.writeHead(200, { "content-length": "0" });
        return response.end();
      }
      send(404, {});
    })().catch((error: Error) => send(500, { error: error.message }));
  });
  server.on("upgrade", (request, socket: Socket) => {
    const url = new URL(request.url ?? "/", "http://standin.invalid");
    if (url.pathname !== "/ws") return socket.destroy();
    const clientId = url.searchParams.get("clientId") ?? randomUUID();
    const ws = acceptWebSocket(request, socket);
    sockets.set(clientId, ws);
    socket.on("close", () => sockets.delete(clientId));
    ws.send(JSON.stringify({ type: "status", data: { status: { exec_info: { queue_remaining: queue.length } }, sid: clientId } }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  standIn.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  void runQueue();
  standIn.release = () => {
    standIn.holdQueue = false;
    wake?.();
  };
  standIn.close = async () => {
    for (const ws of sockets.values()) ws.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return standIn;
}

