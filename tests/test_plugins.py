"""Plugin loading through real files: drop-in dirs, temporary built-in modules, reloads."""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import sys
import textwrap
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from heliosd.core.config import DaemonSettings, Settings
from heliosd.core.errors import ConfigError
from heliosd.core.types import OrderIntent, OrderType, Side, VerdictAction
from heliosd.plugins.manager import (
    BUILTIN_PLUGINS,
    ESSENTIAL_PLUGINS,
    collect,
    config_sections,
    load_with_plugins,
    make_plugin_manager,
    plugin_records,
    reload_dropins,
)

RULE = """
from decimal import Decimal
from heliosd import hookimpl, Verdict

class MaxQty:
    name = "{name}"

    def check(self, intent, ctx):
        if intent.quantity > Decimal("{limit}"):
            return Verdict.reject(self.name, "quantity above {limit}")
        return Verdict.accept(self.name)

@hookimpl
def heliosd_register_risk_rules(register, config):
    register(MaxQty())
"""


@pytest.fixture(autouse=True)
def _forget_dropins() -> Iterator[None]:
    """Drop-in modules live in sys.modules; keep tests from seeing each other's."""
    yield
    for name in [m for m in sys.modules if m.startswith(("heliosd_dropin_", "hx_builtin_"))]:
        del sys.modules[name]


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    d = tmp_path / "plugins"
    d.mkdir(mode=0o755)
    d.chmod(0o755)
    return d


def write(directory: Path, name: str, text: str, mode: int = 0o644) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    path.chmod(mode)
    return path


def settings_with(*dirs: Path, blocked: tuple[str, ...] = ()) -> Settings:
    return Settings(
        daemon=DaemonSettings(plugin_dirs=tuple(dirs), blocked_plugins=blocked),
        source="test.toml",
    )


def test_dropin_rule_is_loaded_registered_and_listed_with_its_sha256(
    plugin_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(plugin_dir, "max_qty.py", RULE.format(name="max_qty", limit="1"))
    caplog.set_level(logging.INFO, logger="heliosd.plugins")

    pm = make_plugin_manager(settings_with(plugin_dir), builtins=())
    reg = collect(pm, settings_with(plugin_dir))

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    [record] = [r for r in plugin_records(pm) if r.kind == "dropin"]
    assert record.name == "heliosd_dropin_max_qty"
    assert record.path == str(path)
    assert record.sha256 == digest
    assert record.hooks == ["heliosd_register_risk_rules"]
    assert not record.essential
    assert record.as_json()["sha256"] == digest
    assert f"sha256={digest}" in caplog.text
    assert str(path) in caplog.text

    [rule] = reg.risk_rules
    assert reg.owners == {"max_qty": "heliosd_dropin_max_qty"}
    big = OrderIntent("BTCZAR", Side.BUY, OrderType.MARKET, Decimal("2"))
    small = OrderIntent("BTCZAR", Side.BUY, OrderType.MARKET, Decimal("0.5"))
    assert rule.check(big, None).action is VerdictAction.REJECT  # type: ignore[arg-type,union-attr]
    assert rule.check(small, None).action is VerdictAction.ACCEPT  # type: ignore[arg-type,union-attr]


def test_dropins_load_in_name_order_and_skip_dotfiles(plugin_dir: Path) -> None:
    write(plugin_dir, "b_rule.py", RULE.format(name="b", limit="1"))
    write(plugin_dir, "a_rule.py", RULE.format(name="a", limit="1"))
    write(plugin_dir, ".#a_rule.py", "raise RuntimeError('editor lock file')\n")
    write(plugin_dir, "notes.txt", "not python")

    pm = make_plugin_manager(settings_with(plugin_dir), builtins=())
    reg = collect(pm, settings_with(plugin_dir))

    assert [r.name for r in reg.risk_rules] == ["a", "b"]


@pytest.mark.parametrize(("mode", "why"), [(0o664, "group-writable"), (0o646, "world-writable")])
def test_writable_dropin_is_refused(plugin_dir: Path, mode: int, why: str) -> None:
    path = write(plugin_dir, "loose.py", RULE.format(name="loose", limit="1"), mode=mode)

    with pytest.raises(ConfigError) as err:
        make_plugin_manager(settings_with(plugin_dir), builtins=())

    assert str(path) in str(err.value)
    assert why in str(err.value)
    assert "heliosd_dropin_loose" not in sys.modules  # refused before any of it ran


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
def test_dropin_owned_by_another_user_is_refused(plugin_dir: Path) -> None:
    path = write(plugin_dir, "theirs.py", RULE.format(name="theirs", limit="1"))
    os.chown(path, 4242, -1)

    with pytest.raises(ConfigError, match="owned by uid 4242") as err:
        make_plugin_manager(settings_with(plugin_dir), builtins=())
    assert str(path) in str(err.value)


def test_world_writable_plugin_dir_is_refused(plugin_dir: Path) -> None:
    write(plugin_dir, "ok.py", RULE.format(name="ok", limit="1"))
    plugin_dir.chmod(0o777)

    with pytest.raises(ConfigError, match="world-writable") as err:
        make_plugin_manager(settings_with(plugin_dir), builtins=())
    assert err.value.key == "daemon.plugin_dirs"


def test_missing_plugin_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"plugin directory .*nowhere"):
        make_plugin_manager(settings_with(tmp_path / "nowhere"), builtins=())


