"""The Service's own contract (heliosd.runtime.service and heliosd.runtime.service_calls).

A Service is wiring only: every part exists from ``__init__`` (empty or None until start),
``start()`` builds them in dependency order against a real SQLite file and the simulator,
``close()`` releases everything (store, control socket, clients, every background task) and
is safe twice, before a start and after a failed one; a start that fails part-way (an
unknown exchange or strategy, a broken exchange plugin, a startup hook that raises, a
control socket it may not replace) leaves nothing running once closed and the state
directory reusable; an unreachable venue does not hold the start up. The plugins' lifecycle
hooks get one typed DaemonView, before the API listens, the shutdown hooks at most once.
``alive`` / ``status_text`` / ``store_mode`` answer from the running parts.

Covered elsewhere, not repeated here:
- test_service_plugins.py: a plugin monitor's breaker, what the hooks see through a drop-in
  file, a venue plugin's foreign exception from place();
- test_daemon_process.py: a real ``heliosd run`` process (SIGTERM, kill -9, sd_notify, 78);
- test_shutdown.py: the staged shutdown's stages, budgets, gate and outbox flush;
- test_runstate.py: the run marker an orderly or overrun stop writes;
- test_reload_config.py: reload_plugins (SIGHUP), all or nothing;
- test_prices_e2e.py / test_venue_status.py: status_text's STALE PRICES / VALR READ-ONLY.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import inspect
import textwrap
from pathlib import Path
from typing import Any

import pluggy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst

from heliosd import hookimpl
from heliosd.builtin.paper import PaperExchange
from heliosd.core.config import Settings, load_settings
from heliosd.core.errors import ConfigError
from heliosd.core.types import Mode
from heliosd.plugins.facade import DaemonView
from heliosd.plugins.manager import load_with_plugins
from heliosd.runtime.service import SYSTEM, Service
from heliosd.testing import SimHandle, wait_for, write_config

# A venue nobody listens on (the discard port on loopback): every connection is refused.
UNREACHABLE = 'rest_url = "http://127.0.0.1:9"\nws_url = "ws://127.0.0.1:9"'


class Hooks:
    """A plugin with both lifecycle hooks: records each call and what the service looked
    like at that moment; raises from either when told to."""

    def __init__(
        self, service: Service | None = None, *, fail_start: bool = False, fail_stop: bool = False
    ) -> None:
        self.service = service
        self.fail_start = fail_start
        self.fail_stop = fail_stop
        self.calls: list[tuple[str, Any]] = []
        self.at_startup: dict[str, Any] = {}

    @hookimpl
    def heliosd_startup(self, daemon: Any) -> None:
        self.calls.append(("startup", daemon))
        if self.service is not None:
            s = self.service
            self.at_startup = {
                "control": s.control,
                "backend": s.backend,
                "socket": s.settings.daemon.control_socket.exists(),
                "built": all(
                    p is not None
                    for p in (s.store, s.router, s.engine, s.orchestrator, s.stops, s.runner)
                ),
            }
        if self.fail_start:
            raise RuntimeError("plugin could not start")

    @hookimpl
    def heliosd_shutdown(self, daemon: Any) -> None:
        self.calls.append(("shutdown", daemon))
        if self.fail_stop:
            raise RuntimeError("plugin could not stop")


class BrokenStart(PaperExchange):
    name = "broken_start"

    async def start(self, events: Any) -> None:
        raise RuntimeError("paper venue could not start")


class HangingStart(PaperExchange):
    """A venue whose start() never returns (until cancelled): ``entered`` says it is there."""

    name = "hanging_start"
    entered = asyncio.Event()

    async def start(self, events: Any) -> None:
        HangingStart.entered.set()
        await asyncio.Event().wait()


def broken_factory(ctx: Any) -> Any:
    raise RuntimeError("paper venue could not be built")


class BrokenVenues:
    @hookimpl
    def heliosd_register_exchanges(self, register: Any, config: Any) -> None:
        register("broken_start", BrokenStart.from_context)
        register("broken_factory", broken_factory)
        register("hanging_start", HangingStart.from_context)


def other_tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[arg-type]


def service_for(config: Path, *plugins: object) -> tuple[Service, Settings, pluggy.PluginManager]:
    settings_, pm = load_with_plugins(config)
    for i, plugin in enumerate(plugins):
        pm.register(plugin, name=f"test_plugin_{i}")
    return Service(settings_, pm=pm), settings_, pm


async def assert_released(service: Service, before: set[asyncio.Task[Any]]) -> None:
    """What close() promises: no background task, no task of any part, store closed,
    control socket gone, nothing alive."""
    assert not service._background
    assert other_tasks() - before == set()
    assert not await service.alive()
    assert not service.settings.daemon.control_socket.exists()
    if service.store is not None:
        with pytest.raises(RuntimeError, match="store is closed"):
            service.store.submit(lambda c: None)


@pytest.fixture
def config(sim: SimHandle, short_dir: Path) -> Path:
    return write_config(short_dir, sim)


# ------------------------------------------------------------------------------ __init__


def attributes_start_assigns() -> set[str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(Service.start)))
    names = set()
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else []
        for t in targets:
            if (
                isinstance(t, ast.Attribute)
                and isinstance(t.value, ast.Name)
                and t.value.id == "self"
            ):
                names.add(t.attr)
    return names


def test_every_part_start_builds_exists_from_init_as_none(short_dir: Path) -> None:
    service = Service(load_settings(write_config(short_dir, None)))
    assigned = attributes_start_assigns()
    # The parse found the wiring (a refactor that hides it must update this test).
    assert {"store", "breakers", "router", "engine", "control", "view"} <= assigned
    for name in assigned - {"pm"}:
        assert name in vars(service), name
        assert getattr(service, name) is None, name
    # The containers start() fills are there and empty; nothing was opened.
    for name in ("ledgers", "accounts", "clients", "sinks", "_background", "shutdown_problems"):
        assert len(getattr(service, name)) == 0, name
    assert service.pm is None and not service._hooks_ran
    assert not service.settings.daemon.db_path.exists()


async def test_the_daemon_queries_refuse_before_start_and_alive_says_no(short_dir: Path) -> None:
    service = Service(load_settings(write_config(short_dir, None)))
    assert await service.alive() is False
    with pytest.raises(AssertionError):
        service.status_text()
    with pytest.raises(AssertionError):
        service.store_mode()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pending=hst.integers(0, 4), finished=hst.integers(0, 3), closes=hst.integers(1, 3))
def test_close_cancels_every_spawned_task_however_often_it_is_called(
    short_dir: Path, pending: int, finished: int, closes: int
) -> None:
    settings_ = load_settings(write_config(short_dir, None))

    async def scenario() -> None:
        service = Service(settings_)
        never = asyncio.Event()
        waiting = [service._spawn(never.wait()) for _ in range(pending)]
        done = [service._spawn(asyncio.sleep(0)) for _ in range(finished)]
        await asyncio.gather(*done)
        assert service._background == set(waiting)  # a finished task is forgotten
        for _ in range(closes):
            await service.close()
        # Every one has ended by the time close returns (it waits for them, bounded).
        assert all(t.cancelled() for t in waiting)
        assert not service._background
        assert service.store is None  # close() opened nothing

    asyncio.run(scenario())


# ------------------------------------------------------------------------------ start/close


async def test_start_brings_everything_up_and_close_releases_it_all(config: Path) -> None:
    before = other_tasks()
    service, settings_, _ = service_for(config)
    await service.start()
    try:
        assert await service.alive()
        assert service.settings.daemon.control_socket.exists()
        assert set(service.clients) == set(service.sinks) == set(service.ledgers) == set(Mode)
        assert service.backend is not None and service.control is not None
        assert service._background  # the loops run (marks, equity, sweep, fillcheck ...)
        assert other_tasks() - before
        # Pair limits arrive from the venue in the background.
        await wait_for(lambda: service.market.venue_pairs, 5, "the venue's pair limits")
        assert "BTCZAR" in service.market.pairs()
    finally:
        await service.close()
    await assert_released(service, before)
    assert settings_.daemon.db_path.exists()  # the file stays: it is the daemon's record


async def test_a_second_close_is_a_no_op_and_the_shutdown_hooks_run_once(config: Path) -> None:
    before = other_tasks()
    hooks = Hooks()
    service, _, _ = service_for(config, hooks)
    await service.start()
    await service.close()
    await service.close()
    await assert_released(service, before)
    assert [c for c, _ in hooks.calls] == ["startup", "shutdown"]


async def test_the_staged_shutdown_running_the_hooks_first_keeps_close_from_rerunning_them(
    config: Path,
) -> None:
    hooks = Hooks()
    service, _, _ = service_for(config, hooks)
    await service.start()
    await service._shutdown_hooks()  # what the first shutdown stage does
    assert service._hooks_ran
    await service.close()
    assert [c for c, _ in hooks.calls] == ["startup", "shutdown"]


async def test_start_without_a_plugin_manager_builds_one_from_the_settings(config: Path) -> None:
    before = other_tasks()
    service = Service(load_settings(config))
    await service.start()
    try:
        assert service.pm is not None and service.registry is not None
        assert {"valr", "paper"} <= set(service.registry.exchanges)
        assert service.store_mode() == "PAPER"
    finally:
        await service.close()
    await assert_released(service, before)


# ------------------------------------------------------------------------------ hooks


async def test_the_lifecycle_hooks_get_one_typed_view_before_the_api_listens(
    config: Path,
) -> None:
    service, settings_, _ = service_for(config)
    hooks = Hooks(service)
    assert service.pm is not None
    service.pm.register(hooks, name="watcher")
    await service.start()
    try:
        [(name, view)] = hooks.calls
        assert name == "startup"
        assert type(view) is DaemonView and view is service.view
        # Everything is up, but nobody can reach the API yet.
        assert hooks.at_startup == {
            "control": None, "backend": None, "socket": False, "built": True,
        }  # fmt: skip
        assert view.settings is settings_ and view.store is service.store
        assert view.market is service.market and view.router is service.router
        assert view.breakers is service.breakers
        assert all(view.ledgers[m] is service.ledgers[m] for m in Mode)
        with pytest.raises(TypeError):  # a look, not a lever: the mapping cannot be changed
            view.ledgers[Mode.LIVE] = view.ledgers[Mode.PAPER]  # type: ignore[index]
        assert view.mode is Mode.PAPER
        with pytest.raises(dataclasses.FrozenInstanceError):
            view.store = None  # type: ignore[misc]
    finally:
        await service.close()
    assert [n for n, _ in hooks.calls] == ["startup", "shutdown"]
    assert hooks.calls[1][1] is hooks.calls[0][1]  # the same view for both hooks


@pytest.mark.logs_exception("plugin could not stop")
async def test_a_shutdown_hook_that_raises_is_logged_and_close_still_releases_all(
    config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = other_tasks()
    service, _, _ = service_for(config, Hooks(fail_stop=True))
    await service.start()
    await service.close()
    await assert_released(service, before)
    assert "heliosd_shutdown hook failed; shutting down anyway" in caplog.text


async def test_a_startup_hook_that_raises_fails_the_start_before_anything_listens(
    config: Path,
) -> None:
    before = other_tasks()
    service, _, _ = service_for(config)
    hooks = Hooks(service, fail_start=True)
    assert service.pm is not None
    service.pm.register(hooks, name="failing")
    with pytest.raises(RuntimeError, match="plugin could not start"):
        await service.start()
    assert service.control is None and service.backend is None
    assert not service.settings.daemon.control_socket.exists()
    assert service._background  # the loops were started: close() must end them
    await service.close()
    await assert_released(service, before)
    # Its shutdown hooks are not called for a start their startup hooks failed.
    assert [c for c, _ in hooks.calls] == ["startup"]


# ------------------------------------------------------------------------------ failed starts


@pytest.mark.parametrize(
    ("section", "key", "text"),
    [
        ('[exchange]\npaper = "nosuch"\n', "exchange", "no exchange plugin named 'nosuch'"),
        ('[engine]\nstrategy = "nosuch"\n', "engine.strategy", "no strategy named 'nosuch'"),
    ],
    ids=["exchange", "strategy"],
)
async def test_a_config_naming_a_missing_plugin_is_refused_before_anything_opens(
    sim: SimHandle, short_dir: Path, section: str, key: str, text: str
) -> None:
    before = other_tasks()
    service, settings_, _ = service_for(write_config(short_dir, sim, extra=section))
    with pytest.raises(ConfigError, match=text) as caught:
        await service.start()
    assert caught.value.key == key and caught.value.source == settings_.source
    assert "known: " in str(caught.value)
    assert service.registry is not None and service.store is None
    assert not settings_.daemon.db_path.exists()  # not even the database file
    await service.close()
    await assert_released(service, before)


@pytest.mark.parametrize(
    ("venue", "error"),
    [
        ("broken_factory", "paper venue could not be built"),
        ("broken_start", "paper venue could not start"),
    ],
)
async def test_a_broken_exchange_plugin_fails_the_start_and_close_releases_what_was_built(
    sim: SimHandle, short_dir: Path, venue: str, error: str
) -> None:
    before = other_tasks()
    config = write_config(short_dir, sim, extra=f'[exchange]\npaper = "{venue}"\n')
    hooks = Hooks()
    service, _, _ = service_for(config, BrokenVenues(), hooks)
    with pytest.raises(RuntimeError, match=error):
        await service.start()
    # Built in dependency order: what comes before the clients is there, nothing after.
    assert service.store is not None and service.breakers is not None
    assert service.runs is not None and service.notifications is not None
    assert service.router is None and service.engine is None and service.view is None
    assert other_tasks() - before  # the store's writer, the notifier, maybe the LIVE client
    await service.close()
    await assert_released(service, before)
    assert hooks.calls == []  # no startup, so no shutdown either


async def test_a_control_socket_it_may_not_replace_fails_the_start_last_and_leaves_the_file(
    config: Path,
) -> None:
    from heliosd.control.server import SocketInUseError

    before = other_tasks()
    hooks = Hooks()
    service, settings_, _ = service_for(config, hooks)
    sock = settings_.daemon.control_socket
    sock.parent.mkdir(parents=True, exist_ok=True)
    sock.write_text("someone else's file")
    with pytest.raises(SocketInUseError, match="is not a socket"):
        await service.start()
    assert service.backend is not None and service.control is not None  # the very last step
    await service.close()
    assert sock.read_text() == "someone else's file"  # not ours: left alone
    sock.unlink()
    await assert_released(service, before)
    # The startup hooks had run, so the shutdown hooks run on close.
    assert [c for c, _ in hooks.calls] == ["startup", "shutdown"]


async def test_a_failed_and_closed_start_leaves_the_state_dir_to_the_next_start(
    config: Path,
) -> None:
    failed, _, _ = service_for(config, Hooks(fail_start=True))
    with pytest.raises(RuntimeError, match="plugin could not start"):
        await failed.start()
    await failed.close()
    before = other_tasks()
    service, _, _ = service_for(config)
    await service.start()
    try:
        assert await service.alive()
        assert service.store_mode() == "PAPER"
        assert service.settings.daemon.control_socket.exists()
    finally:
        await service.close()
    await assert_released(service, before)


async def test_a_start_cancelled_while_a_venue_hangs_is_released_by_close(
    sim: SimHandle, short_dir: Path
) -> None:
    before = other_tasks()
    config = write_config(short_dir, sim, extra='[exchange]\npaper = "hanging_start"\n')
    service, _, _ = service_for(config, BrokenVenues())
    HangingStart.entered = asyncio.Event()
    starting = asyncio.ensure_future(service.start())
    await asyncio.wait_for(HangingStart.entered.wait(), 5)
    starting.cancel()  # a caller's timeout, a test's teardown
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert service.store is not None and service.router is None
    assert other_tasks() - before  # the LIVE client's streams were started before it
    await service.close()
    await assert_released(service, before)


async def test_an_unreachable_venue_does_not_hold_up_start_and_close_ends_the_retries(
    short_dir: Path,
) -> None:
    before = other_tasks()
    service, _, _ = service_for(write_config(short_dir, None, valr_extra=UNREACHABLE))
    await asyncio.wait_for(service.start(), 5)  # never waits on the network
    try:
        assert await service.alive()
        assert service.store_mode() == "PAPER"
        # The pair limits' loader keeps trying in the background; built-in limits meanwhile.
        [loader] = [
            t for t in service._background if t.get_coro().__qualname__.endswith("_load_pairs")
        ]
        assert not loader.done()
        assert not service.market.venue_pairs and "BTCZAR" in service.market.pairs()
    finally:
        await service.close()
    assert loader.cancelled()
    await assert_released(service, before)


# ------------------------------------------------------------------------------ queries


async def test_status_text_names_mode_equity_and_a_halt_and_a_restart_shows_it_at_once(
    config: Path,
) -> None:
    service, _, _ = service_for(config)
    await service.start()
    try:
        line = service.status_text()
        assert line == "PAPER equity 100000.00 ZAR day +0.00 dd 0.00%"
        assert "HALTED" not in line
        assert service.stops is not None
        await service.stops.emergency_stop(reason="test halt", actor=SYSTEM)
        assert service.status_text() == f"{line} HALTED (emergency: test halt)"
        assert service.store_mode() == "PAPER"
    finally:
        await service.close()
    # The breakers are loaded from the file before anything else: the next start says so
    # from its first status line.
    again, _, _ = service_for(config)
    await again.start()
    try:
        assert again.status_text() == f"{line} HALTED (emergency: test halt)"
        assert again.breakers is not None and again.breakers.halt_reason()
    finally:
        await again.close()
