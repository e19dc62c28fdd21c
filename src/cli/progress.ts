import { clearLineBeforeLogs } from "../core/log.js";
import cliProgress from "cli-progress";

/** What the display learns from a job_status answer or a progress notification. */
export interface JobUpdate {
  status: string;
  position?: number;
  progress?: { step: number; totalSteps: number };
  notice?: string;
}

export interface JobProgress {
  show(update: JobUpdate): void;
  stop(): void;
}

/** A bar (step k/n, elapsed, ETA) on a terminal; plain "step k/n" lines for a log or a pipe. Both on stderr. */
export function jobProgress(totalSteps: number, stream: NodeJS.WriteStream = process.stderr): JobProgress {
  return stream.isTTY ? progressBar(totalSteps, stream) : progressLines(stream);
}

function stateLabel({ status, position, notice, progress }: JobUpdate): string {
  const label = status === "queued" && position ? `queued #${position}` : status;
  // Running, the bar says so already: what it waits for is the whole label.
  if (notice) return status === "running" ? notice.split("\n")[0]! : `${label}: ${notice.split("\n")[0]}`;
  // Running with no step yet and nothing said: the model is loading (a warm one passes this in a moment).
  return status === "running" && !progress?.step ? "running: loading the model" : label;
}

function progressLines(stream: NodeJS.WritableStream): JobProgress {
  let last = "";
  return {
    show(update) {
      const step = update.status === "running" && update.progress ? `step ${update.progress.step}/${update.progress.totalSteps}` : null;
      const line = step ? (update.notice ? `${step} (${update.notice.split("\n")[0]})` : step) : stateLabel(update);
      // job_status answers repeat what the notifications already said: write each change once.
      if (line !== last) stream.write(`${line}\n`);
      last = line;
    },
    stop() {},
  };
}

function progressBar(totalSteps: number, stream: NodeJS.WritableStream): JobProgress {
  const { BarFormat, TimeFormat } = cliProgress.Format;
  // ETA from the steps seen since the first one, so the runner's start and the queue wait do not skew it.
  let firstStep: { step: number; at: number } | null = null;
  let msPerStep: number | null = null;
  const bar = new cliProgress.SingleBar({
    stream,
    fps: 4,
    hideCursor: true,
    // Narrow enough that what the job waits for fits beside it on a 100-column terminal.
    barsize: 20,
    format: (options, params, payload: { state: string }) => {
      const elapsed = TimeFormat(Math.round((Date.now() - params.startTime) / 1000), options, 1);
      const eta = msPerStep === null ? "--" : TimeFormat(Math.ceil(((params.total - params.value) * msPerStep) / 1000), options, 1);
      const line = `${BarFormat(params.progress, options)} step ${params.value}/${params.total} | ${elapsed} elapsed | ETA ${eta} | `;
      // The state (and what the job waits for) goes last and is cut to fit, so a long reason never pushes the bar off.
      const columns = (stream as NodeJS.WriteStream).columns || 100;
      const room = Math.max(24, columns - line.length - 1);
      return `${line}${payload.state.length > room ? `${payload.state.slice(0, room - 1)}…` : payload.state}`;
    },
  }, cliProgress.Presets.shades_classic);
  bar.start(totalSteps, 0, { state: "queued" });
  // A log line (a warning, say) clears the bar's line first and goes above it; the bar draws itself again below.
  clearLineBeforeLogs(() => stream.write("\r\u001b[2K"));
  return {
    show(update) {
      const step = update.progress?.step;
      if (update.progress && update.progress.totalSteps !== bar.getTotal()) bar.setTotal(update.progress.totalSteps);
      if (step !== undefined && update.status === "running") {
        if (!firstStep || step < firstStep.step) firstStep = { step, at: Date.now() };
        else if (step > firstStep.step) msPerStep = (Date.now() - firstStep.at) / (step - firstStep.step);
      }
      bar.update(update.status === "done" ? bar.getTotal() : (step ?? bar.getProgress() * bar.getTotal()), { state: stateLabel(update) });
    },
    stop() {
      clearLineBeforeLogs(null);
      bar.stop();
    },
  };
}
