"""Config files and config parsing: the shipped files load, errors name the key and file.

These check ConfigError itself (message, key, source), not a process exit status: the
mapping of ConfigError to exit 78 belongs to the CLI's tests.
"""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from heliosd.core.config import (
    EVENT_KINDS,
    SECTIONS,
    Secret,
    Settings,
    load_settings,
    parse_settings,
    risk_config_problems,
    section_keys,
)
from heliosd.core.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = ROOT / "etc" / "heliosd.toml"
DEMO = ROOT / "etc" / "demo.toml"

VALR_KEY = "key-0123456789abcdef"
VALR_SECRET = "secret-fedcba9876543210fedcba9876543210"


@pytest.fixture
def credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A systemd-style $CREDENTIALS_DIRECTORY holding the VALR key pair."""
    creds = tmp_path / "credentials"
    creds.mkdir(mode=0o700)
    (creds / "valr_api_key").write_text(VALR_KEY + "\n")
    (creds / "valr_api_secret").write_text(VALR_SECRET + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    return creds


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "heliosd.toml"
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- shipped files


def test_production_config_loads_with_systemd_credentials(credentials: Path) -> None:
    settings = load_settings(PRODUCTION)

    assert settings.source == str(PRODUCTION)
    assert settings.valr.api_key is not None
    assert settings.valr.api_secret is not None
    assert settings.valr.api_key.reveal() == VALR_KEY
    assert settings.valr.api_secret.reveal() == VALR_SECRET
    assert settings.valr.api_key.origin == "$credential:valr_api_key"
    assert VALR_KEY not in repr(settings)
    assert VALR_SECRET not in repr(settings)
    # As shipped, the only thing keeping it from LIVE is the notification URL it asks for.
    assert risk_config_problems(settings) == ["no notification URL in [notify] urls"]


def test_production_config_sets_every_key() -> None:
    with PRODUCTION.open("rb") as fh:
        raw = tomllib.load(fh)
    assert {name: set(table) for name, table in raw.items()} == {
        name: set(keys) for name, keys in section_keys().items()
    }


def test_production_config_values_are_the_documented_defaults(credentials: Path) -> None:
    """The file says "Default X" for every key; it must agree with config.py's defaults."""
    settings = load_settings(PRODUCTION)
    defaults = Settings()
    differences = {
        f"{section}.{f.name}"
        for section in SECTIONS
        for f in msgspec.structs.fields(getattr(defaults, section))
        if getattr(getattr(settings, section), f.name)
        != getattr(getattr(defaults, section), f.name)
    }
    assert differences == {"valr.api_key", "valr.api_secret"}


def test_production_config_comments_every_key() -> None:
    """Each key sits in a block of lines that carries a comment (what, unit, default)."""
    undocumented = []
    block_has_comment = False
    for line in PRODUCTION.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("["):
            block_has_comment = False
        elif stripped.startswith("#"):
            block_has_comment = True
        elif "=" in stripped and not line.startswith(" ") and not block_has_comment:
            undocumented.append(stripped.split("=")[0].strip())
    assert undocumented == []
    text = PRODUCTION.read_text()
    for key in ("$credential", "$file", "$env", "LoadCredential"):
        assert key in text


def test_demo_config_loads_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    settings = load_settings(DEMO)

    assert settings.daemon.state_dir == Path("./var")
    assert settings.daemon.control_socket == Path("./var/heliosd.sock")
    assert settings.engine.strategy == "demo"
    assert settings.valr.rest_url.startswith("http://127.0.0.1:")
    assert settings.valr.ws_url.startswith("ws://127.0.0.1:")
    assert not settings.valr.has_credentials
    assert settings.exchange.paper == "paper"


@pytest.mark.parametrize("name", ["heliosd.toml", "demo.toml"])
def test_packaged_copies_are_identical(name: str) -> None:
    assert (ROOT / "heliosd" / "etc" / name).read_bytes() == (ROOT / "etc" / name).read_bytes()


# --------------------------------------------------------------------------- sections

