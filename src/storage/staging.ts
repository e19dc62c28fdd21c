import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { GenerationResult } from "../generation.js";

/**
 * The folder where an engine leaves a finished PNG until storage has it. The result JSON goes down after the
 * PNG, whole (write then rename): both present means a restart can skip straight to the upload.
 */
export class StagingArea {
  constructor(readonly dir: string) {}

  /** Where the engine writes this job's PNG. */
  pngPath(jobId: string): string {
    return path.join(this.dir, `${jobId}.png`);
  }

  private resultPath(jobId: string): string {
    return `${this.pngPath(jobId)}.result.json`;
  }

  async prepare(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
  }

  async saveResult(jobId: string, result: GenerationResult): Promise<void> {
    const target = this.resultPath(jobId);
    await writeFile(`${target}.partial`, JSON.stringify(result));
    await rename(`${target}.partial`, target);
  }

  /** A finished generation an earlier run left behind, or undefined (an unreadable one is generated again). */
  async finished(jobId: string): Promise<GenerationResult | undefined> {
    if (!existsSync(this.pngPath(jobId)) || !existsSync(this.resultPath(jobId))) return undefined;
    try {
      return JSON.parse(await readFile(this.resultPath(jobId), "utf8")) as GenerationResult;
    } catch {
      return undefined;
    }
  }

  /** Where the PNG is kept, when it is: said in the error of a job storage refused. */
  keptPng(jobId: string): string | undefined {
    const png = this.pngPath(jobId);
    return existsSync(png) ? png : undefined;
  }

  /** The jobs that have files here. */
  async jobIds(): Promise<string[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    return [...new Set(names.filter((name) => name.includes(".png")).map((name) => name.slice(0, name.indexOf(".png"))))];
  }

  async remove(jobId: string): Promise<void> {
    const png = this.pngPath(jobId);
    await Promise.all([png, this.resultPath(jobId), `${png}.partial`, `${this.resultPath(jobId)}.partial`].map((file) => rm(file, { force: true })));
  }
}
