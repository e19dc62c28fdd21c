"""A client nobody here wrote: the Python `mcp` 2.x SDK, driving the built server over stdio.

    python test/clients/python_mcp_client.py MODE SERVER_ENTRY
MODE is "auto" (the SDK's default: probe server/discover, the 2026-07-28 protocol) or "legacy" (a 2025-era
initialize handshake). The server's environment comes from this process's. Prints one JSON object: the
negotiated protocol version, the tool names, a refused call's text and a generated job's final status.
"""

import asyncio
import json
import os
import sys

from mcp import Client, StdioServerParameters


async def main(mode: str, entry: str) -> None:
    server = StdioServerParameters(command=os.environ.get("NODE", "node"), args=[entry, "serve"], env=dict(os.environ))
    async with Client(server, mode=mode) as client:
        tools = await client.list_tools()
        refused = await client.call_tool("generate_image", {"prompt": "x", "model": "tiny_sd15", "width": 1001})
        queued = await client.call_tool("generate_image", {"prompt": "a python client", "model": "tiny_sd15", "width": 256, "height": 256, "steps": 2})
        job_id = queued.structured_content["jobId"]
        status = queued.structured_content
        for _ in range(12):
            status = (await client.call_tool("job_status", {"jobId": job_id, "wait_seconds": 10})).structured_content
            if status["status"] in ("done", "failed", "cancelled"):
                break
        print(
            json.dumps(
                {
                    "protocolVersion": client.protocol_version,
                    "tools": sorted(tool.name for tool in tools.tools),
                    "refused": {"isError": refused.is_error, "text": refused.content[0].text},
                    "job": status,
                }
            )
        )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
