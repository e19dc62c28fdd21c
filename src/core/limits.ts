/** The largest message any door takes: an HTTP body (MCP or REST) and a stdio line alike. */
export const MAX_MESSAGE_BYTES = 1024 * 1024;
