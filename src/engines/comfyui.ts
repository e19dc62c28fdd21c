// ComfyUI's API in one file: the built-in graph, one prompt's run (websocket, /history polling, deadline) and its
// cancel share the prompt's state, and split apart each would need the others'.
import { matchCheckpoint } from "../models/checkpointNames.js";
import { randomUUID } from "node:crypto";
import type { GenerationRequest, GenerationResult, SchedulerName } from "../core/generation.js";
import { batchSeeds, imageCount } from "../core/generation.js";
import type { Logger } from "../core/log.js";
import { AppEngine, type AppTiming } from "./appEngine.js";
import { EngineJobError, type GenerationJob } from "./engine.js";
import { fillWorkflow, loadWorkflow, type Workflow } from "../models/comfyWorkflow.js";
import { stagePng } from "./engineHttp.js";
import { seconds } from "./seconds.js";

/**
 * ComfyUI doing the generating: a built-in text-to-image graph (checkpoint loader, two CLIP encodes, empty latent,
 * KSampler, VAE decode, save) queued with `POST /prompt`; steps from the `/ws` websocket, the image from
 * `/history/{id}` and `/view`; cancel with `/interrupt` (running) or a `/queue` delete (still waiting). A batch is
 * one prompt per image with seeds seed, seed+1..., so each image is what its seed gives alone, as with our runner.
 */

export interface ComfyUIOptions {
  baseUrl: string;
  timing?: Partial<ComfyTiming>;
}

export interface ComfyTiming extends AppTiming {
  /** How often /history is read while waiting, in case a websocket message was missed. */
  historyPollMs: number;
}

const DEFAULT_TIMING: ComfyTiming = { callMs: 10_000, historyPollMs: 1_000, jobBaseMs: 120_000, msPerMegapixelStep: 3_000 };

/** Our scheduler names as ComfyUI's KSampler takes them: sampler and noise schedule. */
export const COMFY_SAMPLERS: Partial<Record<SchedulerName, { sampler: string; scheduler: string }>> = {
  euler: { sampler: "euler", scheduler: "normal" },
  euler_a: { sampler: "euler_ancestral", scheduler: "normal" },
  dpmpp_2m: { sampler: "dpmpp_2m", scheduler: "normal" },
  dpmpp_2m_karras: { sampler: "dpmpp_2m", scheduler: "karras" },
  ddim: { sampler: "ddim", scheduler: "ddim_uniform" },
  pndm: { sampler: "ipndm", scheduler: "normal" },
  heun: { sampler: "heun", scheduler: "normal" },
  unipc: { sampler: "uni_pc", scheduler: "normal" },
  // sgm_uniform is ComfyUI's trailing spacing, what SDXL-Turbo and Lightning are run with there.
  euler_trailing: { sampler: "euler", scheduler: "sgm_uniform" },
  euler_a_trailing: { sampler: "euler_ancestral", scheduler: "sgm_uniform" },
  ddim_trailing: { sampler: "ddim", scheduler: "sgm_uniform" },
  lcm: { sampler: "lcm", scheduler: "sgm_uniform" },
  flow_euler: { sampler: "euler", scheduler: "simple" },
};

const SAVE_NODE = "9";

/**
 * The built-in graph, in ComfyUI's API format. For SDXL the prompts go through CLIPTextEncodeSDXL with the image's
 * size as its size conditioning (both encoders get the whole prompt), as ComfyUI's own SDXL example does.
 */
