"""The runner wire format, declared once on this side (src/engines/runnerProtocol.ts is the other side).

One JSON object per line. The server sends requests on stdin; the runner answers on stdout.
test/fixtures/runner-protocol.json holds one example of every message and both sides' tests parse it.
"""


import json
import os
import sys
import threading
from typing import Literal, NotRequired, TypedDict


class ModelSpec(TypedDict):
    name: str
    path: str
    refinerPath: NotRequired[str | None]
    # for a single-file checkpoint: a diffusers folder whose configs and tokenizers to use instead of the shipped ones
    configPath: NotRequired[str | None]
    # for a transformer-only (or UNet-only) single file: the diffusers folder that supplies the rest of the pipeline
    basePath: NotRequired[str | None]


class RefinerSpec(TypedDict):
    # steps the refiner runs, whichever mode
    steps: int
    cfgScale: float
    # fraction of the noise schedule the base model handles before the refiner takes over (ensemble)
    switchAt: float
    # "ensemble": the base hands its latents over at switchAt (the default); "polish": the base finishes and the
    # refiner runs a short image-to-image pass over the decoded image at `strength`, as the original service did
    mode: NotRequired[Literal["ensemble", "polish"]]
    strength: NotRequired[float]


class InitImageSpec(TypedDict):
    # a PNG or JPEG the server has put on local disk for this job
    path: str
    # 0..1: how much of the noise schedule is run over it (1 repaints everything)
    strength: float


class ControlSpec(TypedDict):
    # the ControlNet's diffusers folder, the control image staged by the server, and what kind of map it is
    path: str
    imagePath: str
    type: str
    # how hard it steers (0-2), and the share of the schedule it steers in (0 <= start < end <= 1)
    strength: float
    start: float
    end: float
    # canny and lineart: True makes the edges from the image here; False takes it as a ready map
    preprocess: bool


class UpscaleSpec(TypedDict):
    # "esrgan": the model's path is an RRDBNet file run tile by tile (hires upscales are plain image-to-image jobs)
    mode: str
    scale: int


class EditSpec(TypedDict):
    # the image to edit, then any reference images, as the server staged them; the prompt is the instruction
    images: list[str]


class MaskSpec(TypedDict):
    # the mask image as the server staged it (PNG, JPEG or WebP; white repaints), and its edge's softening in pixels
    path: str
    blur: int


class OutpaintSpec(TypedDict):
    # pixels the canvas reaches past the start image on each side; the server's rounding up to the family's size
    # multiple is already in right and bottom, so source width + left + right == width (and so for height)
    left: int
    right: int
    top: int
    bottom: int


class LoraSpec(TypedDict):
    name: str
    path: str
    weight: float


class GenerateRequest(TypedDict):
    type: Literal["generate"]
    jobId: str
    model: ModelSpec
    prompt: str
    negativePrompt: str | None
    width: int
    height: int
    steps: int
    cfgScale: float
    seed: int
    scheduler: str | None
    refiner: RefinerSpec | None
    # the first image's PNG; a batch writes one PNG per entry of outputPaths, seeds seed, seed+1, ... (mod 2**32)
    outputPath: str
    outputPaths: NotRequired[list[str]]
    # a small WebP beside each PNG (same order as outputPaths); none asked, none written
    previewPaths: NotRequired[list[str]]
    initImage: NotRequired[InitImageSpec | None]
    # Outpaint: extend initImage (taken at its own size) to the width x height canvas with the family's inpaint
    # pipeline; the source's pixels are kept exactly. initImage.strength is the inpaint strength.
    outpaint: NotRequired[OutpaintSpec | None]
    # Inpaint: repaint initImage where the mask (any size, fitted like initImage) is white, with the family's
    # inpaint pipeline; the start image's pixels are kept wherever it is black. blur softens its edge, in pixels.
    mask: NotRequired[MaskSpec | None]
    # ControlNet: up to two maps, each with the ControlNet (from models.yaml's controlnets folder) that reads it
    control: NotRequired[list[ControlSpec] | None]
    # An instruction edit with the family's edit pipeline (FLUX.1 Kontext, FLUX.2 klein's references)
    edit: NotRequired[EditSpec | None]
    # upscale_image in ESRGAN mode: the model is an upscaler file, initImage the source, width x height its scale
    upscale: NotRequired[UpscaleSpec | None]
    loras: NotRequired[list[LoraSpec]]


