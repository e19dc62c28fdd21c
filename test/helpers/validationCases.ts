/**
 * Every argument rule, as a table both tiers run: in-process (test/fast/tools.test.ts, milliseconds) and through
 * the built server over stdio (test/validation.test.ts). The models.yaml behind them names tiny_sd15 (SD 1.5),
 * tiny_sdxl (SDXL with a refiner) and missing_model (a folder that does not exist).
 */
const valid = { prompt: "a cat", model: "tiny_sd15" };

export const GENERATE_CASES: Array<[string, Record<string, unknown>, RegExp[]]> = [
  ["a missing prompt", { model: "tiny_sd15" }, [/prompt is required/, /2000/]],
  ["a blank prompt", { ...valid, prompt: "   " }, [/prompt must not be blank/]],
  ["a prompt over 2000 characters", { ...valid, prompt: "x".repeat(2001) }, [/prompt must be at most 2000 characters \(got 2001\)/]],
  ["a width that is not a multiple of 8", { ...valid, width: 1001 }, [/width must be a multiple of 8 between 256 and 2048 \(got 1001\)/]],
  ["a width below 256", { ...valid, width: 128 }, [/width must be a multiple of 8 between 256 and 2048 \(got 128\)/]],
  ["a height above 2048", { ...valid, height: 4096 }, [/height must be a multiple of 8 between 256 and 2048 \(got 4096\)/]],
  ["zero steps", { ...valid, steps: 0 }, [/steps must be an integer between 1 and 150 \(got 0\)/]],
  ["too many steps", { ...valid, steps: 151 }, [/steps must be an integer between 1 and 150 \(got 151\)/]],
  ["fractional steps", { ...valid, steps: 2.5 }, [/steps must be an integer between 1 and 150 \(got 2.5\)/]],
  ["a negative cfg_scale", { ...valid, cfg_scale: -1 }, [/cfg_scale must be a number between 0 and 30 \(got -1\)/]],
  ["a cfg_scale over 30", { ...valid, cfg_scale: 31 }, [/cfg_scale must be a number between 0 and 30 \(got 31\)/]],
  ["a negative seed", { ...valid, seed: -1 }, [/seed must be an integer between 0 and 4294967295 \(got -1\)/]],
  ["a seed of 2^32", { ...valid, seed: 2 ** 32 }, [/seed must be an integer between 0 and 4294967295 \(got 4294967296\)/]],
  ["a width given as a string", { ...valid, width: "512" }, [/width must be a multiple of 8 between 256 and 2048 \(got "512"\)/]],
  ["an unknown scheduler", { ...valid, scheduler: "karras" }, [/scheduler must be one of euler, euler_a, dpmpp_2m/, /got "karras"/]],
  ["an unknown argument", { ...valid, num_steps: 20 }, [/unknown argument\(s\) num_steps/, /accepts prompt, negative_prompt, model, width/]],
  ["a model not in models.yaml", { ...valid, model: "sdxl" }, [/unknown_model: model 'sdxl' is not in models.yaml \(known: tiny_sd15, tiny_sdxl, missing_model\b/]],
  ["a model whose folder is missing", { ...valid, model: "missing_model" }, [/model_missing: model 'missing_model' is in models.yaml but folder .* does not exist/]],
  ["a refiner on an SD 1.5 model", { ...valid, refiner: true }, [/refiner applies to SDXL models only; model 'tiny_sd15' is sd15/]],
];

export const OTHER_TOOL_CASES: Array<[string, string, Record<string, unknown>, RegExp]> = [
  ["job_status", "an unknown job id", { jobId: "nope" }, /not_found: no job with id 'nope'/],
  ["job_status", "wait_seconds over 50", { jobId: "nope", wait_seconds: 51 }, /wait_seconds must be an integer between 0 and 50 \(got 51\)/],
  ["list_latest_images", "a limit of 0", { limit: 0 }, /limit must be an integer between 1 and 200 \(got 0\)/],
  ["list_latest_images", "a limit over 200", { limit: 201 }, /limit must be an integer between 1 and 200 \(got 201\)/],
  ["list_latest_images", "a forged cursor", { cursor: "not-a-cursor" }, /cursor is not one list_latest_images returned/],
  ["select_image", "neither key nor index", {}, /give exactly one of key or index/],
  ["select_image", "both key and index", { key: "images/a.png", index: 1 }, /give exactly one of key or index/],
  ["select_image", "a key outside the prefix", { key: "secrets/passwords.png" }, /key must be an image key under 'images\/'/],
  ["select_image", "a key that climbs out of the prefix", { key: "images/../secrets.png" }, /key must be an image key under 'images\/'/],
  ["select_image", "an unknown key", { key: "images/20260101_000000_deadbeef.png" }, /not_found: no image with key/],
  ["select_image", "an index past the end", { index: 5 }, /not_found: there is no image #5/],
  ["cancel_job", "an unknown job id", { jobId: "nope" }, /not_found: no job with id 'nope'/],
];

/**
 * Keys every door that takes one (select_image, REST select, the signed /files route) must refuse before the index
 * or storage sees them: climbing out, other prefixes, encodings a decoder might undo, aliases, lookalikes, junk.
 */
export const HOSTILE_KEYS: Array<[string, string]> = [
  ["a '..' part", "images/../secret.png"],
  ["'..' parts deeper in", "images/a/../../x.png"],
  ["an absolute path under the prefix", "/images/x.png"],
  ["an absolute path elsewhere", "/etc/passwd"],
  ["a climb before the prefix", "../images/x.png"],
  ["another prefix", "secrets/x.png"],
  ["slashes and dots URL-encoded", "images%2F..%2Fx.png"],
  ["a '..' with an encoded slash", "images/..%2Fx.png"],
  ["encoded dots", "images/%2e%2e/x.png"],
  ["backslashes", "images\\..\\x.png"],
  ["a '.' part (an alias on a local folder)", "images/./x.png"],
  ["an empty part", "images//x.png"],
  ["a NUL byte", "images/x.png\0.png"],
  ["a newline", "images/x\n.png"],
  ["one-dot leaders for dots (U+2024)", "images/\u2024\u2024/x.png"],
  ["fullwidth dots (U+FF0E)", "images/\uff0e\uff0e/x.png"],
  ["a trailing slash", "images/x.png/"],
  ["another extension after .PNG", "images/x.PNG.exe"],
  ["an empty string", ""],
  ["a 1 MB key", `images/${"a".repeat(1_000_000 - 11)}.png`],
];

/** What every refusal of a hostile key says: the field, and what a key may be. */
export const HOSTILE_KEY_REFUSAL = /key must be an image key under 'images\/' ending in \.png.*letters, digits.*no '\.' or '\.\.' parts, at most 1024 characters/;