export function textToImageGraph(request: GenerationRequest, seed: number, checkpoint: string): Record<string, unknown> {
  const { sampler, scheduler } = COMFY_SAMPLERS[request.scheduler ?? "euler_a"]!;
  const sdxl = (request.model.family ?? (/xl/i.test(checkpoint) ? "sdxl" : "sd15")) === "sdxl";
  const { width, height } = request;
  const encode = (text: string) =>
    sdxl
      ? { class_type: "CLIPTextEncodeSDXL", inputs: { width, height, crop_w: 0, crop_h: 0, target_width: width, target_height: height, text_g: text, text_l: text, clip: ["4", 1] } }
      : { class_type: "CLIPTextEncode", inputs: { text, clip: ["4", 1] } };
  return {
    "4": { class_type: "CheckpointLoaderSimple", inputs: { ckpt_name: checkpoint } },
    "5": { class_type: "EmptyLatentImage", inputs: { width, height, batch_size: 1 } },
    "6": encode(request.prompt),
    "7": encode(request.negativePrompt ?? ""),
    "3": {
      class_type: "KSampler",
      inputs: {
        seed,
        steps: request.steps,
        cfg: request.cfgScale,
        sampler_name: sampler,
        scheduler,
        denoise: 1,
        model: ["4", 0],
        positive: ["6", 0],
        negative: ["7", 0],
        latent_image: ["5", 0],
      },
    },
    "8": { class_type: "VAEDecode", inputs: { samples: ["3", 0], vae: ["4", 2] } },
    [SAVE_NODE]: { class_type: "SaveImage", inputs: { filename_prefix: "kitty-images", images: ["8", 0] } },
  };
}

type WaitEnd = { kind: "done" } | { kind: "error"; message: string } | { kind: "interrupted" };

export class ComfyUIEngine extends AppEngine<ComfyTiming> {
  readonly name = "comfyui";

  constructor(
    private readonly options: ComfyUIOptions,
    log: Logger,
  ) {
    super({ label: "ComfyUI", baseUrl: options.baseUrl, unreachableHint: "is it running?" }, { ...DEFAULT_TIMING, ...options.timing }, log);
  }

  /** The checkpoints CheckpointLoaderSimple offers. */
  async models(): Promise<string[]> {
    const answer = (await this.http.json("GET", "/object_info/CheckpointLoaderSimple", undefined, this.timing.callMs)) as Record<string, any>;
    const names = answer?.CheckpointLoaderSimple?.input?.required?.ckpt_name?.[0];
    if (!Array.isArray(names)) throw this.http.nonsense("/object_info/CheckpointLoaderSimple", "CheckpointLoaderSimple's ckpt_name list", answer);
    return names.filter((name): name is string => typeof name === "string");
  }

  async generate(request: GenerationRequest, job: GenerationJob): Promise<GenerationResult> {
    this.checkRunnable(request, job);
    this.checkScheduler(request, COMFY_SAMPLERS);
    const workflowPath = request.model.workflowPath ?? null;
    const workflow = workflowPath ? this.readWorkflow(workflowPath) : null;
    // A workflow of one's own may load its model some other way: it gets a checkpoint only when one is named.
    // ComfyUI wants the file name exactly as it lists it; models.yaml may say it without the extension or folder.
    const named = request.model.engineModel;
    const offered = named || !workflow ? await this.models() : [];
    const matched = named ? matchCheckpoint(named, offered) : [];
    const checkpoint = named ? (matched.length === 1 ? matched[0]! : named) : workflow ? null : (offered[0] ?? null);
    if (!checkpoint && !workflow) throw new EngineJobError("model_not_found", `${this.where} offers no checkpoint (CheckpointLoaderSimple lists none)`);
    const sampling = COMFY_SAMPLERS[request.scheduler ?? "euler_a"]!;
    const count = imageCount(request);
    const seeds = batchSeeds(request.seed, count);
    const started = Date.now();
    const histories: unknown[] = [];
    for (const [index, seed] of seeds.entries()) {
      const { graph, outputNode } = workflow
        ? fillWorkflow(workflow, workflowPath!, request, seed, sampling, checkpoint)
        : { graph: textToImageGraph(request, seed, checkpoint!), outputNode: SAVE_NODE };
      const history = await this.runPrompt(request, job, graph, (value) =>
        job.onProgress({ step: index * request.steps + Math.min(value, request.steps), totalSteps: request.steps * count }),
      );
      histories.push(history.status ?? null);
      const image = this.savedImage(history, outputNode);
      const query = new URLSearchParams({ filename: image.filename, subfolder: image.subfolder ?? "", type: image.type ?? "output" });
      await stagePng(await this.http.bytes(`/view?${query}`, this.timing.callMs * 3), job.outputPaths[index]!, request, this.where);
    }
    return this.result(request, started, {
      seed: request.seed,
      family: request.model.family ?? (/xl/i.test(checkpoint ?? request.model.name) ? "sdxl" : "sd15"),
      scheduler: `${sampling.sampler}/${sampling.scheduler}`,
      versions: { engine: "comfyui" },
      engineInfo: { checkpoint, graph: workflowPath ?? "built-in text-to-image", status: histories },
    });
  }

