"""The control API conforms to its own OpenAPI document: schemathesis against a real daemon.

A real in-process daemon (its LIVE venue the simulator) serves its loopback TCP listener
with a bearer token; schemathesis reads ``GET /api/openapi.json`` from it and, for every
operation, sends generated requests, schema-valid (positive) and schema-invalid (negative),
checking every answer: no 5xx, a documented status, a documented content type, a body that
matches the documented schema, invalid data refused with a 4xx and valid data never refused
as malformed. The budget is bounded (a few examples per operation and mode).

Left out of the generated run, because one generated request would flip the daemon's
safety state for every later case: POST /api/trading/emergency-stop and POST
/api/trading/halt (both latch a breaker). Their bodies are checked below against the
document and the Structs instead, and tests/test_halt.py and tests/test_stops_e2e.py run
them end to end. GET /api/events is an endless stream (nothing to generate). POST
/api/trading/mode stays in: without a confirmation token it can only refuse a LIVE switch
or switch to PAPER, which the daemon is already in.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from pathlib import Path
from typing import Any

import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup

from heliosd.control import schema as sc
from heliosd.testing import SimHandle, start_daemon, write_config

EXAMPLES: dict[GenerationMode, int] = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 15}
SKIPPED = {
    ("POST", "/api/trading/emergency-stop"),
    ("POST", "/api/trading/halt"),
    ("GET", "/api/events"),
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance,
]
# Valid data may still be refused for what it asks: 409 (halted, a gate), 422 (a risk rule
# or the venue refused the order). Never 400: that says the document allowed a malformed
# request.
CONFIG = {
    "checks": {
        "positive_data_acceptance": {
            "expected-statuses": ["2xx", "401", "403", "404", "409", "422", "5xx"]
        }
    }
}


def _run(base: str, token: str, doc: dict[str, Any]) -> tuple[int, list[str]]:
    """Every operation, both modes; returns (cases sent, failures as text)."""
    schema = schemathesis.openapi.from_dict(doc, config=SchemathesisConfig.from_dict(CONFIG))
    headers = {"Authorization": f"Bearer {token}"}
    sent = 0
    failures: list[str] = []
    for result in schema.get_all_operations():
        op = result.ok()
        if (op.method.upper(), op.path) in SKIPPED:
            continue
        for mode, examples in EXAMPLES.items():

            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=op.as_strategy(generation_mode=mode))
            def check(case: schemathesis.Case) -> None:
                nonlocal sent
                sent += 1
                try:
                    case.call_and_validate(base_url=base, headers=headers, checks=CHECKS)
                except (AssertionError, FailureGroup) as exc:
                    failures.append(f"{case.operation.label} ({case.meta}): {exc}")

            try:
                check()
            except Unsatisfiable:
                # No parameters and no body: there is no invalid request to make.
                assert mode is GenerationMode.NEGATIVE, op.label
    return sent, failures


@pytest.mark.timeout(90)
async def test_every_generated_request_conforms_to_the_document(
    sim: SimHandle, short_dir: Path
) -> None:
    token = secrets.token_urlsafe(24)
    paper = '[paper]\nstarting_balances = { ZAR = "100000", BTC = "1" }\n'
    config = write_config(
        short_dir,
        sim,
        extra=paper,
        daemon_extra=f'http_listen = "127.0.0.1:0"\nhttp_token = "{token}"',
    )
    running = await start_daemon(config)
    host, port = running.service.control.tcp_address
    base = f"http://{host}:{port}"
    try:
        status, doc = await running.request("GET", "/api/openapi.json")
        assert status == 200
        sent, failures = await asyncio.to_thread(_run, base, token, doc)
        assert not failures, "\n\n".join(failures[:10])
        assert sent >= 400, sent  # every operation was exercised
        assert not running.task.done()
        status, body = await running.request("GET", "/api/health")
        assert status == 200, body
    finally:
        await running.stop()


def _validator(doc: dict[str, Any], name: str) -> Any:
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return jsonschema_rs.validator_for(schema)


async def test_stop_and_halt_answers_match_the_document_and_the_structs(
    sim: SimHandle, short_dir: Path
) -> None:
    running = await start_daemon(write_config(short_dir, sim))
    try:
        _, doc = await running.request("GET", "/api/openapi.json")
        status, body = await running.request("POST", "/api/trading/halt", {"reason": "test"})
        assert status == 200, body
        assert _validator(doc, "Halt").is_valid(body), body
        msgspec.convert(body, sc.Halt)
        status, body = await running.request("POST", "/api/trading/resume", {"reason": "ok"})
        assert status == 200, body
        assert _validator(doc, "Resumed").is_valid(body), body
        status, body = await running.request("POST", "/api/trading/emergency-stop", {})
        assert status == 200, body
        assert _validator(doc, "EmergencyStop").is_valid(body), body
        msgspec.convert(body, sc.EmergencyStop)
        # The request side: what the document refuses, the API refuses, naming the field.
        for route in ("/api/trading/halt", "/api/trading/emergency-stop"):
            status, body = await running.request("POST", route, {"reason": None})
            assert (status, body["details"]["field"]) == (400, "reason"), body
            status, body = await running.request("POST", route, {"reason": "x", "why": 1})
            assert (status, body["details"]["field"]) == (400, "why"), body
        assert not _validator(doc, "RequiredReason").is_valid({"reason": " "})
        status, body = await running.request("POST", "/api/trading/halt", {"reason": " "})
        assert (status, body["details"]["field"]) == (400, "reason"), body
    finally:
        await running.stop()


def test_the_document_is_valid_json_with_every_error_documented() -> None:
    from heliosd.control.openapi import OPERATIONS, build_document

    doc = build_document(list(OPERATIONS))
    text = json.dumps(doc)  # plain JSON, no Structs or Decimals left in it
    # Every reference names a component the document has (a new answer Struct left out of
    # schema.ANSWERS would leave its route pointing at nothing).
    for name in re.findall(r'"#/components/schemas/([^"]+)"', text):
        assert name in doc["components"]["schemas"], name
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status, answer in op["responses"].items():
                if status.startswith(("4", "5")) and (path, status) != ("/api/health", "503"):
                    ref = answer["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/Error"), (method, path, status)
