// Every environment variable is read here and nowhere else (the import-graph test holds the rest of src/ to it),
// so the whole of what a person can set is in one file, past 250 lines.
import { isIP } from "node:net";
import { homedir, hostname } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { KittyError } from "./core/errors.js";
import { ENGINE_NAMES, type EngineName } from "./core/generation.js";
import { loadModelsYaml, type ModelCatalog } from "./models/catalog.js";

/** The one place env is read. Names from the original images-service are kept as they were. */

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");


const emptyToUndefined = (value: unknown) => (typeof value === "string" && value.trim() === "" ? undefined : value);
const optionalString = z.preprocess(emptyToUndefined, z.string().optional());

const envSchema = z.object({
  IMAGE_ENGINE: z.preprocess(emptyToUndefined, z.enum(ENGINE_NAMES).default("diffusers")),
  S3_ENDPOINT_URL: z.preprocess(emptyToUndefined, z.url().optional()),
  S3_PUBLIC_ENDPOINT_URL: z.preprocess(emptyToUndefined, z.url().optional()),
  S3_BUCKET: z.preprocess(emptyToUndefined, z.string().default("kitty-artifacts")),
  S3_REGION: z.preprocess(emptyToUndefined, z.string().default("us-east-1")),
  S3_ACCESS_KEY: optionalString,
  S3_SECRET_KEY: optionalString,
  S3_PREFIX: z.preprocess(emptyToUndefined, z.string().default("images/")),
  MODELS_YAML: optionalString,
  A1111_BASE_URL: z.preprocess(emptyToUndefined, z.url().default("http://127.0.0.1:7860")),
  A1111_API_AUTH: optionalString,
  A1111_TIMEOUT_SECONDS: z.preprocess(emptyToUndefined, z.coerce.number().min(1).max(86400).default(120)),
  COMFYUI_BASE_URL: z.preprocess(emptyToUndefined, z.url().default("http://127.0.0.1:8188")),
  COMFYUI_TIMEOUT_SECONDS: z.preprocess(emptyToUndefined, z.coerce.number().min(1).max(86400).default(120)),
  INVOKE_HOST: z.preprocess(emptyToUndefined, z.string().default("127.0.0.1")),
  INVOKE_PORT: z.preprocess(emptyToUndefined, z.coerce.number().int().min(1).max(65535).default(9091)),
  INVOKEAI_TIMEOUT_SECONDS: z.preprocess(emptyToUndefined, z.coerce.number().min(1).max(86400).default(120)),
  HF_HOME: optionalString,
  HF_HUB_CACHE: optionalString,
  PYTORCH_MPS_HIGH_WATERMARK_RATIO: optionalString,
  KITTY_IMAGES_HOME: optionalString,
  KITTY_IMAGES_STORAGE: z.preprocess(emptyToUndefined, z.enum(["auto", "s3", "local"]).default("auto")),
  KITTY_IMAGES_PRESIGN_TTL_SECONDS: z.preprocess(emptyToUndefined, z.coerce.number().int().min(1).max(604800).default(86400)),
  KITTY_IMAGES_TASK_TTL_HOURS: z.preprocess(emptyToUndefined, z.coerce.number().min(0.05).max(168).default(24)),
  KITTY_IMAGES_PROMPT_TOKEN_CAP: z.preprocess(emptyToUndefined, z.coerce.number().int().min(75).max(20000).default(1000)),
  KITTY_IMAGES_DEFAULT_MODEL: optionalString,
  KITTY_IMAGES_PYTHON: optionalString,
  KITTY_IMAGES_CLIP_VOCAB: optionalString,
  KITTY_IMAGES_DEVICE: z.preprocess(emptyToUndefined, z.enum(["auto", "cuda", "mps", "cpu"]).default("auto")),
  KITTY_IMAGES_WARM_MODELS: z.preprocess(emptyToUndefined, z.coerce.number().int().min(1).max(8).default(1)),
  KITTY_IMAGES_ATTENTION_SLICING: z.preprocess(emptyToUndefined, z.enum(["auto", "on", "off"]).default("auto")),
  KITTY_IMAGES_COMPILE: z.preprocess(emptyToUndefined, z.enum(["0", "1"]).default("0")),
  KITTY_IMAGES_STEP_CACHE: z.preprocess(emptyToUndefined, z.enum(["off", "first_block", "taylorseer"]).default("off")),
  KITTY_IMAGES_JOB_TIMEOUT_SECONDS: z.preprocess(emptyToUndefined, z.coerce.number().min(1).max(86400).default(600)),
  KITTY_IMAGES_STEP_TIMEOUT_SECONDS: z.preprocess(emptyToUndefined, z.coerce.number().min(0).max(86400).optional()),
  KITTY_IMAGES_DATABASE_URL: z.preprocess(emptyToUndefined, z.url({ protocol: /^postgres(ql)?$/, error: "must be a postgres:// URL, e.g. postgres://kitty@db.local:5432/kitty" }).optional()),
  KITTY_IMAGES_WORKER_ID: optionalString,
  KITTY_IMAGES_RUNNER_RETRY_SECONDS: z.preprocess(emptyToUndefined, z.coerce.number().min(1).max(86400).default(60)),
  KITTY_IMAGES_LOG_LEVEL: z.preprocess(emptyToUndefined, z.enum(["trace", "debug", "info", "warn", "error", "silent"]).optional()),
  // Trimmed before the length check: "               x" is the one-character token x.
  KITTY_IMAGES_TOKEN: z.preprocess((value) => emptyToUndefined(typeof value === "string" ? value.trim() : value), z.string().min(16, { error: "must be at least 16 characters (try: openssl rand -hex 24)" }).optional()),
  KITTY_IMAGES_TRUSTED_NETWORKS: z.preprocess(emptyToUndefined, z.string().optional()),
  KITTY_IMAGES_PUBLIC_URL: z.preprocess(emptyToUndefined, z.url({ protocol: /^https?$/, error: "must be an http(s) URL, e.g. http://studio.local:8089" }).optional()),
  KITTY_IMAGES_ALLOWED_HOSTS: z.preprocess(emptyToUndefined, z.string().optional()),
  KITTY_IMAGES_INPUT_DIRS: z.preprocess(emptyToUndefined, z.string().optional()),
  KITTY_IMAGES_FETCH_HOSTS: z.preprocess(emptyToUndefined, z.string().optional()),
});

