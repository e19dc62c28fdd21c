import type { GenerationRequest, GenerationResult, SchedulerName } from "../core/generation.js";
import { batchSeeds, imageCount } from "../core/generation.js";
import type { Logger } from "../core/log.js";
import { AppEngine, type AppTiming } from "./appEngine.js";
import { EngineJobError, type GenerationJob } from "./engine.js";
import { stagePng } from "./engineHttp.js";
import { seconds } from "./seconds.js";

/**
 * InvokeAI doing the generating, through its session queue: a text-to-image graph (SD 1.5 or SDXL, by the model's
 * base in InvokeAI's model manager) enqueued with `enqueue_batch`, one queue item per image (seeds seed, seed+1...),
 * the item polled until it ends, the image read from `/api/v1/images`. Steps come from its socket.io events
 * (`invocation_progress`) when the socket opens; without it the job still ends by polling. Cancel cancels the item.
 */

export interface InvokeAIOptions {
  baseUrl: string;
  timing?: Partial<InvokeTiming>;
}

export interface InvokeTiming extends AppTiming {
  /** How often the queue item is read while it runs. */
  pollMs: number;
}

const DEFAULT_TIMING: InvokeTiming = { callMs: 10_000, pollMs: 500, jobBaseMs: 120_000, msPerMegapixelStep: 3_000 };
const QUEUE = "/api/v1/queue/default";

/** Our scheduler names as InvokeAI names its schedulers; the rest it has none for. */
export const INVOKE_SCHEDULERS: Partial<Record<SchedulerName, string>> = {
  euler: "euler",
  euler_a: "euler_a",
  dpmpp_2m: "dpmpp_2m",
  dpmpp_2m_karras: "dpmpp_2m_k",
  ddim: "ddim",
  pndm: "pndm",
  heun: "heun",
  unipc: "unipc",
  lcm: "lcm",
  tcd: "tcd",
};

/** A main model as InvokeAI's model manager lists it: what its loader nodes take. */
interface ModelIdentifier {
  key: string;
  hash: string;
  name: string;
  base: string;
  type: string;
}

const edge = (from: string, field: string, to: string, toField: string) => ({ source: { node_id: from, field }, destination: { node_id: to, field: toField } });

/** The graph InvokeAI's own canvas builds for plain text-to-image, for an SD 1.x or an SDXL main model. */
export function invokeGraph(request: GenerationRequest, seed: number, model: ModelIdentifier): Record<string, unknown> {
  const sdxl = model.base === "sdxl";
  const size = { width: request.width, height: request.height };
  const encode = (id: string, prompt: string) =>
    sdxl
      ? { type: "sdxl_compel_prompt", id, prompt, style: prompt, original_width: size.width, original_height: size.height, target_width: size.width, target_height: size.height, crop_top: 0, crop_left: 0 }
      : { type: "compel", id, prompt };
  const nodes = {
    model: { type: sdxl ? "sdxl_model_loader" : "main_model_loader", id: "model", model },
    positive: encode("positive", request.prompt),
    negative: encode("negative", request.negativePrompt ?? ""),
    noise: { type: "noise", id: "noise", seed, ...size, use_cpu: true },
    denoise: {
      type: "denoise_latents",
      id: "denoise",
      steps: request.steps,
      cfg_scale: request.cfgScale,
      scheduler: INVOKE_SCHEDULERS[request.scheduler ?? "euler_a"]!,
      denoising_start: 0,
      denoising_end: 1,
    },
    // Not intermediate: the image lands in InvokeAI's gallery too, where its user would look for it.
    decode: { type: "l2i", id: "decode", is_intermediate: false, fp32: sdxl ? false : true },
  };
  const clips = sdxl ? ["clip", "clip2"] : ["clip"];
  return {
    id: "kitty-images-txt2img",
    nodes,
    edges: [
      ...clips.flatMap((clip) => [edge("model", clip, "positive", clip), edge("model", clip, "negative", clip)]),
      edge("model", "unet", "denoise", "unet"),
      edge("positive", "conditioning", "denoise", "positive_conditioning"),
      edge("negative", "conditioning", "denoise", "negative_conditioning"),
      edge("noise", "noise", "denoise", "noise"),
      edge("denoise", "latents", "decode", "latents"),
      edge("model", "vae", "decode", "vae"),
    ],
  };
}