  /** Queues one graph and waits for its end; resolves with its /history entry. */
  private async runPrompt(request: GenerationRequest, job: GenerationJob, graph: Record<string, unknown>, onStep: (value: number) => void): Promise<Record<string, any>> {
    const clientId = randomUUID();
    const deadlineMs = this.deadlineMs(request);
    // The socket opens before the prompt is queued, so no message about it can be missed.
    const socket = await this.openSocket(clientId);
    let promptId: string | null = null;
    let started = false;
    let settle: (end: WaitEnd) => void = () => undefined;
    const ended = new Promise<WaitEnd>((resolve) => (settle = resolve));
    type Message = { type?: string; data?: Record<string, any> };
    // ComfyUI may start the prompt before POST /prompt has answered with its id: what comes first waits here.
    const early: Message[] = [];
    const handle = (message: Message) => {
      const data = message.data ?? {};
      if (data.prompt_id !== undefined && data.prompt_id !== promptId) return;
      if (message.type === "execution_start") started = true;
      else if (message.type === "progress" && typeof data.value === "number") onStep(data.value);
      else if (message.type === "executing" && data.node === null) settle({ kind: "done" });
      else if (message.type === "execution_success") settle({ kind: "done" });
      else if (message.type === "execution_error") settle({ kind: "error", message: `${data.exception_type ?? "error"}: ${data.exception_message ?? "no message"} (node ${data.node_id ?? "?"}, ${data.node_type ?? "?"})` });
      else if (message.type === "execution_interrupted") settle({ kind: "interrupted" });
    };
    socket.addEventListener("message", (event) => {
      let message: Message;
      try {
        message = JSON.parse(String(event.data)) as Message;
      } catch {
        return; // binary preview frames and the like
      }
      if (promptId === null) early.push(message);
      else handle(message);
    });
    let stopping: Promise<unknown> = Promise.resolve();
    // Ends the /history polling once this prompt is settled, whichever way.
    let over = false;
    const cancel = () => {
      // Still waiting in ComfyUI's queue: take it out; running: interrupt it.
      // With its id, /interrupt stops this prompt only; without one ComfyUI stops whatever runs, someone else's too.
      const stop = started
        ? this.http.send("POST", "/interrupt", { prompt_id: promptId }, this.timing.callMs)
        : this.http.send("POST", "/queue", { delete: [promptId] }, this.timing.callMs);
      stopping = stop.catch((error: Error) => this.log.warn({ error: error.message }, "could not stop the ComfyUI prompt"));
      settle({ kind: "interrupted" });
    };
    try {
      const queued = (await this.http.json("POST", "/prompt", { prompt: graph, client_id: clientId }, this.timing.callMs)) as { prompt_id?: unknown };
      if (typeof queued?.prompt_id !== "string") throw this.http.nonsense("/prompt", "a prompt_id", queued);
      promptId = queued.prompt_id;
      for (const message of early.splice(0)) handle(message);
      job.signal.addEventListener("abort", cancel, { once: true });
      if (job.signal.aborted) cancel();
      const end = await Promise.race([ended, this.pollHistory(promptId, settle, () => over), this.deadline(deadlineMs, () => over)]).catch(async (error: unknown) => {
        // Past its deadline: free ComfyUI of it too, so the next job does not queue behind a stuck prompt.
        cancel();
        await stopping;
        throw error;
      });
      if (end.kind === "interrupted" || job.signal.aborted) {
        // The job ends once ComfyUI has been told, so its GPU is free for the next one.
        await stopping;
        throw new EngineJobError("cancelled", "cancelled while running");
      }
      if (end.kind === "error") throw new EngineJobError("generation_failed", `${this.where} failed the prompt: ${end.message}`);
      return await this.finishedHistory(promptId);
    } finally {
      over = true;
      job.signal.removeEventListener("abort", cancel);
      socket.close();
    }
  }

