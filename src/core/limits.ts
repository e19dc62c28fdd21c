import { LIMITS } from "./generation.js";

/**
 * The largest message any door takes: an HTTP body (MCP or REST) and a stdio line alike. Sized for images brought
 * as data: URLs: base64 makes the 20 MB cap 26.7 MB, and a start image and a mask may both be at it. A message past
 * this is refused by the door; an image past the cap inside a legal message gets the image's own error.
 */
export const MAX_MESSAGE_BYTES = Math.ceil((2 * LIMITS.imageInput.maxBytes * 4) / 3 / (1024 * 1024) + 8) * 1024 * 1024;
