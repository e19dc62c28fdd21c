"""A client nobody here wrote: the Python `mcp` 2.x SDK, with the tasks extension declared through its own
extension interface (a `ClientExtension` whose `ResultClaim` takes `resultType: "task"` and resolves it by polling
`tasks/get`), driving the built server over stdio on the 2026-07-28 protocol.

    python test/clients/python_task_client.py TARGET

TARGET is the built CLI (dist/cli.js). Prints one JSON object: the negotiated version, the task as created, the
statuses seen while polling, the final result's structured content, and the status a cancelled task ended in.
"""

import asyncio
import json
import os
import sys
from typing import Any, Literal

from mcp import Client, StdioServerParameters
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp_types import CallToolResult, Request, RequestParams, Result
from pydantic import ConfigDict

TASKS = "io.modelcontextprotocol/tasks"


class CreateTaskResult(Result):
    model_config = ConfigDict(extra="allow")
    result_type: Literal["task"]
    task_id: str
    status: str


class TaskIdParams(RequestParams):
    task_id: str


class GetTask(Request[TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    name_param = "taskId"


class CancelTask(Request[TaskIdParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    name_param = "taskId"


class TaskAnswer(Result):
    model_config = ConfigDict(extra="allow")


seen: dict[str, Any] = {"statuses": []}
cancel_next = {"on": False}


async def resolve(created: CreateTaskResult, ctx: ClaimContext) -> CallToolResult:
    seen.setdefault("created", created.model_dump(by_alias=True, mode="json", exclude_none=True))
    if cancel_next["on"]:
        await ctx.session.send_request(CancelTask(params=TaskIdParams(task_id=created.task_id)), TaskAnswer)
    while True:
        task = (await ctx.session.send_request(GetTask(params=TaskIdParams(task_id=created.task_id)), TaskAnswer)).model_dump(by_alias=True, mode="json")
        if not cancel_next["on"]:
            seen["statuses"].append(task["status"])
        if task["status"] == "completed":
            return CallToolResult.model_validate(task["result"])
        if task["status"] in ("cancelled", "failed"):
            return CallToolResult(content=[], structured_content={"status": task["status"]}, is_error=True)
        await asyncio.sleep(task.get("pollIntervalMs", 1000) / 1000)


class Tasks(ClientExtension):
    identifier = TASKS

    def claims(self):
        return [ResultClaim(result_type="task", model=CreateTaskResult, resolve=resolve)]


async def main(target: str) -> None:
    server = StdioServerParameters(command=os.environ.get("NODE", "node"), args=[target, "serve"], env=dict(os.environ))
    async with Client(server, extensions=[Tasks()]) as client:
        done = await client.call_tool("generate_image", {"prompt": "a python task", "model": "tiny_sd15", "width": 256, "height": 256, "steps": 8})
        cancel_next["on"] = True
        cancelled = await client.call_tool("generate_image", {"prompt": "cancel me", "model": "tiny_sd15", "width": 256, "height": 256, "steps": 150})
        print(
            json.dumps(
                {
                    "protocolVersion": client.protocol_version,
                    "created": seen.get("created"),
                    "statuses": seen["statuses"],
                    "result": done.structured_content,
                    "cancelled": (cancelled.structured_content or {}).get("status"),
                }
            )
        )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
