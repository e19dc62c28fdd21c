import { mkdir, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Engine, EngineHealth, GenerationJob } from "../../src/engines/engine.js";
import { EngineJobError } from "../../src/engines/engine.js";
import type { GenerationRequest, GenerationResult } from "../../src/core/generation.js";
import { makePng } from "./png.js";

/** What the next generate() does: finish normally, throw an error, wait until the job is aborted, or write bad output. */
export type FakeStep = "ok" | EngineJobError | "hang" | "not-a-png" | "wrong-size" | "truncated" | "damaged";

/**
 * A stand-in Engine for fast worker and tool tests (never shipped): it writes a PNG of the asked size the way the runner does
 * (write, then rename), reports a step every `stepMs`, and honours the job's abort signal at each step.
 */
const TINY_WEBP = Buffer.from("UklGRjoAAABXRUJQVlA4IC4AAADQAQCdASoIAAgAAUAmJaACdLoB+AADsAD+pNf/TSPGkeNI+Yt/84ljqd3aAAAA", "base64");

export class FakeEngine implements Engine {
  readonly name = "fake";
  /** Every generate() call, in order. */
  readonly calls: GenerationRequest[] = [];
  /** Consumed one per generate(); when empty, jobs succeed. */
  readonly script: FakeStep[] = [];
  /** Calls in flight right now, and the most there ever were at once. */
  inFlight = 0;
  maxInFlight = 0;
  releases = 0;
  stopped = false;
  /** Resolves start() and each generate(); replace to hold the engine "still starting". */
  ready: Promise<void> = Promise.resolve();
  /** While set, generate() refuses at once, as an engine that cannot start does (nothing ran). */
  unavailable: string | null = null;

  constructor(private readonly stepMs = 5) {}

  health(): EngineHealth {
    return { state: this.stopped ? "stopped" : "ready", restarts: 0, device: "fake-device" };
  }

  async start(): Promise<void> {
    await this.ready;
  }

  async generate(request: GenerationRequest, job: GenerationJob): Promise<GenerationResult> {
    this.calls.push(request);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      await this.ready;
      if (this.unavailable) throw new EngineJobError("engine_unavailable", this.unavailable, true);
      const step = this.script.shift() ?? "ok";
      if (step instanceof EngineJobError) throw step;
      const total = step === "hang" ? Number.POSITIVE_INFINITY : request.steps;
      for (let done = 1; done <= total; done++) {
        if (job.signal.aborted) throw new EngineJobError("cancelled", "cancelled while running");
        await new Promise((resolve) => setTimeout(resolve, this.stepMs));
        job.onProgress({ step: Math.min(done, request.steps), totalSteps: request.steps });
      }
      for (const outputPath of job.outputPaths) {
        await mkdir(path.dirname(outputPath), { recursive: true });
        const bytes = outputFor(step, request.width, request.height);
        await writeFile(`${outputPath}.partial`, bytes);
        await rename(`${outputPath}.partial`, outputPath);
      }
      // A fixed 8x8 WebP stands in for the runner's preview (Node has no WebP encoder); the real runner's are tested in its own tests.
      for (const previewPath of job.previewPaths) await writeFile(previewPath, TINY_WEBP);
      return {
        width: request.width,
        height: request.height,
        seed: request.seed,
        family: "sd15",
        scheduler: request.scheduler ?? "euler_a",
        device: "fake-device",
        dtype: "float32",
        options: {},
        modelLoads: 1,
        stepsRun: request.steps,
        // A stand-in count, one per word: the real runner counts CLIP tokens.
        promptTokens: request.prompt.split(/\s+/).filter(Boolean).length,
        previews: job.previewPaths.map((previewPath) => ({ path: previewPath, mimeType: "image/webp", width: 8, height: 8, bytes: TINY_WEBP.length })),
        timings: { loadSeconds: 0, inferenceSeconds: 0.01, saveSeconds: 0 },
        versions: { fake: "1" },
      };
    } finally {
      this.inFlight--;
    }
  }

  async release(): Promise<void> {
    this.releases++;
  }

  async stop(): Promise<void> {
    this.stopped = true;
  }
}

/** What the stand-in writes for each step: a good PNG, or one of the ways an engine's output goes wrong. */
function outputFor(step: FakeStep, width: number, height: number): Buffer {
  if (step === "not-a-png") return Buffer.from("this is not a PNG");
  if (step === "wrong-size") return makePng(width / 2, height);
  const png = makePng(width, height);
  // Cut short inside the image data, as a writer that died mid-file leaves it.
  if (step === "truncated") return png.subarray(0, Math.floor(png.length * 0.6));
  if (step === "damaged") {
    const flipped = Buffer.from(png);
    flipped[flipped.length - 20] ^= 0xff; // one byte of the last IDAT, so its CRC no longer matches
    return flipped;
  }
  return png;
}
