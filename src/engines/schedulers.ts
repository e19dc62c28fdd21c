/** Scheduler names the runner accepts; python/diffusers_runner/pipelines.py maps each to a diffusers class. */
export const SCHEDULERS = ["euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "pndm", "heun", "unipc"] as const;
export type SchedulerName = (typeof SCHEDULERS)[number];