/**
 * The variables this project reads (and only those): what `kitty-images service install` carries from the
 * environment it is installed from into the service's environment file, so nothing else of the shell goes along.
 */
export const PROJECT_ENV_NAMES: readonly string[] = Object.keys(envSchema.shape).sort();

/** The environment as a service should get it: this project's variables that are set, nothing else. */
export function projectEnvironment(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const picked: Record<string, string> = {};
  for (const name of PROJECT_ENV_NAMES) if (env[name] !== undefined && env[name] !== "") picked[name] = env[name]!;
  return picked;
}

/** `10.0.0.0/8`, `fd00::/8` or a single address: what KITTY_IMAGES_TRUSTED_NETWORKS lists. */
export interface Network {
  address: string;
  prefix: number;
  family: "ipv4" | "ipv6";
}

function parseNetworks(raw: string | undefined): Network[] {
  if (!raw) return [];
  return raw.split(",").map((item) => item.trim()).filter(Boolean).map((item) => {
    const [address = "", bits] = item.split("/");
    const family = isIP(address) === 4 ? "ipv4" : isIP(address) === 6 ? "ipv6" : null;
    const max = family === "ipv4" ? 32 : 128;
    const prefix = bits === undefined ? max : Number(bits);
    if (!family || !Number.isInteger(prefix) || prefix < 0 || prefix > max) {
      throw new KittyError("config_invalid", `KITTY_IMAGES_TRUSTED_NETWORKS: '${item}' is not an address or CIDR network (e.g. 172.16.0.0/12, fd00::/8)`);
    }
    return { address, prefix, family };
  });
}