FULL = """
[daemon]
state_dir = "/srv/helios"
control_socket = "/srv/helios/ctl.sock"
plugin_dirs = ["/srv/helios/plugins", "~/plugins"]
log_level = "DEBUG"
http_listen = "127.0.0.1:8100"
http_token = "tok-abc"
allowed_uids = [1000, 1001]
socket_mode = "0640"
blocked_plugins = ["heliosd.builtin.demo_strategy"]
shutdown_timeout_s = 12.5

[exchange]
live = "valr"
paper = "paper"

[valr]
rest_url = "https://api.valr.com"
ws_url = "wss://api.valr.com"
api_key = "k"
api_secret = "s"
subaccount_id = "1234567890"
pairs = ["BTCZAR", "SOLZAR"]
refuse_withdraw_permission = true
max_clock_skew_s = "1.5"
request_timeout_s = 7
label = "VALR main"

[paper]
starting_balances = { ZAR = "250000.50", BTC = 0.1 }
maker_fee_pct = -0.01
taker_fee_pct = "0.1"
slippage_pct = 0.2

[risk]
reference_currency = "USDC"
max_position_pct = 25
max_leverage = 2.5
daily_loss_pct = 4
max_drawdown_pct = 12
timezone = "UTC"
enforce_in_paper = false
flatten_on_emergency_stop = true
kelly_fraction = 0.25
rule_timeout_s = 0.2
gate_timeout_s = 5

[notify]
urls = ["json://localhost/hook"]
events = ["halt", "emergency_stop"]
paper_trades = true
max_attempts = 3
timeout_s = 2

[engine]
strategy = "demo"
pairs = ["BTCZAR"]
interval_s = 0.5
autostart = true
"""


def test_every_section_parses_into_typed_values(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, FULL))

    d = s.daemon
    assert d.state_dir == Path("/srv/helios")
    assert d.db_path == Path("/srv/helios/heliosd.db")
    assert d.plugin_dirs == (Path("/srv/helios/plugins"), Path("~/plugins").expanduser())
    assert d.log_level == "debug"
    assert d.http_listen == "127.0.0.1:8100"
    assert d.http_token == Secret("tok-abc")
    assert d.allowed_uids == (1000, 1001)
    assert d.socket_mode == 0o640
    assert d.blocked_plugins == ("heliosd.builtin.demo_strategy",)
    assert d.shutdown_timeout_s == Decimal("12.5")
    assert (s.exchange.live, s.exchange.paper) == ("valr", "paper")
    v = s.valr
    assert v.subaccount_id == "1234567890"
    assert v.pairs == ("BTCZAR", "SOLZAR")
    assert v.max_clock_skew_s == Decimal("1.5")
    assert v.request_timeout_s == Decimal(7)
    assert v.label == "VALR main"
    assert v.has_credentials
    assert s.paper.starting_balances == {"ZAR": Decimal("250000.50"), "BTC": Decimal("0.1")}
    assert s.paper.maker_fee_pct == Decimal("-0.01")
    assert s.paper.taker_fee_pct == Decimal("0.1")  # read via its text: no binary noise
    assert s.paper.slippage_pct == Decimal("0.2")
    r = s.risk
    assert r.reference_currency == "USDC"
    assert (r.max_position_pct, r.max_leverage) == (Decimal(25), Decimal("2.5"))
    assert (r.daily_loss_pct, r.max_drawdown_pct) == (Decimal(4), Decimal(12))
    assert r.tz.key == "UTC"
    assert not r.enforce_in_paper
    assert r.flatten_on_emergency_stop
    assert r.kelly_fraction == Decimal("0.25")
    assert (r.rule_timeout_s, r.gate_timeout_s) == (Decimal("0.2"), Decimal(5))
    assert s.notify.urls == (Secret("json://localhost/hook"),)
    assert s.notify.events == ("halt", "emergency_stop")
    assert s.notify.paper_trades
    assert (s.notify.max_attempts, s.notify.timeout_s) == (3, Decimal(2))
    e = s.engine
    assert (e.strategy, e.pairs, e.interval_s, e.autostart) == (
        "demo",
        ("BTCZAR",),
        Decimal("0.5"),
        True,
    )
    assert "json://localhost/hook" not in repr(s)


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, ""))
    assert s.replace(source="<defaults>") == Settings()
    assert s.notify.events == EVENT_KINDS
    assert s.valr.api_key is None


