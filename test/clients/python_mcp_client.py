"""A client nobody here wrote: the Python `mcp` 2.x SDK, driving the built server.

    python test/clients/python_mcp_client.py MODE TARGET
MODE is "auto" (the SDK's default: probe server/discover, the 2026-07-28 protocol) or "legacy" (a 2025-era
initialize handshake). TARGET is the server's MCP URL (http://…/mcp) or the built CLI (dist/cli.js), started
over stdio with this process's environment. Prints one JSON object: the negotiated protocol version, the tool
names, a refused call's text, a generated job's final status, the newest image and what its downloadUrl served.
"""

import asyncio
import json
import os
import sys
import urllib.request

from mcp import Client, StdioServerParameters


async def main(mode: str, target: str) -> None:
    server = target if target.startswith("http") else StdioServerParameters(command=os.environ.get("NODE", "node"), args=[target, "serve"], env=dict(os.environ))
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
        newest = (await client.call_tool("list_latest_images", {"limit": 1})).structured_content["images"][0]
        selected = (await client.call_tool("select_image", {"key": newest["key"]})).structured_content
        download = selected["imageRef"]["downloadUrl"]
        fetched = urllib.request.urlopen(download).read() if download.startswith("http") else b""
        print(
            json.dumps(
                {
                    "protocolVersion": client.protocol_version,
                    "tools": sorted(tool.name for tool in tools.tools),
                    "refused": {"isError": refused.is_error, "text": refused.content[0].text},
                    "job": status,
                    "newest": newest,
                    "imageRef": selected["imageRef"],
                    "downloadedPng": fetched[:8] == b"\x89PNG\r\n\x1a\n",
                }
            )
        )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
