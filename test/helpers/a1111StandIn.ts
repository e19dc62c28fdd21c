import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { makePng } from "./png.js";
import { readJson } from "./standInHttp.js";

/**
 * A stand-in for AUTOMATIC1111's web API (`--api`), written from its documented routes: txt2img with steps that take
 * time and show in /progress, interrupt, sd-models, samplers. `mode` makes it misbehave the ways a real one can.
 */
export type StandInMode = "ok" | "malformed" | "not-json" | "http-500" | "hang" | "wrong-size";

export interface A1111StandIn {
  url: string;
  mode: StandInMode;
  stepMs: number;
  /** Every txt2img body, and the Authorization header it came with. */
  requests: Array<{ body: Record<string, any>; authorization: string | undefined }>;
  interrupts: number;
  progressPolls: number;
  close(): Promise<void>;
}

export const STAND_IN_MODELS = ["juggernautXL_v9.safetensors [abc123]", "v1-5-pruned-emaonly.safetensors [6ce0161689]", "dreamshaper_8.safetensors [879db523c3]"];

export async function startA1111StandIn(): Promise<A1111StandIn> {
  const progress = { sampling_step: 0, sampling_steps: 0, job_no: 0, job_count: 0 };
  let interrupted = false;
  const standIn: A1111StandIn = { url: "", mode: "ok", stepMs: 5, requests: [], interrupts: 0, progressPolls: 0, close: async () => undefined };

  const server: Server = createServer((request, response) => {
    const send = (status: number, body: unknown) => {
      response.writeHead(status, { "content-type": "application/json" });
      response.end(typeof body === "string" ? body : JSON.stringify(body));
    };
    const route = `${request.method} ${request.url?.split("?")[0]}`;
    void (async () => {
      if (route === "GET /sdapi/v1/sd-models") return send(200, STAND_IN_MODELS.map((title) => ({ title, model_name: title.split(".")[0], filename: `/models/${title.split(" ")[0]}` })));
      if (route === "GET /sdapi/v1/samplers") return send(200, ["Euler a", "Euler", "DPM++ 2M", "DDIM", "PLMS", "Heun"].map((name) => ({ name, aliases: [], options: {} })));
      if (route === "GET /sdapi/v1/progress") {
        standIn.progressPolls++;
        return send(200, { progress: 0, eta_relative: 0, state: { ...progress, interrupted }, current_image: null, textinfo: null });
      }
      if (route === "POST /sdapi/v1/interrupt") {
        standIn.interrupts++;
        interrupted = true;
        return send(200, {});
      }
      if (route !== "POST /sdapi/v1/txt2img") return send(404, { detail: "Not Found" });
      const body = await readJson(request);
      standIn.requests.push({ body, authorization: request.headers.authorization });
      if (standIn.mode === "hang") return; // never answers
      if (standIn.mode === "http-500") return send(500, { error: "RuntimeError", detail: "CUDA out of memory", body: "", errors: "" });
      if (standIn.mode === "not-json") return send(200, "<html>Internal Server Error</html>");
      interrupted = false;
      const images: string[] = [];
      const seeds: number[] = [];
      for (let image = 0; image < body.n_iter && !interrupted; image++) {
        Object.assign(progress, { job_no: image, job_count: body.n_iter, sampling_steps: body.steps });
        for (let step = 1; step <= body.steps && !interrupted; step++) {
          await new Promise((resolve) => setTimeout(resolve, standIn.stepMs));
          progress.sampling_step = step;
        }
        const seed = (body.seed + image) % 2 ** 32;
        seeds.push(seed);
        const width = standIn.mode === "wrong-size" ? body.width / 2 : body.width;
        const parameters = `${body.prompt}\nSteps: ${body.steps}, Sampler: ${body.sampler_name}, CFG scale: ${body.cfg_scale}, Seed: ${seed}, Size: ${body.width}x${body.height}, Model: ${body.override_settings?.sd_model_checkpoint ?? "loaded"}`;
        images.push(makePng(width, body.height, { parameters }).toString("base64"));
      }
      Object.assign(progress, { sampling_step: 0, sampling_steps: 0, job_no: 0, job_count: 0 });
      if (standIn.mode === "malformed") return send(200, { images: "not a list", parameters: {}, info: "{}" });
      const info = { all_seeds: seeds, seed: seeds[0], sampler_name: body.sampler_name, sd_model_name: body.override_settings?.sd_model_checkpoint ?? "loaded", version: "v1.10.1-standin" };
      send(200, { images, parameters: body, info: JSON.stringify(info) });
    })().catch((error: Error) => send(500, { detail: error.message }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  standIn.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  standIn.close = async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return standIn;
}
