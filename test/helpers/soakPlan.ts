/** mulberry32: a tiny seeded PRNG, so a soak or a kill round that failed replays exactly from its printed seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let mixed = state;
    mixed = Math.imul(mixed ^ (mixed >>> 15), mixed | 1);
    mixed ^= mixed + Math.imul(mixed ^ (mixed >>> 7), mixed | 61);
    return ((mixed ^ (mixed >>> 14)) >>> 0) / 4294967296;
  };
}

/** What the soak's driver does, each when job `trigger` (an index into the jobs, FIFO) is running. */
export type SoakEvent =
  | { kind: "kill_runner"; trigger: number }
  | { kind: "restart_minio"; trigger: number }
  | { kind: "cancel_running"; trigger: number }
  | { kind: "cancel_queued"; trigger: number; target: number };

export interface SoakPlan {
  /** Denoising steps per job. */
  steps: number[];
  /** In the order the driver meets them: by trigger, faults before cancels on the same job. */
  events: SoakEvent[];
}

/**
 * Jobs a runner kill or a running cancel must catch mid-run get this many steps (a few seconds at 256x256 on CPU):
 * at 1-2 steps a job is over before a step can be seen, and the event would hit the next job or nothing.
 */
export const LONG_JOB_STEPS = 40;

/**
 * Two runner kills (about a third and two thirds through), one MinIO restart (about halfway), and about
 * `cancelShare` of the other jobs cancelled, half while queued and half while running. Events stay a few jobs
 * apart, so one never lands on another's job, and the last jobs are left plain for the queue to end on.
 */
export function planSoak(jobCount: number, random: () => number, cancelShare = 0.1): SoakPlan {
  const between = (from: number, to: number) => Math.floor(from + random() * (to - from));
  const steps = Array.from({ length: jobCount }, (): number => (random() < 0.5 ? 1 : 2));
  const kills = [between(jobCount * 0.2, jobCount * 0.35), between(jobCount * 0.6, jobCount * 0.75)];
  const minioRestart = between(jobCount * 0.45, jobCount * 0.55);
  const events: SoakEvent[] = [...kills.map((trigger) => ({ kind: "kill_runner" as const, trigger })), { kind: "restart_minio", trigger: minioRestart }];
  for (const trigger of kills) steps[trigger] = LONG_JOB_STEPS;

  const gap = 3;
  const taken = [...kills, minioRestart];
  const clear = (index: number) => taken.every((other) => Math.abs(other - index) > gap);
  // The first jobs run while the runner warms up and the driver starts; the last ones end the soak plainly.
  for (let index = 8; index < jobCount - 5; index++) {
    if (random() >= cancelShare || !clear(index)) continue;
    taken.push(index);
    if (random() < 0.5) {
      steps[index] = LONG_JOB_STEPS;
      events.push({ kind: "cancel_running", trigger: index });
    } else {
      // Cancelled while an earlier job runs, so it is certainly still waiting (the queue is FIFO).
      events.push({ kind: "cancel_queued", trigger: between(Math.max(0, index - 40), index - 10), target: index });
    }
  }
  const order = (event: SoakEvent) => event.trigger + (event.kind === "cancel_queued" ? 0.5 : 0);
  events.sort((a, b) => order(a) - order(b));
  return { steps, events };
}
