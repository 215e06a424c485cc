"""Issue 8 item 8: bad input from every side is refused cleanly.

* The control API: hypothesis generates requests for every route of ``/api/openapi.json``,
  from the document's own schemas (valid-looking bodies and parameters) mixed with arbitrary
  JSON, raw bytes and truncated JSON. No answer is a 5xx, every refusal is the JSON error
  shape, and the daemon is still healthy afterwards.
* The venue: the simulator garbles a share of its WebSocket messages (truncated, non-JSON,
  unknown types). Each is skipped with a warning, the stream stays connected, fills still
  arrive afterwards, and a REST catch-up recovers the fills the garbling destroyed.
* The config file: broken configs make ``heliosd run`` exit 78 naming the key.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heliosd.core.types import Mode
from heliosd.testing import SimHandle, start_daemon, write_config

from .conftest import NOTIFY, read_db, wait_until

EXAMPLES_PER_ROUTE = 25
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=10,
)  # fmt: skip


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self._path)


def send(sock: str, method: str, target: str, body: bytes | None,
         content_type: str = "application/json") -> tuple[int, str, bytes]:  # fmt: skip
    """One raw request; (status, content type, body)."""
    conn = _Unix(sock)
    try:
        headers = {"Content-Type": content_type} if body is not None else {}
        conn.request(method, target, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read()
    finally:
        conn.close()


# ---------------------------------------------------------------- schema -> strategy


def from_schema(schema: dict[str, Any], doc: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values for the JSON-schema subset the document uses (refs, enums, anyOf, types,
    objects); an order's if/then/else is left to chance (some generated orders break it)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return from_schema(doc["components"]["schemas"][name], doc)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of(*(from_schema(s, doc) for s in schema["anyOf"]))
    types = schema.get("type", "object")
    if isinstance(types, list):
        return st.one_of(*(from_schema({**schema, "type": t}, doc) for t in types))
    examples = schema.get("examples", [])
    if types == "string":
        text = (
            st.from_regex(schema["pattern"], fullmatch=True)
            if "pattern" in schema
            else st.text(min_size=schema.get("minLength", 0), max_size=schema.get("maxLength", 40))
        )
        decimals = st.decimals(min_value=0, max_value=10, places=4).map(str)
        if examples:  # twice as often as made-up text: a made-up pair is never traded
            return st.one_of(st.sampled_from(examples), st.sampled_from(examples), text)
        return text if "pattern" in schema else text | decimals
    if types == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        return st.integers(low, high) | st.integers()
    if types == "number":
        return st.decimals(min_value=0, max_value=10, places=4).map(float) | st.floats()
    if types == "boolean":
        return st.booleans()
    if types == "null":
        return st.none()
    if types == "array":
        return st.lists(from_schema(schema.get("items", {}), doc), max_size=3)
    props = schema.get("properties", {})
    required = set(schema.get("required", ()))
    return st.fixed_dictionaries(
        {k: from_schema(v, doc) for k, v in props.items() if k in required},
        optional={k: from_schema(v, doc) for k, v in props.items() if k not in required},
    )


Request = tuple[str, bytes | None, str]  # target, body, content type


def requests_for(
    method: str, template: str, op: dict[str, Any], doc: dict[str, Any]
) -> st.SearchStrategy[Request]:
    """(target, body, content type) for one operation: schema-shaped or plainly wrong."""
    path_values: dict[str, st.SearchStrategy[str]] = {}
    query: list[tuple[str, st.SearchStrategy[str]]] = []
    for param in op.get("parameters", []):
        wrong = st.text(max_size=12) | st.integers().map(str)
        value = from_schema(param["schema"], doc).map(str) | wrong
        if param["in"] == "path":
            path_values[param["name"]] = value
        else:
            query.append((param["name"], value))

    @st.composite
    def target(draw: st.DrawFn) -> str:
        path = template
        for name, values in path_values.items():
            path = path.replace("{" + name + "}", quote(draw(values), safe=""))
        pairs = [(k, draw(v)) for k, v in query if draw(st.booleans())]
        return path + ("?" + "&".join(f"{k}={quote(v)}" for k, v in pairs) if pairs else "")

    content = op.get("requestBody", {}).get("content", {}).get("application/json")
    shaped = from_schema(content["schema"], doc) if content else st.fixed_dictionaries({})
    bodies = st.one_of(
        st.none(),
        shaped.map(lambda v: json.dumps(v).encode()),
        shaped.map(lambda v: json.dumps(v).encode()),  # twice: valid requests reach deeper
        shaped.map(lambda v: json.dumps(v).encode()[:-1]),  # truncated JSON
        JSON_VALUES.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=64),
    )
    kinds = st.sampled_from(["application/json", "application/json", "text/plain"])
    return st.tuples(target(), bodies, kinds)


def check_answer(method: str, target: str, status: int, ctype: str, raw: bytes) -> None:
    where = f"{method} {target} -> {status} {raw[:300]!r}"
    assert status < 500, where
    if status >= 400:
        assert ctype.startswith("application/json"), where
        body = json.loads(raw)
        assert isinstance(body.get("error"), str) and body["error"], where
        assert isinstance(body.get("message"), str) and body["message"], where
        assert isinstance(body.get("details"), dict), where
        assert "Traceback" not in raw.decode(errors="replace"), where


def fuzz_route(sock: str, method: str, template: str, op: dict[str, Any],
               doc: dict[str, Any]) -> None:  # fmt: skip
    @settings(max_examples=EXAMPLES_PER_ROUTE, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(requests_for(method, template, op, doc))
    def run(request: tuple[str, bytes | None, str]) -> None:
        target, body, ctype = request
        status, answer_type, raw = send(sock, method, target, body, ctype)
        check_answer(method, target, status, answer_type, raw)

    run()


# Run last: the stop latches (orders then mostly answer "halted") and resume clears it.
_LAST = {"/api/trading/emergency-stop": 1, "/api/trading/resume": 2}


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_generated_requests_for_every_route_get_json_refusals_never_5xx(
    sim: SimHandle, short_dir: Path
) -> None:
    # The paper account holds some BTC, so that generated SELLs (never capped to a short)
    # can be valid too.
    paper = '[paper]\nstarting_balances = { ZAR = "100000", BTC = "1" }\n'
    running = await start_daemon(write_config(short_dir, sim, notify_url=NOTIFY, extra=paper))
    sock = str(running.socket)
    try:
        status, _, raw = await asyncio.to_thread(send, sock, "GET", "/api/openapi.json", None)
        assert status == 200
        doc = json.loads(raw)
        routes = sorted(
            ((m.upper(), path, op) for path, ops in doc["paths"].items() for m, op in ops.items()),
            key=lambda r: (_LAST.get(r[1], 0), r[1], r[0]),
        )
        assert len(routes) >= 20
        for method, path, op in routes:
            if path == "/api/events":
                continue  # an endless stream without parameters or body: nothing to fuzz
            await asyncio.to_thread(fuzz_route, sock, method, path, op, doc)
            assert not running.task.done(), f"daemon died during {method} {path}"
        status, body = await running.request("GET", "/api/health")
        assert status == 200, body
        # Some generated orders were valid and went through the router to the paper venue.
        db = running.service.settings.daemon.db_path
        assert read_db(db, "SELECT COUNT(*) FROM orders WHERE state != 'rejected'")[0][0] > 0
    finally:
        await running.stop()


# ---------------------------------------------------------------- garbled WebSocket


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_garbled_venue_messages_are_skipped_and_the_stream_lives(
    sim: SimHandle, short_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="heliosd.builtin.valr.streams")
    running = await start_daemon(write_config(short_dir, sim, notify_url=NOTIFY))
    db = running.service.settings.daemon.db_path
    sink = running.service.sinks[Mode.LIVE]

    def stored() -> set[str]:
        return {r[0] for r in read_db(db, "SELECT trade_id FROM fills WHERE mode = 'LIVE'")}

    try:
        await wait_until(lambda: sink.streams.get("account", (False,))[0], 15, "account up")
        since = sink.streams["account"][2]
        sim.sim.faults.garble_rate = 0.3
        garbled_ids = []
        for _ in range(20):
            garbled_ids += await sim.sim.inject_fills(sim.account, "BTCZAR", 3)
            await asyncio.sleep(0.03)
        await asyncio.sleep(0.5)
        sim.sim.faults.garble_rate = 0.0
        skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
        assert len(skipped) >= 10, skipped
        assert all("garbled" not in m and "\x00" not in m for m in skipped)  # no payloads
        # Still the same connection: garbage is not a reason to reconnect.
        assert sink.streams["account"][:1] == (True,) and sink.streams["account"][2] == since
        assert sim.sim.hub.account_socket_count() == 1

        after = await sim.sim.inject_fills(sim.account, "BTCZAR", 5)
        await wait_until(lambda: set(after) <= stored(), 10, "fills after the garbling")
        # Garbling destroyed some fill messages; each skipped account message triggers a
        # catch-up through REST trade history, so every fill comes back, each once, on the
        # same connection (no reconnect needed).
        everything = {t["id"] for t in sim.sim.trades(sim.account)}
        await wait_until(lambda: stored() == everything, 15, "every fill after the catch-up")
        assert set(garbled_ids) <= everything
        assert sim.sim.hub.account_socket_count() == 1
        assert sink.streams["account"][2] == since
        held = sim.sim.balances(sim.account)["BTC"]
        ledger = running.service.ledgers[Mode.LIVE]
        await wait_until(lambda: ledger.position("BTCZAR") == held[0] + held[1], 10, "ledger")
    finally:
        await running.stop()


# ---------------------------------------------------------------- broken configs

BROKEN_CONFIGS = [
    ("[risk]\nmax_leverag = 3\n", "risk.max_leverag"),
    ('[risk]\nmax_position_pct = "lots"\n', "risk.max_position_pct"),
    ("[risk]\nmax_position_pct = 150\n", "risk.max_position_pct"),
    ('[risk]\ntimezone = "Mars/Olympus"\n', "risk.timezone"),
    ('[paper]\nstarting_balances = { ZAR = "abc" }\n', "paper.starting_balances.ZAR"),
    (
        '[valr]\nrest_url = "http://127.0.0.1:9"\nws_url = "ws://127.0.0.1:9"\n'
        'api_key = { "$file" = "/nonexistent/heliosd-key" }\n',
        "valr.api_key",
    ),
    ("[bogus]\nx = 1\n", "bogus"),
    ('[exchange]\nlive = "nosuch"\n', "exchange"),
    ('[engine]\nstrategy = "nosuch"\n', "engine.strategy"),
    ('[notify]\nurls = "json://x"\n', "notify.urls"),
]


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_broken_configs_exit_78_naming_the_key(short_dir: Path) -> None:
    async def run(index: int, text: str) -> tuple[int, str, Path]:
        config = short_dir / f"broken-{index}.toml"
        state = short_dir / f"state-{index}"
        # A loopback venue nobody answers on, should a broken config start after all.
        venue = (
            ""
            if "[valr]" in text
            else ('[valr]\nrest_url = "http://127.0.0.1:9"\nws_url = "ws://127.0.0.1:9"\n')
        )
        config.write_text(f'[daemon]\nstate_dir = "{state}"\ncontrol_socket = "{state}/h.sock"\n'
                          + venue + text)  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "heliosd.runtime.cli", "run", "--config", str(config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            _, err = await asyncio.wait_for(proc.communicate(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return -1, "still running after 30 s", config
        return proc.returncode or 0, err.decode(errors="replace"), config

    results = await asyncio.gather(*(run(i, t) for i, (t, _) in enumerate(BROKEN_CONFIGS)))
    failures = []
    for (text, key), (code, err, config) in zip(BROKEN_CONFIGS, results, strict=True):
        if code != 78 or f"[{key}]" not in err or str(config) not in err:
            failures.append(f"{text!r}: exit {code}, stderr {err[-300:]!r}")
        if "Traceback" in err:
            failures.append(f"{text!r}: traceback on stderr")
    assert not failures, "\n".join(failures)
    # Nothing was created for a config that never ran.
    assert not any((short_dir / f"state-{i}" / "heliosd.db").exists()
                   for i in range(len(BROKEN_CONFIGS)))  # fmt: skip