class CancelRequest(TypedDict):
    type: Literal["cancel"]
    jobId: str


class ShutdownRequest(TypedDict):
    type: Literal["shutdown"]


RunnerRequest = GenerateRequest | CancelRequest | ShutdownRequest


class Versions(TypedDict):
    python: str
    torch: str
    diffusers: str
    transformers: str


class ReadyEvent(TypedDict):
    type: Literal["ready"]
    device: str
    dtype: str
    versions: Versions
    pid: int


class ProgressEvent(TypedDict):
    type: Literal["progress"]
    jobId: str
    step: int
    totalSteps: int


class Timings(TypedDict):
    loadSeconds: float
    inferenceSeconds: float
    saveSeconds: float


class PreviewInfo(TypedDict):
    path: str
    mimeType: str
    width: int
    height: int
    bytes: int


class PromptNotes(TypedDict, total=False):
    tokensDropped: int
    emphasisStripped: bool


class DoneEvent(TypedDict):
    type: Literal["done"]
    jobId: str
    outputPath: str
    width: int
    height: int
    seed: int
    family: str
    scheduler: str
    device: str
    dtype: str
    # What the pipelines ran with: attentionSlicing, channelsLast, compile, vaeUpcast.
    options: dict[str, bool]
    modelLoads: int
    stepsRun: int
    # The prompt's CLIP tokens (without start and end tokens): past 75 it was encoded in several chunks. For a T5
    # or LLM encoder, its tokens as that tokenizer counts them.
    promptTokens: int
    # What the encoder did not see: tokensDropped past the family's limit, emphasisStripped when (word:1.3) syntax
    # was taken out for an encoder that cannot weight tokens. Absent when neither happened.
    promptNotes: NotRequired[PromptNotes]
    # one per image: the preview written, or None where none was asked for or it could not be written
    previews: list[PreviewInfo | None]
    timings: Timings


# Codes the server maps to job errors. "cancelled" is not a failure: the server marks the job cancelled.
ErrorCode = Literal["bad_request", "model_not_found", "model_load_failed", "out_of_memory", "disk_full", "generation_failed", "cancelled"]


class ErrorEvent(TypedDict):
    type: Literal["error"]
    jobId: str | None
    code: ErrorCode
    message: str


RunnerEvent = ReadyEvent | ProgressEvent | DoneEvent | ErrorEvent

REQUEST_TYPES = ("generate", "cancel", "shutdown")
# In declaration order (the required-keys set has none), so an error lists what is missing as the type reads.
GENERATE_FIELDS = tuple(key for key in GenerateRequest.__annotations__ if key in GenerateRequest.__required_keys__ and key != "type")


class ProtocolError(ValueError):
    """A request line the runner cannot act on; carries the line's jobId, if it had one, to answer under."""

    def __init__(self, message: str, job_id: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class JobFailed(Exception):
    """A job that ends in an error event with this code (out of memory, cancelled, a bad model...)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code


def parse_request(line: str) -> RunnerRequest:
    try:
        message = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"request is not JSON: {exc}") from exc
    # Kept for the error: a generate we cannot run is still answered under its id, so the server's job ends.
    job_id = message.get("jobId") if isinstance(message, dict) else None
    job_id = job_id if isinstance(job_id, str) else None
    if not isinstance(message, dict) or message.get("type") not in REQUEST_TYPES:
        raise ProtocolError(f"request type must be one of {', '.join(REQUEST_TYPES)}", job_id)
    if message["type"] in ("generate", "cancel") and job_id is None:
        raise ProtocolError(f"{message['type']} request needs a string jobId")
    if message["type"] == "generate":
        missing = [key for key in GENERATE_FIELDS if key not in message]
        if missing:
            raise ProtocolError(f"generate request {job_id} lacks {', '.join(missing)}", job_id)
    # The checks above are what the union promises: the type tag, a string jobId, every generate field.
    return message


class EventWriter:
    """Writes events to the protocol channel. Holds the only handle to the real stdout."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, event: RunnerEvent) -> None:
        line = json.dumps(event, separators=(",", ":")) + "\n"
        with self._lock:
            self._stream.write(line)
            self._stream.flush()


def claim_stdout() -> EventWriter:
    """Keep fd 1 for protocol and point everything else that prints (libraries, stray print) at stderr."""
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return EventWriter(os.fdopen(protocol_fd, "w", buffering=1, encoding="utf-8"))
