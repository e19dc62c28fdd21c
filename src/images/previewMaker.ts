import { messageOf } from "../core/errors.js";
import type { PreviewFile } from "../core/generation.js";
import type { Logger } from "../core/log.js";

/** Makes the WebP preview of a PNG an engine wrote without one (AUTOMATIC1111's): null when it cannot, never an error. */
export interface PreviewMaker {
  make(pngPath: string, previewPath: string): Promise<PreviewFile | null>;
}

/** The runner's own preview code, run alone: Pillow only (no torch), about a tenth of a second. */
export function pythonPreviewMaker(python: string, packageDir: string, log: Logger): PreviewMaker {
  return {
    async make(pngPath, previewPath) {
      try {
        // Loaded on first use: execa costs about 90 ms to import, and a server answers tools/list without it.
        const { execa } = await import("execa");
        const { stdout } = await execa(python, ["-m", "diffusers_runner.previews", pngPath, previewPath], { cwd: packageDir, timeout: 30_000 });
        return JSON.parse(stdout) as PreviewFile;
      } catch (error) {
        log.warn({ png: pngPath, error: messageOf(error).split("\n")[0] }, "could not make a preview; the image is stored without one");
        return null;
      }
    },
  };
}
