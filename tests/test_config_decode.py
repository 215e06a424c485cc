"""The typed config decoder: msgspec errors read as heliosd's, secrets stay hidden, p_* agree.

tests/test_config.py covers each core key's messages through real files; this file covers
what the msgspec layer itself promises (heliosd.core.config_decode, config_values, secret).
"""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from heliosd import p_decimal, p_int, p_pairs, p_paths, p_secret, p_strs
from heliosd.core.config import (
    SECTIONS,
    RiskSettings,
    Settings,
    ValrSettings,
    load_settings,
    p_balances,
    p_http_listen,
    p_log_level,
    parse_settings,
    section_keys,
)
from heliosd.core.errors import ConfigError

SECRET = "tok-7c1f0e2b9d4a"


def refused(data: dict[str, object]) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        parse_settings(data, "t.toml")
    return err.value


def test_sections_are_frozen_structs_whose_fields_are_the_documented_keys() -> None:
    for name, cls in SECTIONS.items():
        assert issubclass(cls, msgspec.Struct)
        assert section_keys()[name] == tuple(f.name for f in msgspec.structs.fields(cls))
    risk = RiskSettings()
    with pytest.raises(AttributeError):
        risk.max_leverage = Decimal(9)  # type: ignore[misc]
    changed = risk.replace(max_leverage=Decimal(2))
    assert (changed.max_leverage, risk.max_leverage) == (Decimal(2), Decimal(3))
    assert Settings().replace(risk=changed).risk is changed


def test_toml_floats_are_read_through_their_text_and_non_finite_ones_are_refused() -> None:
    raw = tomllib.loads("[risk]\nmax_leverage = 2.675\nkelly_fraction = 0.1\n")
    risk = parse_settings(raw).risk
    assert risk.max_leverage == Decimal("2.675")  # not 2.67499999999999982236431605997495353221
    assert risk.kelly_fraction == Decimal("0.1")
    for text in ("inf", "-inf", "nan"):
        err = refused(tomllib.loads(f"[risk]\nrule_timeout_s = {text}\n"))
        assert err.key == "risk.rule_timeout_s"
        assert "must be finite" in str(err)


def test_unknown_key_lists_the_known_ones_in_order() -> None:
    err = refused({"valr": {"api_kee": "x"}})
    assert err.key == "valr.api_kee"
    assert str(err) == (
        "t.toml: [valr.api_kee] unknown key; known keys of [valr]: "
        + ", ".join(ValrSettings.__struct_fields__)
    )


def test_a_table_value_names_its_own_key() -> None:
    err = refused({"paper": {"starting_balances": {"ZAR": "1", "BTC": "lots"}}})
    assert err.key == "paper.starting_balances.BTC"
    assert str(err).endswith("is not a decimal number: 'lots'")
    assert refused({"paper": {"starting_balances": {"zar": "1"}}}).key == (
        "paper.starting_balances.zar"
    )


def test_messages_show_the_value_as_written() -> None:
    err = refused({"daemon": {"log_level": "LOUD"}})
    assert str(err).endswith("got 'LOUD'")  # not the lower-cased text the decoder compared


def test_secrets_never_appear_in_errors_or_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELIOS_DECODE_TOKEN", SECRET)
    for bad in (
        {"daemon": {"http_token": {"$vault": SECRET}}},
        {"daemon": {"http_token": {"$env": "HELIOS_DECODE_TOKEN", "$file": SECRET}}},
        {"notify": {"urls": SECRET}},  # a string where a list belongs
        {"notify": {"urls": [SECRET, {"$nope": SECRET}]}},
        {"valr": {"api_key": [SECRET]}},
    ):
        err = refused(bad)
        assert SECRET not in str(err) and SECRET not in repr(err.details), bad
    token = {"$env": "HELIOS_DECODE_TOKEN"}
    settings = parse_settings({"daemon": {"http_listen": "127.0.0.1:8100", "http_token": token}})
    assert settings.daemon.http_token is not None
    assert settings.daemon.http_token.reveal() == SECRET
    assert SECRET not in repr(settings) and SECRET not in str(settings.daemon)


def test_p_helpers_speak_like_the_core_keys() -> None:
    """A plugin key is refused in the same words as a core key of the same type."""
    core = refused({"risk": {"max_leverage": True}})
    with pytest.raises(ConfigError) as plugin:
        p_decimal(True, "mine.max_zar", "t.toml")
    words = "must be a number or a decimal string, got True"
    assert str(plugin.value).partition("] ")[2] == str(core).partition("] ")[2] == words
    with pytest.raises(ConfigError, match=r"^t.toml: \[mine.pairs\[1\]\] is not a pair symbol"):
        p_pairs(["BTCZAR", "btc"], "mine.pairs", "t.toml")
    with pytest.raises(ConfigError, match=r"\[mine.n\] must be an integer, got '3'"):
        p_int("3", "mine.n", "t.toml")
    with pytest.raises(ConfigError, match=r"\[mine.days\] must be a list of strings"):
        p_strs("mo", "mine.days", "t.toml")
    with pytest.raises(ConfigError, match=r"\[mine.level\] must be one of debug, .*got 'x'"):
        p_log_level("x", "mine.level", "t.toml")
    with pytest.raises(ConfigError, match=r"\[mine.cash.USD\] must not be negative"):
        p_balances({"USD": "-2"}, "mine.cash", "t.toml")
    assert p_decimal(0.1, "k", "s") == Decimal("0.1")
    assert p_paths("~/x", "k", "s") == (Path("~/x").expanduser(),)
    assert p_http_listen("OFF", "k", "s") is None
    assert p_secret("", "k", "s") is None


def test_a_file_with_every_kind_of_error_reports_the_first_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "heliosd.toml"
    path.write_text('[engine]\ninterval_s = "soon"\n[risk]\nmax_leverage = 0\n')
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert err.value.key == "engine.interval_s"
    assert str(err.value) == f"{path}: [engine.interval_s] is not a decimal number: 'soon'"