def test_misspelled_hook_fails_check_pending(plugin_dir: Path) -> None:
    write(
        plugin_dir,
        "typo.py",
        """
        from heliosd import hookimpl

        @hookimpl
        def heliosd_register_risk_rulez(register, config):
            pass
        """,
    )
    with pytest.raises(ConfigError, match="heliosd_register_risk_rulez") as err:
        make_plugin_manager(settings_with(plugin_dir), builtins=())
    assert "heliosd_register_risk_rules" in str(err.value)  # the known hooks are listed


def test_hook_function_without_hookimpl_marker_is_refused(plugin_dir: Path) -> None:
    write(
        plugin_dir, "unmarked.py", "def heliosd_register_risk_rules(register, config):\n    pass\n"
    )

    with pytest.raises(ConfigError, match="not marked with @hookimpl"):
        make_plugin_manager(settings_with(plugin_dir), builtins=())


def test_dropin_that_raises_on_import_names_the_file(plugin_dir: Path) -> None:
    path = write(plugin_dir, "broken.py", "raise ValueError('boom')\n")

    with pytest.raises(ConfigError, match="ValueError: boom") as err:
        make_plugin_manager(settings_with(plugin_dir), builtins=())
    assert str(path) in str(err.value)
    assert "heliosd_dropin_broken" not in sys.modules


@pytest.mark.parametrize("name", [*ESSENTIAL_PLUGINS, "limits", "gates", "monitors"])
def test_essential_plugins_cannot_be_blocked(name: str) -> None:
    with pytest.raises(ConfigError, match="essential plugin") as err:
        make_plugin_manager(settings_with(blocked=(name,)), builtins=())
    assert err.value.key == "daemon.blocked_plugins"
    assert err.value.source == "test.toml"


def test_blocked_dropin_is_never_imported(plugin_dir: Path) -> None:
    write(plugin_dir, "evil.py", "raise SystemExit('must not run')\n")
    write(plugin_dir, "good.py", RULE.format(name="good", limit="1"))

    pm = make_plugin_manager(settings_with(plugin_dir, blocked=("evil",)), builtins=())

    assert [r.name for r in collect(pm, settings_with(plugin_dir)).risk_rules] == ["good"]


def test_duplicate_rule_names_are_refused_naming_both_plugins(
    plugin_dir: Path, tmp_path: Path
) -> None:
    other = tmp_path / "more"
    other.mkdir()
    write(plugin_dir, "first.py", RULE.format(name="max_qty", limit="1"))
    write(other, "second.py", RULE.format(name="max_qty", limit="2"))
    pm = make_plugin_manager(settings_with(plugin_dir, other), builtins=())

    with pytest.raises(ConfigError, match="duplicate risk_rules name 'max_qty'") as err:
        collect(pm, settings_with(plugin_dir, other))
    assert "heliosd_dropin_first" in str(err.value)
    assert "heliosd_dropin_second" in str(err.value)