def test_http_listen_off_and_empty_optionals(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, '[daemon]\nhttp_listen = "off"\n[engine]\nstrategy = ""\n'))
    assert s.daemon.http_listen is None
    assert s.engine.strategy is None


# --------------------------------------------------------------------------- errors


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[risk]\nmax_leverag = 3\n")

    with pytest.raises(ConfigError) as err:
        load_settings(path)

    assert str(err.value).startswith(f"{path}: [risk.max_leverag] unknown key")
    assert "max_leverage" in str(err.value)  # the known keys are listed
    assert err.value.key == "risk.max_leverag"
    assert err.value.source == str(path)
    assert err.value.details == {"key": "risk.max_leverag", "source": str(path)}


def test_unknown_section_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "[riks]\nmax_leverage = 3\n")
    with pytest.raises(ConfigError, match=r"\[riks\] unknown section; known sections: daemon"):
        load_settings(path)


@pytest.mark.parametrize(
    ("toml", "key", "fragment"),
    [
        ("[risk]\nmax_leverage = true", "risk.max_leverage", "must be a number"),
        ('[risk]\nmax_position_pct = "lots"', "risk.max_position_pct", "is not a decimal"),
        ("[risk]\nmax_position_pct = 0", "risk.max_position_pct", "must be above 0"),
        ("[risk]\nmax_position_pct = 101", "risk.max_position_pct", "at most 100"),
        ('[risk]\ndaily_loss_pct = "nan"', "risk.daily_loss_pct", "must be finite"),
        ('[risk]\ntimezone = "Mars/Olympus"', "risk.timezone", "unknown time zone"),
        (
            "[risk]\ndaily_loss_pct = 20\nmax_drawdown_pct = 15",
            "risk.daily_loss_pct",
            "must be below risk.max_drawdown_pct",
        ),
        ('[risk]\nreference_currency = "zar"', "risk.reference_currency", "currency code"),
        ("[risk]\nkelly_fraction = 2", "risk.kelly_fraction", "must be in (0, 1]"),
        ('[risk]\nenforce_in_paper = "yes"', "risk.enforce_in_paper", "true or false"),
        ('[daemon]\nlog_level = "loud"', "daemon.log_level", "must be one of"),
        ('[daemon]\nsocket_mode = "0666"', "daemon.socket_mode", "world bits"),
        ('[daemon]\nsocket_mode = "rw"', "daemon.socket_mode", "octal mode"),
        ('[daemon]\nhttp_listen = "0.0.0.0:8100"', "daemon.http_listen", "loopback"),
        ('[daemon]\nhttp_listen = "127.0.0.1:8100"', "daemon.http_token", "is required"),
        ('[daemon]\nallowed_uids = ["root"]', "daemon.allowed_uids[0]", "integer"),
        ("[daemon]\nplugin_dirs = 5", "daemon.plugin_dirs", "list of paths"),
        ('[valr]\npairs = ["btc-zar"]', "valr.pairs[0]", "pair symbol"),
        ('[valr]\nrest_url = "ftp://x"', "valr.rest_url", "must start with https://"),
        ('[valr]\nws_url = "https://x"', "valr.ws_url", "must start with wss://"),
        ('[valr]\napi_key = "k"', "valr.api_secret", "given together"),
        ("[valr]\nrequest_timeout_s = 0", "valr.request_timeout_s", "must be above 0"),
        ('[paper]\nstarting_balances = { ZAR = "-1" }', "paper.starting_balances.ZAR", "negative"),
        ('[paper]\nstarting_balances = "100000"', "paper.starting_balances", "must be a table"),
        ("[paper]\ntaker_fee_pct = 50", "paper.taker_fee_pct", "between -1 and 10"),
        ("[paper]\nslippage_pct = -1", "paper.slippage_pct", "must be in [0, 10)"),
        ('[notify]\nevents = ["fills"]', "notify.events[0]", "unknown event 'fills'"),
        ("[notify]\nmax_attempts = 0", "notify.max_attempts", "at least 1"),
        ("[notify]\nurls = [5]", "notify.urls[0]", "must be a string or one of"),
        ("[engine]\ninterval_s = -5", "engine.interval_s", "must be above 0"),
        ("[engine]\nautostart = 1", "engine.autostart", "true or false"),
        ("risk = 5", "risk", "must be a table"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, toml: str, key: str, fragment: str) -> None:
    path = write(tmp_path, toml + "\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert err.value.key == key
    assert f"[{key}]" in str(err.value)
    assert fragment in str(err.value)
    assert str(path) in str(err.value)


def test_invalid_toml_and_missing_file_name_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[risk\n")
    with pytest.raises(ConfigError, match="invalid TOML") as err:
        load_settings(path)
    assert err.value.source == str(path)
    with pytest.raises(ConfigError, match="file not found") as err:
        load_settings(tmp_path / "absent.toml")
    assert err.value.source == str(tmp_path / "absent.toml")


# --------------------------------------------------------------------------- secrets


def test_secret_references_are_resolved_and_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, credentials: Path
) -> None:
    monkeypatch.setenv("HELIOS_TEST_KEY", "env-key-111111")
    secret_file = tmp_path / "secret"
    secret_file.write_text("file-secret-222222\n")
    (credentials / "notify_url").write_text("tgram://bot-333333/44\n")
    path = write(
        tmp_path,
        f"""
[valr]
api_key = {{"$env" = "HELIOS_TEST_KEY"}}
api_secret = {{"$file" = "{secret_file}"}}
[notify]
urls = [{{"$credential" = "notify_url"}}, ""]
""",
    )

    settings = load_settings(path)

    assert settings.valr.api_key is not None
    assert settings.valr.api_secret is not None
    assert settings.valr.api_key.reveal() == "env-key-111111"
    assert settings.valr.api_secret.reveal() == "file-secret-222222"  # newline stripped
    assert [u.reveal() for u in settings.notify.urls] == ["tgram://bot-333333/44"]
    shown = repr(settings) + str(settings) + repr(settings.valr) + str(settings.valr.api_key)
    for value in ("env-key-111111", "file-secret-222222", "tgram://bot-333333/44"):
        assert value not in shown
    assert "$env:HELIOS_TEST_KEY" in repr(settings.valr.api_key)


def test_missing_env_var_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HELIOS_ABSENT_VAR", raising=False)
    path = write(
        tmp_path,
        '[valr]\napi_key = {"$env" = "HELIOS_ABSENT_VAR"}\napi_secret = "s"\n',
    )
    with pytest.raises(ConfigError, match="environment variable HELIOS_ABSENT_VAR is not set") as e:
        load_settings(path)
    assert e.value.key == "valr.api_key"


def test_missing_secret_file_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, f'[daemon]\nhttp_token = {{"$file" = "{tmp_path}/nope"}}\n')
    with pytest.raises(ConfigError, match=r"cannot read secret file .*nope") as err:
        load_settings(path)
    assert err.value.key == "daemon.http_token"


def test_credential_needs_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError, match="CREDENTIALS_DIRECTORY") as err:
        load_settings(PRODUCTION)
    assert err.value.key == "valr.api_key"


def test_missing_credential_is_named(credentials: Path) -> None:
    (credentials / "valr_api_secret").unlink()
    with pytest.raises(ConfigError, match="valr_api_secret") as err:
        load_settings(PRODUCTION)
    assert err.value.key == "valr.api_secret"


def test_secret_error_messages_do_not_carry_the_value(tmp_path: Path) -> None:
    path = write(
        tmp_path, '[valr]\napi_key = {"$vault" = "super-secret-value"}\napi_secret = "s"\n'
    )
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert "super-secret-value" not in str(err.value)


def test_parse_settings_from_data_names_the_source() -> None:
    with pytest.raises(ConfigError, match=r"^inline: \[engine.strategi\]"):
        parse_settings({"engine": {"strategi": "demo"}}, "inline")
