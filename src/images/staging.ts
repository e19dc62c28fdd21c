import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { GenerationResult } from "../core/generation.js";

/**
 * The folder where an engine leaves finished PNGs until storage has them. The result JSON goes down after the
 * PNGs, whole (write then rename): all present means a restart can skip straight to the upload. Every file of a
 * job starts with its id and a dot (job ids have none): `<id>.png`, `<id>.2.png`... for a batch, `<id>.init` for an image-to-image start image.
 */
export class StagingArea {
  constructor(readonly dir: string) {}

  /** Where the engine writes image `index` (from 0) of this job's batch. */
  pngPath(jobId: string, index = 0): string {
    return path.join(this.dir, index === 0 ? `${jobId}.png` : `${jobId}.${index + 1}.png`);
  }

  pngPaths(jobId: string, count: number): string[] {
    return Array.from({ length: count }, (_, index) => this.pngPath(jobId, index));
  }

  /** Where the engine writes image `index`'s preview: `<id>.preview.webp`, `<id>.2.preview.webp`... */
  previewPaths(jobId: string, count: number): string[] {
    return this.pngPaths(jobId, count).map((png) => png.replace(/\.png$/, ".preview.webp"));
  }

  /** Where an image-to-image job's start image is put for the engine. */
  initImagePath(jobId: string): string {
    return path.join(this.dir, `${jobId}.init`);
  }

  /** Where an inpaint job's mask is put for the engine. */
  maskPath(jobId: string): string {
    return path.join(this.dir, `${jobId}.mask`);
  }

  /** Where an edit's image `index` (from 0: the edited one, then its references) is put for the engine. */
  editPath(jobId: string, index: number): string {
    return path.join(this.dir, `${jobId}.edit${index + 1}`);
  }

  /** Where a ControlNet job's control map `index` (from 0) is put for the engine. */
  controlPath(jobId: string, index: number): string {
    return path.join(this.dir, `${jobId}.control${index + 1}`);
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
  async finished(jobId: string, count: number): Promise<GenerationResult | undefined> {
    if (!this.pngPaths(jobId, count).every((png) => existsSync(png)) || !existsSync(this.resultPath(jobId))) return undefined;
    try {
      return JSON.parse(await readFile(this.resultPath(jobId), "utf8")) as GenerationResult;
    } catch {
      return undefined;
    }
  }

  /** Where the PNGs are kept, when they are: said in the error of a job storage refused. */
  keptPngs(jobId: string, count: number): string[] {
    return this.pngPaths(jobId, count).filter((png) => existsSync(png));
  }

  /** The jobs that have files here. */
  async jobIds(): Promise<string[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    return [...new Set(names.map(jobIdOfFile).filter((id): id is string => id !== null))];
  }

  async remove(jobId: string): Promise<void> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    await Promise.all(names.filter((name) => jobIdOfFile(name) === jobId).map((name) => rm(path.join(this.dir, name), { force: true })));
  }
}

/** `<id>.png`, `<id>.3.png.partial`, `<id>.png.result.json`, `<id>.init`, `<id>.mask`, `<id>.2.preview.webp` -> `<id>`; null for a file not ours. */
function jobIdOfFile(name: string): string | null {
  const match = /^([^.]+)\.(?:\d+\.)?(?:png|init|mask|control\d|edit\d|preview\.webp)(?:\.|$)/.exec(name);
  return match ? match[1]! : null;
}