export class InvokeAIEngine extends AppEngine<InvokeTiming> {
  readonly name = "invokeai";

  constructor(
    private readonly options: InvokeAIOptions,
    log: Logger,
  ) {
    super({ label: "InvokeAI", baseUrl: options.baseUrl, unreachableHint: "is invokeai-web running?" }, { ...DEFAULT_TIMING, ...options.timing }, log);
  }

  private async mainModels(): Promise<ModelIdentifier[]> {
    const answer = (await this.http.json("GET", "/api/v2/models/?model_type=main", undefined, this.timing.callMs)) as { models?: unknown };
    if (!Array.isArray(answer?.models)) throw this.http.nonsense("/api/v2/models/", "a list of models", answer);
    return (answer.models as Array<Record<string, unknown>>)
      .filter((model) => typeof model.key === "string" && typeof model.name === "string" && (model.base === "sd-1" || model.base === "sdxl"))
      .map((model) => ({ key: model.key as string, hash: String(model.hash), name: model.name as string, base: model.base as string, type: "main" }));
  }

  /** The SD 1.x and SDXL main models InvokeAI's model manager has, by name. */
  async models(): Promise<string[]> {
    return (await this.mainModels()).map((model) => model.name);
  }

  async generate(request: GenerationRequest, job: GenerationJob): Promise<GenerationResult> {
    this.checkRunnable(request, job);
    this.checkScheduler(request, INVOKE_SCHEDULERS);
    const models = await this.mainModels();
    const model = request.model.engineModel ? models.find((candidate) => candidate.name === request.model.engineModel) : models[0];
    if (!model) {
      throw new EngineJobError("model_not_found", `${this.where} has no SD 1.5 or SDXL main model named '${request.model.engineModel ?? ""}' (it has: ${models.map((candidate) => candidate.name).join(", ") || "none"})`);
    }
    const count = imageCount(request);
    const started = Date.now();
    const items: number[] = [];
    for (const [index, seed] of batchSeeds(request.seed, count).entries()) {
      const { itemId, image } = await this.runItem(request, job, invokeGraph(request, seed, model), (fraction) =>
        job.onProgress({ step: index * request.steps + Math.round(fraction * request.steps), totalSteps: request.steps * count }),
      );
      items.push(itemId);
      const bytes = await this.http.bytes(`/api/v1/images/i/${encodeURIComponent(image)}/full`, this.timing.callMs * 3);
      await stagePng(bytes, job.outputPaths[index]!, request, this.where);
    }
    return this.result(request, started, {
      seed: request.seed,
      family: model.base === "sdxl" ? "sdxl" : "sd15",
      scheduler: INVOKE_SCHEDULERS[request.scheduler ?? "euler_a"]!,
      versions: { engine: "invokeai" },
      engineInfo: { model, queueItems: items },
    });
  }

