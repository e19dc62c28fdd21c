import { createServer, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { acceptWebSocket, type MiniWebSocket } from "./miniWebSocket.js";
import { makePng } from "./png.js";
import { readJson } from "./standInHttp.js";

/**
 * A stand-in for InvokeAI's API, written from its routes (checked against invokeai 6.14.2): the model manager's
 * main models, the default session queue (enqueue_batch, item status, cancel), full images, and its socket.io
 * events over a websocket (Engine.IO 4 framing) with `invocation_progress` while an item runs.
 */
export type InvokeMode = "ok" | "fails" | "no-socket" | "nonsense" | "stuck";

export interface InvokeStandIn {
  url: string;
  mode: InvokeMode;
  stepMs: number;
  graphs: Array<Record<string, any>>;
  cancels: number[];
  subscribed: number;
  close(): Promise<void>;
}

export const INVOKE_MODELS = [
  { key: "k-sd15", hash: "blake3:aa", name: "dreamshaper_8", base: "sd-1", type: "main" },
  { key: "k-sdxl", hash: "blake3:bb", name: "juggernaut_xl", base: "sdxl", type: "main" },
  { key: "k-flux", hash: "blake3:cc", name: "flux_dev", base: "flux", type: "main" },
];

export async function startInvokeStandIn(): Promise<InvokeStandIn> {
  const items = new Map<number, Record<string, any>>();
  const images = new Map<string, Buffer>();
  const subscribers = new Set<MiniWebSocket>();
  let nextItem = 1;
  const standIn: InvokeStandIn = { url: "", mode: "ok", stepMs: 5, graphs: [], cancels: [], subscribed: 0, close: async () => undefined };

  const emit = (name: string, data: Record<string, unknown>) => {
    for (const subscriber of subscribers) subscriber.send(`42${JSON.stringify([name, data])}`);
  };

  const run = async (item: Record<string, any>) => {
    const graph = item.graph;
    const steps: number = graph.nodes.denoise.steps;
    item.status = "in_progress";
    for (let step = 1; step <= steps; step++) {
      await new Promise((resolve) => setTimeout(resolve, standIn.stepMs));
      if (item.status === "canceled") return;
      emit("invocation_progress", { queue_id: "default", item_id: item.item_id, message: "Denoising", percentage: step / steps });
      if (standIn.mode === "fails" && step === 1) {
        Object.assign(item, { status: "failed", error_type: "RuntimeError", error_message: "Expected all tensors to be on the same device" });
        return;
      }
    }
    const name = `kitty-${item.item_id}.png`;
    images.set(name, makePng(graph.nodes.noise.width, graph.nodes.noise.height, { invokeai_metadata: JSON.stringify({ seed: graph.nodes.noise.seed }) }));
    Object.assign(item, {
      status: "completed",
      session: { results: { "prepared-1": { type: "latents_output" }, "prepared-2": { type: "image_output", image: { image_name: name }, width: graph.nodes.noise.width, height: graph.nodes.noise.height } } },
    });
  };
  let chain = Promise.resolve();

  const server: Server = createServer((request, response) => {
    const send = (status: number, body: unknown) => {
      response.writeHead(status, { "content-type": "application/json" });
      response.end(JSON.stringify(body));
    };
    const url = new URL(request.url ?? "/", "http://standin.invalid");
    const route = `${request.method} ${url.pathname}`;
    void (async () => {
      if (route === "GET /api/v2/models/") return send(200, { models: INVOKE_MODELS.map((model) => ({ ...model, format: "diffusers", path: `/models/${model.name}` })) });
      if (route === "POST /api/v1/queue/default/enqueue_batch") {
        const body = await readJson(request);
        const itemId = nextItem++;
        const item = { item_id: itemId, status: "pending", graph: body.batch.graph, session: { results: {} } };
        items.set(itemId, item);
        standIn.graphs.push(body.batch.graph);
        // InvokeAI runs one item at a time, in order.
        // "stuck": the item stays pending for good, as behind a queue that never moves.
        if (standIn.mode !== "stuck") chain = chain.then(() => (item.status === "pending" ? run(item) : undefined));
        return send(200, { queue_id: "default", enqueued: 1, requested: 1, batch: { batch_id: `b${itemId}` }, priority: 0, item_ids: [itemId] });
      }
      const itemRoute = /^(GET|PUT) \/api\/v1\/queue\/default\/i\/(\d+)(\/cancel)?$/.exec(route);
      if (itemRoute) {
        const item = items.get(Number(itemRoute[2]));
        if (!item) return send(404, { detail: "Queue item not found" });
        if (itemRoute[3]) {
          standIn.cancels.push(item.item_id);
          if (item.status === "pending" || item.status === "in_progress") item.status = "canceled";
        }
        const { graph: _graph, ...shown } = item;
        return send(200, standIn.mode === "nonsense" ? { detail: "<html>gateway</html>" } : shown);
      }
      const imageRoute = /^GET \/api\/v1\/images\/i\/([^/]+)\/full$/.exec(route);
      if (imageRoute) {
        const image = images.get(decodeURIComponent(imageRoute[1]!));
        if (!image) return send(404, { detail: "Image not found" });
        response.writeHead(200, { "content-type": "image/png" });
        return response.end(image);
      }
      send(404, { detail: "Not Found" });
    })().catch((error: Error) => send(500, { detail: error.message }));
  });
  const upgraded = new Set<Socket>();
  server.on("upgrade", (request, socket: Socket) => {
    upgraded.add(socket);
    socket.on("close", () => upgraded.delete(socket));
    if (standIn.mode === "no-socket" || !request.url?.startsWith("/ws/socket.io/")) return socket.destroy();
    const ws = acceptWebSocket(request, socket, (text) => {
      if (text === "40") ws.send(`40${JSON.stringify({ sid: "namespace-sid" })}`);
      else if (text.startsWith("42") && JSON.parse(text.slice(2))[0] === "subscribe_queue") {
        standIn.subscribed++;
        subscribers.add(ws);
      }
    });
    socket.on("close", () => subscribers.delete(ws));
    ws.send(`0${JSON.stringify({ sid: "engine-sid", upgrades: [], pingInterval: 25000, pingTimeout: 20000, maxPayload: 1000000 })}`);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  standIn.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  standIn.close = async () => {
    for (const socket of upgraded) socket.destroy();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return standIn;
}