const csv = (raw: string | undefined) => (raw ? raw.split(",").map((item) => item.trim().toLowerCase()).filter(Boolean) : []);

export interface S3Settings {
  endpoint: string | undefined;
  /** The address other machines use for the same S3 (presigned URLs are signed for it); defaults to `endpoint`. */
  publicEndpoint: string | undefined;
  bucket: string;
  region: string;
  accessKeyId: string | undefined;
  secretAccessKey: string | undefined;
}

export interface Config {
  /** The engine that runs models whose entry names none (IMAGE_ENGINE). */
  engine: EngineName;
  /** AUTOMATIC1111 (or a fork with its API) for models with `engine: a1111`, or all of them under IMAGE_ENGINE=a1111. */
  a1111: { baseUrl: string; auth: string | null; jobTimeoutMs: number };
  /** ComfyUI for models with `engine: comfyui`, or all of them under IMAGE_ENGINE=comfyui. */
  comfyui: { baseUrl: string; jobTimeoutMs: number };
  /** InvokeAI (INVOKE_HOST:INVOKE_PORT, the original service's names) for models with `engine: invokeai`. */
  invokeai: { baseUrl: string; jobTimeoutMs: number };
  home: string;
  databasePath: string;
  stagingDir: string;
  storage: { kind: "s3"; s3: S3Settings } | { kind: "local" };
  /** Every stored key starts with this; select_image refuses keys outside it. */
  keyPrefix: string;
  /** Images users bring, beside the generations (`images/` → `uploads/`), indexed apart from them. */
  uploadPrefix: string;
  /** Where images may come from besides this server's own (images/imageInputs.ts). */
  inputs: {
    /** Absolute local paths are read over stdio only, and only under these folders (KITTY_IMAGES_INPUT_DIRS; default the home folder). */
    dirs: string[];
    /** http(s) URLs are fetched only from these hosts (KITTY_IMAGES_FETCH_HOSTS; default none). */
    fetchHosts: string[];
  };
  presignTtlSeconds: number;
  /** How long an MCP task is kept when its client asks for no ttl (KITTY_IMAGES_TASK_TTL_HOURS); its job and images stay after. */
  taskTtlMs: number;
  /** The most CLIP tokens a prompt may be for a chunked (CLIP) family (KITTY_IMAGES_PROMPT_TOKEN_CAP). */
  promptTokenCap: number;
  models: ModelCatalog;
  /** models.yaml read afresh, as at start: what a live reload checks and adopts. Throws a KittyError naming the problem. */
  readModels(): ModelCatalog;
  runner: {
    python: string;
    packageDir: string;
    env: Record<string, string>;
    /** CLIP's BPE vocabulary, which single-file checkpoints need (scripts/setup-python.sh fetches it). */
    clipVocab: string;
    /** A job's deadline before its runner counts as hung; msPerMegapixelStep null: the device's own allowance. */
    jobDeadline: { baseMs: number; msPerMegapixelStep: number | null };
    /** How long a runner that keeps failing to start rests between tries. */
    brokenRetryMs: number;
  };
  logLevel: string;
  /** Postgres for several hosts (scale-out); null: the embedded SQLite file. */
  databaseUrl: string | null;
  /** This host's name in the worker registry (`kitty-images worker`). */
  workerId: string;
  /** The HTTP door (`serve --http`). */
  http: {
    /** Required on every request when set (Authorization: Bearer, or X-API-Key), except from trusted networks. */
    token: string | null;
    trustedNetworks: Network[];
    /** How other machines reach this server; file download links start with it. */
    publicUrl: string | null;
    /** Host names accepted in Host and Origin besides loopback, the bind address and the public URL's host. */
    extraAllowedHosts: string[];
  };
}