  /** Enqueues one graph and polls its queue item to the end; resolves with the item id and the image it made. */
  private async runItem(request: GenerationRequest, job: GenerationJob, graph: Record<string, unknown>, onFraction: (fraction: number) => void): Promise<{ itemId: number; image: string }> {
    const deadlineMs = this.deadlineMs(request);
    const deadline = Date.now() + deadlineMs;
    const queued = (await this.http.json("POST", `${QUEUE}/enqueue_batch`, { batch: { graph, runs: 1 }, prepend: false }, this.timing.callMs)) as { item_ids?: unknown };
    const itemId = Array.isArray(queued?.item_ids) ? queued.item_ids[0] : undefined;
    if (typeof itemId !== "number") throw this.http.nonsense(`${QUEUE}/enqueue_batch`, "the enqueued item_ids", queued);
    const progress = this.followProgress(itemId, onFraction);
    // Asked once, whether the job was cancelled or ran past its deadline; awaited before the job ends.
    let cancelling: Promise<unknown> | null = null;
    const cancel = () =>
      (cancelling ??= this.http.json("PUT", `${QUEUE}/i/${itemId}/cancel`, undefined, this.timing.callMs).catch((error: Error) =>
        this.log.warn({ error: error.message }, "could not cancel the InvokeAI queue item"),
      ));
    job.signal.addEventListener("abort", cancel, { once: true });
    try {
      for (;;) {
        const item = (await this.http.json("GET", `${QUEUE}/i/${itemId}`, undefined, this.timing.callMs)) as Record<string, any>;
        const status = item?.status;
        if (status === "completed") return { itemId, image: this.imageOf(item) };
        if (status === "canceled" || job.signal.aborted) {
          if (job.signal.aborted) {
            // The job ends once InvokeAI has been told, so the next one does not queue behind this item.
            await cancel();
            throw new EngineJobError("cancelled", "cancelled while running");
          }
          throw new EngineJobError("generation_failed", `${this.where} cancelled queue item ${itemId} itself`);
        }
        if (status === "failed") {
          throw new EngineJobError("generation_failed", `${this.where} failed queue item ${itemId}: ${item.error_type ?? "error"}: ${String(item.error_message ?? "no message").slice(0, 300)}`);
        }
        if (status !== "pending" && status !== "in_progress") throw this.http.nonsense(`${QUEUE}/i/${itemId}`, "a queue item status", item);
        if (Date.now() > deadline) {
          await cancel();
          throw new EngineJobError("engine_unreachable", `${this.where} did not finish queue item ${itemId} within ${seconds(deadlineMs)} s; it was cancelled there`);
        }
        await new Promise((resolve) => setTimeout(resolve, this.timing.pollMs));
      }
    } finally {
      job.signal.removeEventListener("abort", cancel);
      progress.close();
    }
  }

  private imageOf(item: Record<string, any>): string {
    const results = Object.values((item.session?.results ?? {}) as Record<string, any>);
    const output = results.find((result) => result?.type === "image_output" && typeof result.image?.image_name === "string");
    if (!output) throw this.http.nonsense(`${QUEUE}/i/${item.item_id}`, "an image_output among the session's results", item.session?.results ?? item);
    return output.image.image_name as string;
  }

  /**
   * InvokeAI's socket.io events over a plain websocket (Engine.IO 4 framing: "0" open, "2"/"3" ping/pong, "40"
   * namespace connect, "42[...]" events): denoise progress for this item. Best effort: without it, no steps show.
   */
  private followProgress(itemId: number, onFraction: (fraction: number) => void): { close(): void } {
    let socket: WebSocket;
    try {
      socket = new WebSocket(`${this.options.baseUrl.replace(/^http/, "ws")}/ws/socket.io/?EIO=4&transport=websocket`);
    } catch {
      return { close() {} };
    }
    socket.addEventListener("message", (event) => {
      const text = String(event.data);
      if (text.startsWith("0")) socket.send("40");
      else if (text === "2") socket.send("3");
      else if (text.startsWith("40")) socket.send(`42${JSON.stringify(["subscribe_queue", { queue_id: "default" }])}`);
      else if (text.startsWith("42")) {
        try {
          const [name, data] = JSON.parse(text.slice(2)) as [string, Record<string, any>];
          if (name === "invocation_progress" && data?.item_id === itemId && typeof data.percentage === "number") onFraction(Math.min(1, Math.max(0, data.percentage)));
        } catch {
          // not an event we read
        }
      }
    });
    socket.addEventListener("error", () => this.log.debug("InvokeAI's socket did not open; steps will not show for this job"));
    return {
      close() {
        socket.close();
      },
    };
  }
}
