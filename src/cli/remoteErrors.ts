import { SdkHttpError } from "@modelcontextprotocol/client";
import { messageOf } from "../core/errors.js";

/** The "why" out of a refusal's JSON body ({error, detail}, as the HTTP door answers), or the body itself. */
function detailOf(body: string | undefined): string {
  if (!body) return "";
  try {
    const parsed = JSON.parse(body) as { detail?: unknown; error?: unknown };
    return String(parsed.detail ?? parsed.error ?? body);
  } catch {
    return body.slice(0, 300);
  }
}

/** Turns what the HTTP transport throws into a message that says what to fix (the token, the address, the server). */
export function describeRemoteFailure(error: unknown, endpoint: URL, tokenSet: boolean): Error {
  if (error instanceof SdkHttpError) {
    const detail = detailOf(typeof error.data.text === "string" ? error.data.text : undefined);
    if (error.status === 401) {
      return new Error(
        tokenSet
          ? `the server at ${endpoint} refused KITTY_IMAGES_TOKEN (${detail}); set it to the token that server was started with`
          : `the server at ${endpoint} needs a token (${detail}); set KITTY_IMAGES_TOKEN to the token it was started with`,
      );
    }
    if (error.status === 403) return new Error(`the server at ${endpoint} refused this request (${detail})`);
    return new Error(`the server at ${endpoint} answered ${error.status}${error.statusText ? ` ${error.statusText}` : ""}${detail ? `: ${detail}` : ""}; is KITTY_IMAGES_URL a kitty-images server?`);
  }
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  if (error instanceof TypeError && cause) {
    return new Error(
      `cannot reach kitty-images at ${endpoint} (${cause.code ?? cause.message}): start it with 'kitty-images serve --http', ` +
        "check KITTY_IMAGES_URL, or unset KITTY_IMAGES_URL to work on this machine's data dir",
    );
  }
  return error instanceof Error ? error : new Error(messageOf(error));
}
