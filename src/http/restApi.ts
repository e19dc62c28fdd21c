import type { IncomingMessage, ServerResponse } from "node:http";
import type { App } from "../server.js";

/** The images-service REST API; answers false when the path is not one of its routes. */
export async function handleRest(_app: App, _request: IncomingMessage, _response: ServerResponse, _url: URL): Promise<boolean> {
  return false;
}
