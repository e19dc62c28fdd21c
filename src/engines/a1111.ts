import type { GenerationRequest, GenerationResult, SchedulerName } from "../core/generation.js";
import { imageCount } from "../core/generation.js";
import type { Logger } from "../core/log.js";
import { AppEngine, type AppTiming } from "./appEngine.js";
import { EngineJobError, type GenerationJob } from "./engine.js";
import { stagePng } from "./engineHttp.js";

/**
 * AUTOMATIC1111 (and the forks that keep its API: SD.Next, Forge) doing the generating: `POST /sdapi/v1/txt2img`
 * while `/sdapi/v1/progress` is polled for steps, `/sdapi/v1/interrupt` to cancel. Its PNGs, with their own
 * `parameters` text, go through our storage, previews and index like the runner's.
 */

export interface A1111Options {
  baseUrl: string;
  /** `user:password` for a web UI started with --api-auth. */
  auth: string | null;
  timing?: Partial<A1111Timing>;
}

export interface A1111Timing extends AppTiming {
  /** How often /sdapi/v1/progress is read while txt2img runs. */
  pollMs: number;
}

const DEFAULT_TIMING: A1111Timing = { callMs: 10_000, pollMs: 250, jobBaseMs: 120_000, msPerMegapixelStep: 3_000 };

/** Our scheduler names as A1111 names its samplers (the same names its `parameters` text uses); the rest it has none for. */
export const A1111_SAMPLERS: Partial<Record<SchedulerName, string>> = {
  euler: "Euler",
  euler_a: "Euler a",
  dpmpp_2m: "DPM++ 2M",
  dpmpp_2m_karras: "DPM++ 2M Karras",
  ddim: "DDIM",
  pndm: "PLMS",
  heun: "Heun",
  unipc: "UniPC",
  lcm: "LCM",
};

const SD15_SAMPLER = "Euler a";

interface Txt2ImgAnswer {
  images: string[];
  info: Record<string, unknown>;
}

export class A1111Engine extends AppEngine<A1111Timing> {
  readonly name = "a1111";
  private samplers: Promise<string[]> | null = null;

  constructor(options: A1111Options, log: Logger) {
    super({ label: "AUTOMATIC1111", baseUrl: options.baseUrl, auth: options.auth, unreachableHint: "is it running with --api?" }, { ...DEFAULT_TIMING, ...options.timing }, log);
  }

  /**
   * The sampler as this web UI names it, checked against /sdapi/v1/samplers (asked once): A1111 1.9 and Forge
   * name the Karras schedule apart ("DPM++ 2M" + scheduler "Karras"), older ones in the sampler's name.
   */
  private async samplerFor(scheduler: SchedulerName | null): Promise<{ sampler_name: string; scheduler?: string }> {
    const wanted = (scheduler && A1111_SAMPLERS[scheduler]) || SD15_SAMPLER;
    let offered: string[];
    try {
      offered = await (this.samplers ??= this.fetchSamplers());
    } catch (error) {
      this.samplers = null;
      this.log.debug({ error: (error as Error).message }, "could not list AUTOMATIC1111's samplers; sending the name as is");
      return { sampler_name: wanted };
    }
    if (offered.includes(wanted)) return { sampler_name: wanted };
    const karras = /^(.*) Karras$/.exec(wanted);
    if (karras && offered.includes(karras[1]!)) return { sampler_name: karras[1]!, scheduler: "Karras" };
    throw new EngineJobError("bad_request", `${this.where} offers no sampler '${wanted}' (it has: ${offered.join(", ")}); pick another scheduler`);
  }

  private async fetchSamplers(): Promise<string[]> {
    const answer = await this.http.json("GET", "/sdapi/v1/samplers", undefined, this.timing.callMs);
    if (!Array.isArray(answer)) throw this.http.nonsense("/sdapi/v1/samplers", "a list of samplers", answer);
    return answer.map((sampler) => (sampler as { name?: unknown }).name).filter((name): name is string => typeof name === "string");
  }

  /** The checkpoints the web UI offers, by the titles `sd_model_checkpoint` takes. */
  async models(): Promise<string[]> {
    const answer = await this.http.json("GET", "/sdapi/v1/sd-models", undefined, this.timing.callMs);
    if (!Array.isArray(answer)) throw this.http.nonsense("/sdapi/v1/sd-models", "a list of models", answer);
    return answer.map((model) => (model as { title?: unknown }).title).filter((title): title is string => typeof title === "string");
  }

