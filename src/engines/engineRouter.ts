import type { EngineName, GenerationRequest, GenerationResult } from "../core/generation.js";
import type { Engine, EngineHealth, GenerationJob } from "./engine.js";

/**
 * The engine the worker sees when models may run on different engines: each job goes to its model's engine
 * (`engine:` in models.yaml, else IMAGE_ENGINE). Engines are made when a job first needs one; the default one is
 * the one started early and reported by /healthz.
 */
export class EngineRouter implements Engine {
  private readonly engines = new Map<EngineName, Engine>();

  constructor(
    readonly defaultEngine: EngineName,
    private readonly make: (name: EngineName) => Engine,
  ) {}

  get name(): string {
    return this.defaultEngine;
  }

  /** The engine by that name, made on first use. */
  engine(name: EngineName): Engine {
    let engine = this.engines.get(name);
    if (!engine) {
      engine = this.make(name);
      this.engines.set(name, engine);
    }
    return engine;
  }

  health(): EngineHealth {
    const own = this.engine(this.defaultEngine).health();
    // A restart anywhere is worth seeing in /metrics, whichever engine had it.
    const restarts = [...this.engines.values()].reduce((sum, engine) => sum + engine.health().restarts, 0);
    return { ...own, restarts };
  }

  start(): Promise<void> {
    return this.engine(this.defaultEngine).start();
  }

  generate(request: GenerationRequest, job: GenerationJob): Promise<GenerationResult> {
    return this.engine(request.model.engine ?? this.defaultEngine).generate(request, job);
  }

  async release(): Promise<void> {
    await Promise.all([...this.engines.values()].map((engine) => engine.release()));
  }

  async stop(): Promise<void> {
    await Promise.all([...this.engines.values()].map((engine) => engine.stop()));
  }
}