def test_same_file_name_in_two_dirs_is_refused(plugin_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "more"
    other.mkdir()
    write(plugin_dir, "rule.py", RULE.format(name="a", limit="1"))
    write(other, "rule.py", RULE.format(name="b", limit="1"))

    with pytest.raises(ConfigError, match="same name as"):
        make_plugin_manager(settings_with(plugin_dir, other), builtins=())


def test_reload_picks_up_new_files_and_drops_removed_ones(plugin_dir: Path) -> None:
    old = write(plugin_dir, "old.py", RULE.format(name="old", limit="1"))
    settings = settings_with(plugin_dir)
    pm = make_plugin_manager(settings, builtins=())
    assert [r.name for r in collect(pm, settings).risk_rules] == ["old"]

    old.unlink()
    new = write(plugin_dir, "new.py", RULE.format(name="new", limit="3"))
    records = reload_dropins(pm, settings)

    assert [(r.name, r.sha256) for r in records] == [
        ("heliosd_dropin_new", hashlib.sha256(new.read_bytes()).hexdigest())
    ]
    [rule] = collect(pm, settings).risk_rules
    assert rule.name == "new"
    assert "heliosd_dropin_old" not in sys.modules


def test_reload_with_a_bad_file_keeps_the_previous_set(plugin_dir: Path) -> None:
    write(plugin_dir, "keep.py", RULE.format(name="keep", limit="1"))
    settings = settings_with(plugin_dir)
    pm = make_plugin_manager(settings, builtins=())
    write(plugin_dir, "zz_bad.py", RULE.format(name="bad", limit="1"), mode=0o666)

    with pytest.raises(ConfigError, match=r"zz_bad\.py"):
        reload_dropins(pm, settings)

    assert [r.name for r in collect(pm, settings).risk_rules] == ["keep"]
    assert [r.name for r in plugin_records(pm)] == ["heliosd_dropin_keep"]


# --------------------------------------------------------------------------- built-ins


@pytest.fixture
def builtin_pkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on sys.path for temporary built-in modules (hx_builtin_*)."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    return root


EXCHANGE = """
from heliosd import hookimpl

class Gate:
    name = "{gate}"
    async def check(self, ctx):
        raise AssertionError("not called here")

@hookimpl
def heliosd_register_exchanges(register, config):
    register("{exchange}", lambda ctx: None)

@hookimpl
def heliosd_register_gates(register, config):
    register(Gate())
"""


def test_builtins_register_first_and_in_order(builtin_pkg: Path, plugin_dir: Path) -> None:
    write(builtin_pkg, "hx_builtin_one.py", EXCHANGE.format(gate="g1", exchange="one"))
    write(builtin_pkg, "hx_builtin_two.py", EXCHANGE.format(gate="g2", exchange="two"))
    write(plugin_dir, "rule.py", RULE.format(name="r", limit="1"))
    settings = settings_with(plugin_dir)

    pm = make_plugin_manager(settings, builtins=("hx_builtin_one", "hx_builtin_two"))
    reg = collect(pm, settings)

    records = plugin_records(pm)
    assert [(r.name, r.kind) for r in records] == [
        ("hx_builtin_one", "builtin"),
        ("hx_builtin_two", "builtin"),
        ("heliosd_dropin_rule", "dropin"),
    ]
    assert records[0].sha256 is None
    assert records[0].path == str(builtin_pkg / "hx_builtin_one.py")
    assert list(reg.exchanges) == ["one", "two"]
    assert [g.name for g in reg.gates] == ["g1", "g2"]
    assert reg.owners == {
        "g1": "hx_builtin_one",
        "g2": "hx_builtin_two",
        "r": "heliosd_dropin_rule",
    }
    assert reg.kind_owners["exchanges"] == {"one": "hx_builtin_one", "two": "hx_builtin_two"}


def test_blocked_builtin_is_skipped(builtin_pkg: Path) -> None:
    write(builtin_pkg, "hx_builtin_one.py", EXCHANGE.format(gate="g1", exchange="one"))
    write(builtin_pkg, "hx_builtin_two.py", EXCHANGE.format(gate="g2", exchange="two"))
    settings = settings_with(blocked=("hx_builtin_two",))

    pm = make_plugin_manager(settings, builtins=("hx_builtin_one", "hx_builtin_two"))

    assert list(collect(pm, settings).exchanges) == ["one"]
    assert [r.name for r in plugin_records(pm)] == ["hx_builtin_one"]


def test_missing_builtin_fails_loudly() -> None:
    with pytest.raises(ConfigError, match="built-in plugin hx_builtin_absent cannot be imported"):
        make_plugin_manager(settings_with(), builtins=("hx_builtin_absent",))


def test_duplicate_exchange_name_is_refused(builtin_pkg: Path) -> None:
    write(builtin_pkg, "hx_builtin_one.py", EXCHANGE.format(gate="g1", exchange="same"))
    write(builtin_pkg, "hx_builtin_two.py", EXCHANGE.format(gate="g2", exchange="same"))
    pm = make_plugin_manager(settings_with(), builtins=("hx_builtin_one", "hx_builtin_two"))

    with pytest.raises(ConfigError, match="hx_builtin_one and by hx_builtin_two"):
        collect(pm, settings_with())


def test_register_hook_that_raises_fails_naming_the_plugin(plugin_dir: Path) -> None:
    write(
        plugin_dir,
        "raiser.py",
        """
        from heliosd import hookimpl

        @hookimpl
        def heliosd_register_monitors(register, config):
            raise KeyError("no such setting")
        """,
    )
    pm = make_plugin_manager(settings_with(plugin_dir), builtins=())

    with pytest.raises(
        ConfigError, match="heliosd_dropin_raiser failed in heliosd_register_monitors"
    ):
        collect(pm, settings_with(plugin_dir))


def test_object_without_its_protocol_method_is_refused(plugin_dir: Path) -> None:
    write(
        plugin_dir,
        "nocheck.py",
        """
        from heliosd import hookimpl

        class Rule:
            name = "nocheck"

        @hookimpl
        def heliosd_register_risk_rules(register, config):
            register(Rule())
        """,
    )
    pm = make_plugin_manager(settings_with(plugin_dir), builtins=())

    with pytest.raises(ConfigError, match=r"'nocheck' has no check\(\) method"):
        collect(pm, settings_with(plugin_dir))


def test_wrapper_on_a_register_hook_is_refused(plugin_dir: Path) -> None:
    write(
        plugin_dir,
        "wrapper.py",
        """
        from heliosd import hookimpl

        @hookimpl(wrapper=True)
        def heliosd_register_risk_rules(register, config):
            yield  # could swallow an essential plugin's registration
        """,
    )
    pm = make_plugin_manager(settings_with(plugin_dir), builtins=())

    with pytest.raises(ConfigError, match="may not be a wrapper"):
        collect(pm, settings_with(plugin_dir))


# --------------------------------------------------------------------------- config sections

SECTION = """
from heliosd import hookimpl
from heliosd.core.errors import ConfigError

def parse(raw, source):
    if set(raw) - {{"max_qty"}}:
        raise ConfigError("unknown key", key="{section}." + sorted(set(raw) - {{"max_qty"}})[0],
                          source=source)
    return {{"max_qty": str(raw.get("max_qty", "1"))}}

@hookimpl
def heliosd_config_sections():
    return {{"{section}": parse}}
"""


def test_plugin_config_sections_are_merged_and_parsed(plugin_dir: Path, tmp_path: Path) -> None:
    write(plugin_dir, "sect.py", SECTION.format(section="max_qty_rule"))
    config = tmp_path / "heliosd.toml"
    config.write_text(
        f'[daemon]\nplugin_dirs = ["{plugin_dir}"]\n\n[max_qty_rule]\nmax_qty = "0.5"\n'
    )

    settings, pm = load_with_plugins(config, builtins=())

    assert list(config_sections(pm)) == ["max_qty_rule"]
    assert settings.plugins["max_qty_rule"] == {"max_qty": "0.5"}
    assert settings.daemon.plugin_dirs == (plugin_dir,)


def test_unknown_key_in_a_plugin_section_names_it(plugin_dir: Path, tmp_path: Path) -> None:
    write(plugin_dir, "sect.py", SECTION.format(section="max_qty_rule"))
    config = tmp_path / "heliosd.toml"
    config.write_text(f'[daemon]\nplugin_dirs = ["{plugin_dir}"]\n\n[max_qty_rule]\nmax_qtx = 1\n')

    with pytest.raises(ConfigError, match=r"\[max_qty_rule.max_qtx\]"):
        load_with_plugins(config, builtins=())


@pytest.mark.parametrize(("first", "second"), [("mine", "mine"), ("risk", None)])
def test_a_config_section_claimed_twice_is_refused(
    plugin_dir: Path, first: str, second: str | None
) -> None:
    write(plugin_dir, "a.py", SECTION.format(section=first))
    if second:
        write(plugin_dir, "b.py", SECTION.format(section=second))
    pm = make_plugin_manager(settings_with(plugin_dir), builtins=())

    with pytest.raises(ConfigError, match=rf"config section \[{first}\] is claimed by"):
        config_sections(pm)


def test_production_builtins_when_all_are_installed() -> None:
    """With the real built-ins, the essential ones are registered and named as such."""
    for name in BUILTIN_PLUGINS:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            pytest.skip(f"built-in {name} not available yet: {exc}")
    pm = make_plugin_manager(Settings())
    records = {r.name: r for r in plugin_records(pm)}
    assert list(records)[: len(BUILTIN_PLUGINS)] == list(BUILTIN_PLUGINS)
    assert {n for n, r in records.items() if r.essential} == set(ESSENTIAL_PLUGINS)
    reg = collect(pm, Settings())
    assert reg.gates
    assert reg.risk_rules
    assert reg.monitors