  async generate(request: GenerationRequest, job: GenerationJob): Promise<GenerationResult> {
    this.checkRunnable(request, job);
    this.checkScheduler(request, A1111_SAMPLERS);
    const count = imageCount(request);
    const started = Date.now();
    const deadlineMs = this.deadlineMs(request, count);
    const payload = {
      prompt: request.prompt,
      negative_prompt: request.negativePrompt ?? "",
      steps: request.steps,
      cfg_scale: request.cfgScale,
      width: request.width,
      height: request.height,
      seed: request.seed,
      // n_iter images one after another, seeds seed, seed+1...: the same seeds our batches use.
      batch_size: 1,
      n_iter: count,
      ...(await this.samplerFor(request.scheduler)),
      send_images: true,
      save_images: false,
      ...(request.model.engineModel && {
        override_settings: { sd_model_checkpoint: request.model.engineModel },
        // Keep the checkpoint loaded for the next job, as our runner keeps its model warm.
        override_settings_restore_afterwards: false,
      }),
    };
    const stopPolling = this.pollProgress(request, job, count);
    const interrupt = () => {
      this.http.json("POST", "/sdapi/v1/interrupt", undefined, this.timing.callMs).catch((error: Error) =>
        this.log.warn({ error: error.message }, "could not ask AUTOMATIC1111 to interrupt"),
      );
    };
    job.signal.addEventListener("abort", interrupt, { once: true });
    let answer: unknown;
    try {
      answer = await this.http.json("POST", "/sdapi/v1/txt2img", payload, deadlineMs);
    } finally {
      stopPolling();
      job.signal.removeEventListener("abort", interrupt);
    }
    // Interrupted, A1111 still answers with what it had: a cancelled job stores none of it.
    if (job.signal.aborted) throw new EngineJobError("cancelled", "cancelled while running");
    const { images, info } = this.readAnswer(answer, count);
    for (const [index, image] of images.entries()) {
      await stagePng(Buffer.from(image.replace(/^data:image\/\w+;base64,/, ""), "base64"), job.outputPaths[index]!, request, this.where);
    }
    const seeds = Array.isArray(info.all_seeds) ? info.all_seeds : [];
    if (seeds.length > 0 && seeds[0] !== request.seed) {
      this.log.warn({ asked: request.seed, used: seeds[0] }, "AUTOMATIC1111 used another seed than the one asked");
    }
    return this.result(request, started, {
      seed: typeof seeds[0] === "number" ? seeds[0] : request.seed,
      family: typeof info.sd_model_name === "string" && /xl/i.test(info.sd_model_name) ? "sdxl" : "sd15",
      scheduler: typeof info.sampler_name === "string" ? info.sampler_name : `${payload.sampler_name}${payload.scheduler ? ` ${payload.scheduler}` : ""}`,
      versions: { engine: "a1111", ...(typeof info.version === "string" && { a1111: info.version }) },
      engineInfo: info,
    });
  }

  /** Polls /sdapi/v1/progress while the job runs; returns the function that stops it. */
  private pollProgress(request: GenerationRequest, job: GenerationJob, count: number): () => void {
    let finished = false;
    let lastStep = 0;
    const total = request.steps * count;
    const poll = async () => {
      while (!finished) {
        await new Promise((resolve) => setTimeout(resolve, this.timing.pollMs));
        if (finished) return;
        try {
          const answer = (await this.http.json("GET", "/sdapi/v1/progress?skip_current_image=true", undefined, this.timing.callMs)) as {
            state?: { sampling_step?: unknown; sampling_steps?: unknown; job_no?: unknown };
          };
          const state = answer?.state ?? {};
          const step = typeof state.sampling_step === "number" ? state.sampling_step : null;
          const jobNo = typeof state.job_no === "number" ? state.job_no : 0;
          if (step === null) continue;
          // Steps count across the batch; never backwards (A1111 resets sampling_step between images).
          const done = Math.min(total, jobNo * request.steps + step);
          if (done > lastStep) {
            lastStep = done;
            job.onProgress({ step: done, totalSteps: total });
          }
        } catch (error) {
          this.log.debug({ error: (error as Error).message }, "AUTOMATIC1111 progress poll failed");
        }
      }
    };
    void poll();
    return () => {
      finished = true;
    };
  }

  private readAnswer(answer: unknown, count: number): Txt2ImgAnswer {
    const body = answer as { images?: unknown; info?: unknown } | null;
    if (!body || !Array.isArray(body.images) || body.images.length < count || !body.images.every((image) => typeof image === "string")) {
      throw this.http.nonsense("/sdapi/v1/txt2img", `${count} base64 image(s) in 'images'`, answer);
    }
    let info: Record<string, unknown> = {};
    if (typeof body.info === "string") {
      try {
        info = JSON.parse(body.info) as Record<string, unknown>;
      } catch {
        info = { raw: body.info };
      }
    }
    // A1111 appends grids and extras after the images when asked to; ours are the first `count`.
    return { images: (body.images as string[]).slice(0, count), info };
  }
}
