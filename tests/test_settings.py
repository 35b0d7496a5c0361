"""Settings: parsed once from the environment, strictly; a bad value stops startup with its name.

Before, any boolean spelling but on/true/yes/1 meant false, so `FHIRSRV_AUTH=enabled` (or
`required`, or `oui`) silently turned authorization off. These tests pin the accepted spellings,
the errors and the rule that nothing but fhirsrv/settings.py reads the environment.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from fhirsrv.cli import main
from fhirsrv.settings import DATA_DIR_VARIABLE, VARIABLES, Settings, SettingsError, metrics_networks

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "fhirsrv"
BOOLEAN_VARIABLES = ["FHIRSRV_AUTH", "FHIRSRV_HSTS", "FHIRSRV_LOAD_DEMO", "FHIRSRV_SQL_ECHO"]
FIELD_OF = {variable: name for name, variable in VARIABLES.items()}
BASE = {"FHIRSRV_DATA_DIR": "/nonexistent"}  # keeps the default database URL off the project's var/


def from_env(**variables: str) -> Settings:
    return Settings.from_env(environ={**BASE, **variables})


def test_every_boolean_variable_is_a_boolean_field() -> None:
    for variable in BOOLEAN_VARIABLES:
        assert isinstance(getattr(Settings("sqlite://"), FIELD_OF[variable]), bool)


@pytest.mark.parametrize("variable", BOOLEAN_VARIABLES)
@pytest.mark.parametrize(
    "value",
    ["enabled", "required", "oui", "non", "yes", "no", "y", "n", "2", "-1", "01", "true!", "on off", "ja"],
)
def test_a_bad_boolean_is_an_error_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        from_env(**{variable: value})
    message = str(caught.value)
    assert variable in message and repr(value) in message
    assert "on, true, 1, off, false, 0" in message


@pytest.mark.parametrize("variable", BOOLEAN_VARIABLES)
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("on", True),
        ("ON", True),
        ("true", True),
        ("True", True),
        (" TRUE ", True),
        ("1", True),
        ("off", False),
        ("Off", False),
        ("false", False),
        ("\tFALSE\n", False),
        ("0", False),
    ],
)
def test_each_boolean_spelling(variable: str, value: str, expected: bool) -> None:
    assert getattr(from_env(**{variable: value}), FIELD_OF[variable]) is expected


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_variable_means_the_default(value: str) -> None:
    settings = from_env(FHIRSRV_AUTH=value, FHIRSRV_HSTS=value, FHIRSRV_TOKEN_LIFETIME=value)
    assert settings.auth is True and settings.hsts is True and settings.token_lifetime == 300


def test_defaults() -> None:
    settings = from_env()
    assert settings.auth is True
    assert settings.token_lifetime == 300 and settings.max_assertion_lifetime == 300
    assert (settings.rate_limit_anonymous, settings.rate_limit_client) == (600, 6000)
    assert settings.cors_origins == "*" and settings.hsts is True
    assert settings.enforce_sos_profiles == "non-admin"
    assert settings.load_workers is None and settings.trusted_proxies == 0
    assert settings.database_url == "sqlite:////nonexistent/fhirsrv.sqlite3"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FHIRSRV_TOKEN_LIFETIME", "5m"),
        ("FHIRSRV_MAX_COUNT", "1e3"),
        ("FHIRSRV_DEFAULT_COUNT", "twenty"),
        ("FHIRSRV_RATE_LIMIT_ANONYMOUS", "6 00"),
        ("FHIRSRV_RATE_LIMIT_CLIENT", "1.5"),
        ("FHIRSRV_LOAD_WORKERS", "many"),
        ("FHIRSRV_MAX_BODY_BYTES", "10MiB"),
        ("FHIRSRV_EXACT_TOTAL_UP_TO", "true"),
        ("FHIRSRV_TRUSTED_PROXIES", "one"),
    ],
)
def test_a_bad_number_is_an_error_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        from_env(**{variable: value})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FHIRSRV_MAX_COUNT", "0"),
        ("FHIRSRV_TOKEN_LIFETIME", "0"),
        ("FHIRSRV_RATE_LIMIT_ANONYMOUS", "-1"),
        ("FHIRSRV_LOAD_WORKERS", "-2"),
        ("FHIRSRV_TRUSTED_PROXIES", "-1"),
        # 0 would let the interpreter switch threads after every instruction it can.
        ("FHIRSRV_SWITCH_INTERVAL_MS", "0"),
    ],
)
def test_a_number_out_of_range_is_an_error(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        from_env(**{variable: value})


def test_numbers_parse() -> None:
    settings = from_env(
        FHIRSRV_LOAD_WORKERS=" 2 ",
        FHIRSRV_TRUSTED_PROXIES="2",
        FHIRSRV_RATE_LIMIT_ANONYMOUS="0",
        FHIRSRV_TOKEN_LIFETIME="120",
    )
    assert settings.load_workers == 2 and settings.trusted_proxies == 2
    assert settings.rate_limit_anonymous == 0 and settings.token_lifetime == 120


@pytest.mark.parametrize("value", ["non-admin", "all", "claimed-only", " all "])
def test_enforce_sos_profiles_values(value: str) -> None:
    assert from_env(FHIRSRV_ENFORCE_SOS_PROFILES=value).enforce_sos_profiles == value.strip()


@pytest.mark.parametrize("value", ["admins", "ALL", "none", "claimed"])
def test_enforce_sos_profiles_is_validated(value: str) -> None:
    with pytest.raises(SettingsError, match="FHIRSRV_ENFORCE_SOS_PROFILES"):
        from_env(FHIRSRV_ENFORCE_SOS_PROFILES=value)
    with pytest.raises(SettingsError, match="enforce_sos_profiles"):
        Settings.from_env(environ=BASE, enforce_sos_profiles=value)


@pytest.mark.parametrize("value", ["none", "estimate", "accurate"])
def test_default_total_values(value: str) -> None:
    assert from_env(FHIRSRV_DEFAULT_TOTAL=value).default_total == value


@pytest.mark.parametrize("value", ["exact", "Estimate", "0"])
def test_default_total_is_validated(value: str) -> None:
    with pytest.raises(SettingsError, match="FHIRSRV_DEFAULT_TOTAL"):
        from_env(FHIRSRV_DEFAULT_TOTAL=value)
    with pytest.raises(SettingsError, match="default_total"):
        Settings.from_env(environ=BASE, default_total=value)


def test_typed_overrides_win_over_the_environment() -> None:
    settings = Settings.from_env(
        environ={**BASE, "FHIRSRV_AUTH": "on", "FHIRSRV_LOAD_WORKERS": "4"},
        auth=False,
        load_workers=0,
        trusted_proxies=1,
        database_url="sqlite://",
    )
    assert settings.auth is False and settings.load_workers == 0
    assert settings.trusted_proxies == 1 and settings.database_url == "sqlite://"


def test_a_none_override_keeps_the_environment() -> None:
    """The CLI passes its unset flags as None: they must not reset what the environment says."""
    settings = Settings.from_env(environ={**BASE, "FHIRSRV_LOAD_DEMO": "off"}, load_demo=None, database_url=None)
    assert settings.load_demo is False and settings.database_url.startswith("sqlite:///")


@pytest.mark.parametrize(
    "overrides",
    [
        {"auth": "off"},
        {"auth": 0},
        {"hsts": "1"},
        {"token_lifetime": "300"},
        {"token_lifetime": True},
        {"rate_limit_client": 1.5},
        {"load_workers": "2"},
        {"trusted_proxies": "1"},
        {"cors_origins": ["*"]},
        {"content_root": "/tmp"},
    ],
    ids=repr,
)
def test_overrides_are_typed(overrides: dict[str, object]) -> None:
    (name,) = overrides
    with pytest.raises(SettingsError, match=name):
        Settings.from_env(environ=BASE, **overrides)


def test_an_unknown_override_is_an_error() -> None:
    with pytest.raises(SettingsError, match="extra"):
        Settings.from_env(environ=BASE, extra={"auth": "off"})


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(SettingsError, match="auth"):
        Settings("sqlite://", auth="required")  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="auth"):
        dataclasses.replace(Settings("sqlite://"), auth="off")


def test_settings_are_frozen() -> None:
    settings = Settings("sqlite://")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.auth = False  # type: ignore[misc]


def test_the_process_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FHIRSRV_AUTH", "oui")
    with pytest.raises(SettingsError, match="FHIRSRV_AUTH"):
        Settings.from_env()
    monkeypatch.setenv("FHIRSRV_AUTH", "Off")
    assert Settings.from_env().auth is False


def _environment_reads(path: Path) -> list[str]:
    """`os.environ`, `os.getenv`, `os.putenv`... and `from os import environ/getenv` in one file."""
    names = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in names:
            if isinstance(node.value, ast.Name) and node.value.id == "os":
                found.append(f"{path.relative_to(PACKAGE_DIR.parent)}:{node.lineno} os.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            for alias in node.names:
                if alias.name in names:
                    found.append(f"{path.relative_to(PACKAGE_DIR.parent)}:{node.lineno} from os import {alias.name}")
    return found


def test_only_settings_reads_the_environment() -> None:
    """One place parses the environment, so no knob escapes the strict parsing above."""
    reads = [
        read
        for path in sorted(PACKAGE_DIR.rglob("*.py"))
        if path != PACKAGE_DIR / "settings.py"
        for read in _environment_reads(path)
    ]
    assert not reads, "the environment is read outside fhirsrv/settings.py:\n" + "\n".join(reads)
    assert _environment_reads(PACKAGE_DIR / "settings.py"), "the check would see nothing"


@pytest.mark.parametrize(
    "command",
    [["serve", "--no-demo"], ["load", "nothing.json"], ["db", "upgrade"], ["clients", "list"], ["outbox", "deliver"]],
)
def test_a_bad_setting_stops_a_command_with_one_line(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_start(*args: object, **kwargs: object) -> None:
        raise AssertionError("the server started despite a bad setting")

    monkeypatch.setattr("waitress.serve", must_not_start)
    env = {"FHIRSRV_AUTH": "oui", "FHIRSRV_DATA_DIR": str(tmp_path), "FHIRSRV_DATABASE_URL": ""}
    result = CliRunner().invoke(main, command, env=env)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: FHIRSRV_AUTH "), result.stderr
    assert "'oui'" in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "fhirsrv.sqlite3").exists()


def test_mail_defaults_leave_delivery_off() -> None:
    settings = from_env()
    assert settings.smtp_host == "" and (settings.smtp_port, settings.smtp_security) == (25, "none")
    assert settings.mail_sender == "annuaire-sos@localhost" and settings.smtp_timeout == 10
    assert (settings.mail_retry_base_seconds, settings.mail_max_attempts) == (60, 8)


def test_mail_settings_parse() -> None:
    settings = from_env(
        FHIRSRV_SMTP_HOST="smtp.example.org",
        FHIRSRV_SMTP_PORT="465",
        FHIRSRV_SMTP_SECURITY="tls",
        FHIRSRV_SMTP_USER="annuaire",
        FHIRSRV_SMTP_PASSWORD="pw",
        FHIRSRV_MAIL_SENDER="annuaire-sos@sos.example.org",
        FHIRSRV_SMTP_TIMEOUT="30",
        FHIRSRV_MAIL_RETRY_BASE_SECONDS="120",
        FHIRSRV_MAIL_MAX_ATTEMPTS="3",
    )
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_security) == ("smtp.example.org", 465, "tls")
    assert (settings.smtp_user, settings.smtp_password, settings.smtp_timeout) == ("annuaire", "pw", 30)
    assert settings.mail_sender == "annuaire-sos@sos.example.org"
    assert (settings.mail_retry_base_seconds, settings.mail_max_attempts) == (120, 3)


def test_the_smtp_password_is_not_in_the_repr() -> None:
    assert "hunter2" not in repr(from_env(FHIRSRV_SMTP_PASSWORD="hunter2"))


@pytest.mark.parametrize("value", ["ssl", "STARTTLS", "on", "true"])
def test_smtp_security_is_validated(value: str) -> None:
    with pytest.raises(SettingsError, match="FHIRSRV_SMTP_SECURITY.*none, starttls, tls"):
        from_env(FHIRSRV_SMTP_SECURITY=value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FHIRSRV_SMTP_PORT", "0"),
        ("FHIRSRV_SMTP_PORT", "65536"),
        ("FHIRSRV_SMTP_PORT", "smtp"),
        ("FHIRSRV_SMTP_TIMEOUT", "0"),
        ("FHIRSRV_MAIL_RETRY_BASE_SECONDS", "0"),
        ("FHIRSRV_MAIL_MAX_ATTEMPTS", "0"),
    ],
)
def test_mail_numbers_out_of_range_are_errors(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        from_env(**{variable: value})


def test_database_timeouts_parse_and_default() -> None:
    assert (from_env().db_connect_timeout, from_env().db_statement_timeout, from_env().db_pool_timeout) == (
        10,
        30,
        10,
    )
    settings = from_env(
        FHIRSRV_DB_CONNECT_TIMEOUT="3", FHIRSRV_DB_STATEMENT_TIMEOUT="0", FHIRSRV_DB_POOL_TIMEOUT="5"
    )
    assert (settings.db_connect_timeout, settings.db_statement_timeout, settings.db_pool_timeout) == (3, 0, 5)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        # 0 would be "wait forever": what the timeouts are there to prevent.
        ("FHIRSRV_DB_CONNECT_TIMEOUT", "0"),
        ("FHIRSRV_DB_POOL_TIMEOUT", "0"),
        ("FHIRSRV_DB_STATEMENT_TIMEOUT", "-1"),
        ("FHIRSRV_DB_STATEMENT_TIMEOUT", "30s"),
    ],
)
def test_database_timeouts_out_of_range_are_errors(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        from_env(**{variable: value})


def test_the_readme_settings_table_names_every_variable_and_no_other() -> None:
    """One table documents every FHIRSRV_* variable the server reads (README, "Settings")."""
    readme = (PACKAGE_DIR.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Settings (environment)", 1)[1].split("\n#", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    documented = {name for cell in rows for name in re.findall(r"`((?:FHIRSRV|PROMETHEUS)_[A-Z0-9_]+)`", cell)}
    read = set(VARIABLES.values()) | {DATA_DIR_VARIABLE}
    assert documented == read, {"undocumented": sorted(read - documented), "unknown": sorted(documented - read)}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FHIRSRV_METRICS_ALLOW", "10.0.0.0/8, localhost"),
        ("FHIRSRV_METRICS_ALLOW", "10.0.0.300/8"),
        ("FHIRSRV_METRICS_TOKEN", "short"),  # guessable: /metrics does not slow down guesses
        ("FHIRSRV_LOG_FORMAT", "xml"),
    ],
)
def test_observability_settings_that_cannot_be_used_are_errors(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        from_env(**{variable: value})


def test_observability_settings() -> None:
    settings = from_env(
        FHIRSRV_METRICS_ALLOW=" 10.0.0.0/8 , ::1 ,", FHIRSRV_METRICS_TOKEN="0123456789abcdef", FHIRSRV_LOG_FORMAT="text"
    )
    assert (settings.metrics_allow, settings.log_format) == ("10.0.0.0/8 , ::1 ,", "text")
    assert [str(n) for n in metrics_networks(settings.metrics_allow)] == ["10.0.0.0/8", "::1/128"]
    assert "0123456789abcdef" not in repr(settings)
    assert from_env().log_format == "json" and from_env().metrics_token == ""


def test_workers_default_to_one_process_and_parse() -> None:
    assert from_env().workers == 1
    assert from_env(FHIRSRV_WORKERS="4").workers == 4


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_a_bad_worker_count_is_an_error(value: str) -> None:
    with pytest.raises(SettingsError, match="FHIRSRV_WORKERS"):
        from_env(FHIRSRV_WORKERS=value)


def test_export_settings_default_and_parse() -> None:
    settings = from_env()
    assert settings.export_dir == Path("/nonexistent/exports")  # beside the data directory's database
    assert (settings.export_ttl_seconds, settings.export_anonymous, settings.export_file_lines) == (86_400, False, 100_000)
    settings = from_env(
        FHIRSRV_EXPORT_DIR="/srv/exports",
        FHIRSRV_EXPORT_TTL_SECONDS="3600",
        FHIRSRV_EXPORT_ANONYMOUS="on",
        FHIRSRV_EXPORT_FILE_LINES="5000",
    )
    assert settings.export_dir == Path("/srv/exports") and settings.export_ttl_seconds == 3600
    assert settings.export_anonymous is True and settings.export_file_lines == 5000


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        # Files expired before a client could fetch them; files of no line at all.
        ("FHIRSRV_EXPORT_TTL_SECONDS", "0"),
        ("FHIRSRV_EXPORT_TTL_SECONDS", "1d"),
        ("FHIRSRV_EXPORT_FILE_LINES", "0"),
        ("FHIRSRV_EXPORT_ANONYMOUS", "public"),
    ],
)
def test_export_settings_that_cannot_be_used_are_errors(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        from_env(**{variable: value})
