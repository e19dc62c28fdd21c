"""The Python side of the shared protocol fixture (test/unit/runnerProtocol.test.ts is the other)."""

import json
import typing

import pytest

from diffusers_runner import protocol
from diffusers_runner.pipelines import PIPELINE_FAMILIES, SCHEDULERS
from tests.conftest import PROJECT_ROOT

FIXTURE = json.loads((PROJECT_ROOT / "test/fixtures/runner-protocol.json").read_text())

EVENT_TYPES = {
    "ready": protocol.ReadyEvent,
    "progress": protocol.ProgressEvent,
    "done": protocol.DoneEvent,
    "error": protocol.ErrorEvent,
}
REQUEST_TYPES = {
    "generate": protocol.GenerateRequest,
    "cancel": protocol.CancelRequest,
    "shutdown": protocol.ShutdownRequest,
}


def _keys(typed_dict) -> set[str]:
    return set(typing.get_type_hints(typed_dict).keys())


@pytest.mark.parametrize("request_message", FIXTURE["requests"], ids=lambda message: message["type"])
def test_every_fixture_request_parses_and_matches_its_declaration(request_message):
    parsed = protocol.parse_request(json.dumps(request_message))
    assert parsed == request_message
    assert set(request_message) == _keys(REQUEST_TYPES[request_message["type"]])


@pytest.mark.parametrize("event", FIXTURE["events"], ids=lambda message: message["type"])
def test_every_fixture_event_has_the_declared_fields(event):
    declared = EVENT_TYPES[event["type"]]
    assert declared.__required_keys__ <= set(event) <= _keys(declared)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_declared_event_field_appears_in_the_fixture(event_type):
    seen = set().union(*(set(event) for event in FIXTURE["events"] if event["type"] == event_type))
    assert seen == _keys(EVENT_TYPES[event_type])


def test_error_codes_in_the_fixture_are_declared():
    declared = set(typing.get_args(protocol.ErrorCode))
    assert {event["code"] for event in FIXTURE["events"] if event["type"] == "error"} <= declared


def test_schedulers_match_the_server_list():
    assert list(SCHEDULERS) == FIXTURE["schedulers"]


def test_pipeline_families_match_the_server_map():
    assert PIPELINE_FAMILIES == FIXTURE["pipelineFamilies"]


@pytest.mark.parametrize(
    "line, message",
    [
        ("not json", "not JSON"),
        ('{"type": "explode"}', "must be one of generate, cancel, shutdown"),
        ('{"type": "cancel"}', "needs a string jobId"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(line, message):
    with pytest.raises(protocol.ProtocolError, match=message):
        protocol.parse_request(line)


def test_a_bad_request_keeps_its_job_id_to_be_answered_under():
    with pytest.raises(protocol.ProtocolError) as refused:
        protocol.parse_request('{"type": "generate", "jobId": "j1", "prompt": "x"}')
    assert refused.value.job_id == "j1"