/** `defaultLogLevel`: what a command uses when KITTY_IMAGES_LOG_LEVEL is unset (a person at a prompt wants warn). */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: { modelsYaml?: string; defaultLogLevel?: string } = {}): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const details = parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`).join("; ");
    throw new KittyError("config_invalid", `invalid environment: ${details}`);
  }
  const e = parsed.data;
  const home = path.resolve(e.KITTY_IMAGES_HOME ?? path.join(homedir(), ".kitty-images"));
  const modelsYaml = path.resolve(overrides.modelsYaml ?? e.MODELS_YAML ?? path.join(PROJECT_ROOT, "models.yaml"));
  const useS3 = e.KITTY_IMAGES_STORAGE === "s3" || (e.KITTY_IMAGES_STORAGE === "auto" && e.S3_ENDPOINT_URL !== undefined);
  const keyPrefix = e.S3_PREFIX.replace(/^\/+/, "").replace(/\/*$/, "/");

  // Read again on every models.yaml edit (models/catalogWatch.ts), with the same settings.
  const hubCache = e.HF_HUB_CACHE ?? path.join(e.HF_HOME ?? path.join(homedir(), ".cache", "huggingface"), "hub");
  const readModels = () => loadModelsYaml(modelsYaml, e.KITTY_IMAGES_DEFAULT_MODEL, hubCache, e.IMAGE_ENGINE);
  const clipVocab = path.resolve(e.KITTY_IMAGES_CLIP_VOCAB ?? path.join(PROJECT_ROOT, ".cache", "clip", "bpe_simple_vocab_16e6.txt.gz"));
  // The runner inherits the environment (PATH, locale, torch and HF settings) but not storage secrets it never needs.
  const runnerEnv: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (value !== undefined && !/^(S3_|AWS_|KITTY_IMAGES_TOKEN$)/.test(name)) runnerEnv[name] = value;
  }
  Object.assign(runnerEnv, {
    KITTY_IMAGES_DEVICE: e.KITTY_IMAGES_DEVICE,
    KITTY_IMAGES_WARM_MODELS: String(e.KITTY_IMAGES_WARM_MODELS),
    KITTY_IMAGES_ATTENTION_SLICING: e.KITTY_IMAGES_ATTENTION_SLICING,
    KITTY_IMAGES_COMPILE: e.KITTY_IMAGES_COMPILE,
    KITTY_IMAGES_STEP_CACHE: e.KITTY_IMAGES_STEP_CACHE,
    // Where the runner assembles what single-file checkpoints need (configs + CLIP tokenizers), once.
    KITTY_IMAGES_RUNNER_CACHE: path.join(home, "runner-cache"),
    KITTY_IMAGES_CLIP_VOCAB: clipVocab,
  });

  return {
    engine: e.IMAGE_ENGINE,
    a1111: { baseUrl: e.A1111_BASE_URL.replace(/\/+$/, ""), auth: e.A1111_API_AUTH ?? null, jobTimeoutMs: e.A1111_TIMEOUT_SECONDS * 1000 },
    comfyui: { baseUrl: e.COMFYUI_BASE_URL.replace(/\/+$/, ""), jobTimeoutMs: e.COMFYUI_TIMEOUT_SECONDS * 1000 },
    invokeai: { baseUrl: `http://${e.INVOKE_HOST.includes(":") ? `[${e.INVOKE_HOST}]` : e.INVOKE_HOST}:${e.INVOKE_PORT}`, jobTimeoutMs: e.INVOKEAI_TIMEOUT_SECONDS * 1000 },
    home,
    databasePath: path.join(home, "kitty-images.sqlite"),
    stagingDir: path.join(home, "staging"),
    storage: useS3
      ? {
          kind: "s3",
          s3: {
            endpoint: e.S3_ENDPOINT_URL,
            publicEndpoint: e.S3_PUBLIC_ENDPOINT_URL,
            bucket: e.S3_BUCKET,
            region: e.S3_REGION,
            accessKeyId: e.S3_ACCESS_KEY,
            secretAccessKey: e.S3_SECRET_KEY,
          },
        }
      : { kind: "local" },
    keyPrefix,
    uploadPrefix: keyPrefix.replace(/[^/]*\/$/, "") + "uploads/",
    inputs: {
      dirs: (e.KITTY_IMAGES_INPUT_DIRS ? e.KITTY_IMAGES_INPUT_DIRS.split(path.delimiter).map((dir) => dir.trim()).filter(Boolean) : [homedir()]).map((dir) => path.resolve(dir)),
      fetchHosts: csv(e.KITTY_IMAGES_FETCH_HOSTS).map((host) => host.toLowerCase()),
    },
    presignTtlSeconds: e.KITTY_IMAGES_PRESIGN_TTL_SECONDS,
    taskTtlMs: Math.round(e.KITTY_IMAGES_TASK_TTL_HOURS * 3600_000),
    promptTokenCap: e.KITTY_IMAGES_PROMPT_TOKEN_CAP,
    models: readModels(),
    readModels,
    runner: {
      python: e.KITTY_IMAGES_PYTHON ?? path.join(PROJECT_ROOT, ".cache", "venv", "bin", "python"),
      packageDir: path.join(PROJECT_ROOT, "python"),
      env: runnerEnv,
      clipVocab: clipVocab,
      jobDeadline: {
        baseMs: e.KITTY_IMAGES_JOB_TIMEOUT_SECONDS * 1000,
        msPerMegapixelStep: e.KITTY_IMAGES_STEP_TIMEOUT_SECONDS === undefined ? null : e.KITTY_IMAGES_STEP_TIMEOUT_SECONDS * 1000,
      },
      brokenRetryMs: e.KITTY_IMAGES_RUNNER_RETRY_SECONDS * 1000,
    },
    logLevel: e.KITTY_IMAGES_LOG_LEVEL ?? overrides.defaultLogLevel ?? "info",
    databaseUrl: e.KITTY_IMAGES_DATABASE_URL ?? null,
    workerId: e.KITTY_IMAGES_WORKER_ID ?? hostname(),
    http: {
      token: e.KITTY_IMAGES_TOKEN ?? null,
      trustedNetworks: parseNetworks(e.KITTY_IMAGES_TRUSTED_NETWORKS),
      publicUrl: e.KITTY_IMAGES_PUBLIC_URL?.replace(/\/+$/, "") ?? null,
      extraAllowedHosts: csv(e.KITTY_IMAGES_ALLOWED_HOSTS),
    },
  };
}

/**
 * What the CLI needs to talk to a running server: KITTY_IMAGES_URL (its base address or its /mcp endpoint) and the
 * token. Apart from loadConfig, since a client needs neither the server's models.yaml nor its storage settings.
 */
export function loadClientConfig(env: NodeJS.ProcessEnv = process.env): { mcpEndpoint: URL | null; token: string | null } {
  const raw = env.KITTY_IMAGES_URL?.trim();
  const token = env.KITTY_IMAGES_TOKEN?.trim() || null;
  if (!raw) return { mcpEndpoint: null, token };
  let url: URL;
  try {
    url = new URL(raw);
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error("not http(s)");
  } catch {
    throw new KittyError("config_invalid", `KITTY_IMAGES_URL must be the server's address, e.g. http://127.0.0.1:8089 (got '${raw}')`);
  }
  // Accept the server's base address (as `serve --http` prints it) or its /mcp endpoint.
  url.pathname = url.pathname.replace(/\/+$/, "");
  const mcpEndpoint = url.pathname.endsWith("/mcp") ? url : new URL("mcp", `${url.href.replace(/\/+$/, "")}/`);
  return { mcpEndpoint, token };
}