  /** Rejects after `ms` unless `isOver()` by then. */
  private deadline(ms: number, isOver: () => boolean): Promise<never> {
    return new Promise((_, reject) => {
      const timer = setTimeout(() => {
        if (!isOver()) reject(new EngineJobError("engine_unreachable", `${this.where} did not finish the prompt within ${seconds(ms)} s`));
      }, ms);
      timer.unref();
    });
  }

  /** Reads /history now and then: a prompt that ended while a websocket message was lost still ends here. */
  private async pollHistory(promptId: string, settle: (end: WaitEnd) => void, isOver: () => boolean): Promise<WaitEnd> {
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, this.timing.historyPollMs).unref());
      // Never resolves once over: the race it was in has been decided.
      if (isOver()) return new Promise<WaitEnd>(() => undefined);
      const entry = await this.history(promptId).catch(() => null);
      if (entry?.status?.completed === true || entry?.status?.status_str === "success") {
        settle({ kind: "done" });
        return { kind: "done" };
      }
      if (entry?.status?.status_str === "error") {
        const end: WaitEnd = { kind: "error", message: JSON.stringify(entry.status.messages ?? entry.status).slice(0, 300) };
        settle(end);
        return end;
      }
    }
  }

  /**
   * The entry of a prompt that has just ended. ComfyUI sends `execution_success` from its executor and writes
   * /history only afterwards (`task_done`, on another thread), so for a moment /history answers `{}`: wait for it.
   */
  private async finishedHistory(promptId: string): Promise<Record<string, any>> {
    const until = Date.now() + this.timing.callMs;
    for (let pause = 25; ; pause = Math.min(pause * 2, 500)) {
      const answer = (await this.http.json("GET", `/history/${encodeURIComponent(promptId)}`, undefined, this.timing.callMs)) as Record<string, any>;
      const entry = answer?.[promptId];
      if (entry && typeof entry === "object") return entry as Record<string, any>;
      if (Date.now() + pause > until) throw this.http.nonsense(`/history/${promptId}`, `an entry for prompt ${promptId} within ${this.timing.callMs / 1000} s of its end`, answer);
      await new Promise((resolve) => setTimeout(resolve, pause).unref());
    }
  }

  private async history(promptId: string): Promise<Record<string, any>> {
    const answer = (await this.http.json("GET", `/history/${encodeURIComponent(promptId)}`, undefined, this.timing.callMs)) as Record<string, any>;
    const entry = answer?.[promptId];
    if (!entry || typeof entry !== "object") throw this.http.nonsense(`/history/${promptId}`, `an entry for prompt ${promptId}`, answer);
    return entry as Record<string, any>;
  }

  /** The workflow file as it is now (edits apply to queued jobs); one that no longer fits fails the job, saying why. */
  private readWorkflow(file: string): Workflow {
    try {
      return loadWorkflow(file);
    } catch (error) {
      throw new EngineJobError("bad_request", (error as Error).message);
    }
  }

  private savedImage(history: Record<string, any>, outputNode: string): { filename: string; subfolder?: string; type?: string } {
    const images = history.outputs?.[outputNode]?.images;
    const image = Array.isArray(images) ? images[0] : undefined;
    if (!image || typeof image.filename !== "string") throw this.http.nonsense("/history", `an image from the SaveImage node (${outputNode})`, history.outputs ?? history);
    return image as { filename: string; subfolder?: string; type?: string };
  }

  private openSocket(clientId: string): Promise<WebSocket> {
    const url = `${this.options.baseUrl.replace(/^http/, "ws")}/ws?clientId=${encodeURIComponent(clientId)}`;
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url);
      const timer = setTimeout(() => {
        socket.close();
        reject(new EngineJobError("engine_unreachable", `${this.where} did not open its websocket (${url}) within ${this.timing.callMs / 1000} s`));
      }, this.timing.callMs);
      socket.addEventListener("open", () => {
        clearTimeout(timer);
        resolve(socket);
      }, { once: true });
      socket.addEventListener("error", () => {
        clearTimeout(timer);
        reject(new EngineJobError("engine_unreachable", `${this.where} could not be reached (its websocket ${url} refused); is it running?`));
      }, { once: true });
    });
  }
}
