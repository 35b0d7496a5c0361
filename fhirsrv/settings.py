"""Typed settings, read once from FHIRSRV_* environment variables and overridable by CLI flags.

This is the only module of the package that reads the environment: every knob is a typed field
of one frozen `Settings`, parsed and checked when the process starts. A test can then build an
app with exactly the settings it means, without leaking state between tests, and a misspelt
value stops the server at startup instead of silently meaning something else (before, an
`FHIRSRV_AUTH=enabled` turned authorization *off*).
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from fhirsrv.canonical import DEFAULT_BASE

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# The only spellings of a boolean: anything else is a mistake worth stopping for, not "false".
BOOLEAN_WORDS: dict[str, bool] = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}
DEFAULT_TOTALS = ("none", "estimate", "accurate")
PROFILE_ENFORCEMENTS = ("non-admin", "all", "claimed-only")
# none: plain SMTP (a local relay); starttls: upgrade on the submission port; tls: implicit TLS (465).
SMTP_SECURITIES = ("none", "starttls", "tls")
# json: one JSON object a line (log collectors); text: one readable line (a developer's terminal).
LOG_FORMATS = ("json", "text")
# A metrics token shorter than this could be guessed (the endpoint is not rate-limited).
METRICS_TOKEN_MIN_LENGTH = 16

# The environment variable of each field; fields without one are set by code only.
VARIABLES: dict[str, str] = {
    "database_url": "FHIRSRV_DATABASE_URL",
    "db_connect_timeout": "FHIRSRV_DB_CONNECT_TIMEOUT",
    "db_statement_timeout": "FHIRSRV_DB_STATEMENT_TIMEOUT",
    "db_pool_timeout": "FHIRSRV_DB_POOL_TIMEOUT",
    "base_url": "FHIRSRV_BASE_URL",
    "canonical_base": "FHIRSRV_CANONICAL_BASE",
    "content_root": "FHIRSRV_CONTENT_ROOT",
    "load_demo": "FHIRSRV_LOAD_DEMO",
    "default_count": "FHIRSRV_DEFAULT_COUNT",
    "max_count": "FHIRSRV_MAX_COUNT",
    "max_body_bytes": "FHIRSRV_MAX_BODY_BYTES",
    "max_bundle_entries": "FHIRSRV_MAX_BUNDLE_ENTRIES",
    "max_query_length": "FHIRSRV_MAX_QUERY_LENGTH",
    "max_search_params": "FHIRSRV_MAX_SEARCH_PARAMS",
    "max_sort_keys": "FHIRSRV_MAX_SORT_KEYS",
    "max_chain_depth": "FHIRSRV_MAX_CHAIN_DEPTH",
    "max_filter_depth": "FHIRSRV_MAX_FILTER_DEPTH",
    "max_includes": "FHIRSRV_MAX_INCLUDES",
    "max_include_depth": "FHIRSRV_MAX_INCLUDE_DEPTH",
    "max_included": "FHIRSRV_MAX_INCLUDED",
    "max_bundle_results": "FHIRSRV_MAX_BUNDLE_RESULTS",
    "max_response_bytes": "FHIRSRV_MAX_RESPONSE_BYTES",
    "default_total": "FHIRSRV_DEFAULT_TOTAL",
    "exact_total_up_to": "FHIRSRV_EXACT_TOTAL_UP_TO",
    "sql_echo": "FHIRSRV_SQL_ECHO",
    "auth": "FHIRSRV_AUTH",
    "token_lifetime": "FHIRSRV_TOKEN_LIFETIME",
    "jwt_private_key": "FHIRSRV_JWT_PRIVATE_KEY",
    "jwt_key_file": "FHIRSRV_JWT_KEY_FILE",
    "rate_limit_anonymous": "FHIRSRV_RATE_LIMIT_ANONYMOUS",
    "rate_limit_client": "FHIRSRV_RATE_LIMIT_CLIENT",
    "cors_origins": "FHIRSRV_CORS_ORIGINS",
    "hsts": "FHIRSRV_HSTS",
    "trusted_proxies": "FHIRSRV_TRUSTED_PROXIES",
    "enforce_sos_profiles": "FHIRSRV_ENFORCE_SOS_PROFILES",
    "load_workers": "FHIRSRV_LOAD_WORKERS",
    "smtp_host": "FHIRSRV_SMTP_HOST",
    "smtp_port": "FHIRSRV_SMTP_PORT",
    "smtp_security": "FHIRSRV_SMTP_SECURITY",
    "smtp_user": "FHIRSRV_SMTP_USER",
    "smtp_password": "FHIRSRV_SMTP_PASSWORD",
    "mail_sender": "FHIRSRV_MAIL_SENDER",
    "smtp_timeout": "FHIRSRV_SMTP_TIMEOUT",
    "mail_retry_base_seconds": "FHIRSRV_MAIL_RETRY_BASE_SECONDS",
    "mail_max_attempts": "FHIRSRV_MAIL_MAX_ATTEMPTS",
    "verify_after_days": "FHIRSRV_VERIFY_AFTER_DAYS",
    "second_reminder_days": "FHIRSRV_SECOND_REMINDER_DAYS",
    "delist_after_days": "FHIRSRV_DELIST_AFTER_DAYS",
    "sweep_interval_seconds": "FHIRSRV_SWEEP_INTERVAL_SECONDS",
    "log_format": "FHIRSRV_LOG_FORMAT",
    "metrics_token": "FHIRSRV_METRICS_TOKEN",
    "metrics_allow": "FHIRSRV_METRICS_ALLOW",
    # prometheus-client's own variable (it reads it too, when first imported): set by a
    # multi-process server (granian) so that every worker's counts are added up at a scrape.
    "prometheus_multiproc_dir": "PROMETHEUS_MULTIPROC_DIR",
    "workers": "FHIRSRV_WORKERS",
    "heavy_workers": "FHIRSRV_HEAVY_WORKERS",
    "switch_interval_ms": "FHIRSRV_SWITCH_INTERVAL_MS",
    "subscription_delivery": "FHIRSRV_SUBSCRIPTION_DELIVERY",
    "subscription_poll_seconds": "FHIRSRV_SUBSCRIPTION_POLL_SECONDS",
    "subscription_timeout": "FHIRSRV_SUBSCRIPTION_TIMEOUT",
    "subscription_retry_base_seconds": "FHIRSRV_SUBSCRIPTION_RETRY_BASE_SECONDS",
    "subscription_max_retry_seconds": "FHIRSRV_SUBSCRIPTION_MAX_RETRY_SECONDS",
    "subscription_max_failures": "FHIRSRV_SUBSCRIPTION_MAX_FAILURES",
    "subscription_max_queued": "FHIRSRV_SUBSCRIPTION_MAX_QUEUED",
    "subscription_allowed_endpoints": "FHIRSRV_SUBSCRIPTION_ALLOWED_ENDPOINTS",
    "export_dir": "FHIRSRV_EXPORT_DIR",
    "export_ttl_seconds": "FHIRSRV_EXPORT_TTL_SECONDS",
    "export_anonymous": "FHIRSRV_EXPORT_ANONYMOUS",
    "export_file_lines": "FHIRSRV_EXPORT_FILE_LINES",
    "web_tile_url": "FHIRSRV_WEB_TILE_URL",
    "web_tile_attribution": "FHIRSRV_WEB_TILE_ATTRIBUTION",
}
DATA_DIR_VARIABLE = "FHIRSRV_DATA_DIR"
JWT_KEY_FILE_NAME = "jwt-signing-key.pem"
EXPORT_DIR_NAME = "exports"

# Values that would make no sense at 0 (a page of nothing, a token already expired...).
AT_LEAST_ONE = frozenset(
    {
        "default_count",
        "max_count",
        "max_body_bytes",
        "max_bundle_entries",
        "max_query_length",
        "max_search_params",
        "max_sort_keys",
        "max_chain_depth",
        "max_filter_depth",
        "max_include_depth",
        "max_included",
        "max_bundle_results",
        "max_response_bytes",
        "token_lifetime",
        "max_assertion_lifetime",
        "smtp_port",
        "verify_after_days",
        "second_reminder_days",
        "delist_after_days",
        # 0 would mean "wait forever" to smtplib, or retry in a tight loop, or never send at all.
        "smtp_timeout",
        "mail_retry_base_seconds",
        "mail_max_attempts",
        # 0 would mean "wait forever": one hanging database would hold every worker thread.
        "db_connect_timeout",
        "db_pool_timeout",
        # Processes of `fhirsrv serve`: at least the one that answers.
        "workers",
        # 0 would mark a subscription in error before any attempt, or drop every notification.
        "subscription_max_failures",
        "subscription_max_queued",
        "subscription_max_retry_seconds",
        # 0 would expire an export's files before its client could fetch them; a file of no line.
        "export_ttl_seconds",
        "export_file_lines",
    }
)
# Durations in seconds that may be fractions but not 0 (a loop without a pause, an HTTP call
# that may never wait, a retry at once forever).
POSITIVE = frozenset(
    {"subscription_poll_seconds", "subscription_timeout", "subscription_retry_base_seconds", "switch_interval_ms"}
)
# Upper bounds, where a larger value can only be a typo (and would fail later, far from its cause).
AT_MOST: dict[str, int] = {
    "smtp_port": 65535,
    # Larger values could never be used: such searches nest deeper than Python's recursion allows
    # while their SQL is built (answered 400 by search/engine.py), so a larger value is a mistake.
    "max_chain_depth": 32,
    "max_filter_depth": 64,
}
CHOICES: dict[str, tuple[str, ...]] = {
    "default_total": DEFAULT_TOTALS,
    "enforce_sos_profiles": PROFILE_ENFORCEMENTS,
    "smtp_security": SMTP_SECURITIES,
    "log_format": LOG_FORMATS,
}


class SettingsError(ValueError):
    """A setting that cannot be used as given; the message names the variable and what it accepts.

    A ValueError, so code that already guarded `int(...)` of a setting still catches it; the CLI
    turns it into a one-line error and exit code 2 instead of a traceback.
    """


def export_to_environment(settings: Settings, name: str) -> None:
    """Write one setting back to the environment, for a library that reads it there rather than
    from us (prometheus-client reads PROMETHEUS_MULTIPROC_DIR when first imported) in this
    process and the processes it forks."""
    os.environ[VARIABLES[name]] = str(getattr(settings, name))


def default_sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'fhirsrv.sqlite3'}"


@dataclass(frozen=True)
class Settings:
    database_url: str
    # Seconds to open a database connection (PostgreSQL connect_timeout) before the request
    # answers 503: a database that accepts and never answers must not hold a worker thread.
    db_connect_timeout: int = 10
    # Seconds one SQL statement may run (PostgreSQL statement_timeout, lock waits included;
    # SQLite: how long a statement waits for the database lock, its busy timeout). The request
    # then answers 503. 0: no limit. Loads, migrations and reindexing are not bounded by it.
    db_statement_timeout: int = 30
    # Seconds a request waits for a free pooled connection when all are in use, then 503.
    db_pool_timeout: int = 10
    # Public base of the FHIR API as clients see it; derived from the request when empty.
    base_url: str = ""
    canonical_base: str = DEFAULT_BASE
    content_root: Path = PROJECT_ROOT
    load_demo: bool = True
    default_count: int = 20
    max_count: int = 1000
    max_body_bytes: int = 10 * 1024 * 1024
    max_bundle_entries: int = 10_000
    max_query_length: int = 8192
    max_search_params: int = 40
    # What one search may ask for (fhirsrv/search/limits.py): sort keys, reference hops in one
    # criterion (chain links and _has levels), nesting of a _filter, _include/_revinclude
    # parameters, and their :iterate depth. A search past one is refused (400) before it runs.
    max_sort_keys: int = 5
    max_chain_depth: int = 3
    max_filter_depth: int = 6
    max_includes: int = 10
    max_include_depth: int = 3
    # Resources the includes of one page may bring in; past it the page is refused (422).
    max_included: int = 2000
    # A Bundle's reads: the page sizes of its searches plus one per read, summed (413 past it).
    max_bundle_results: int = 10_000
    # Bytes of a batch or transaction answer (422 past it); see interactions/bundle.py.
    max_response_bytes: int = 64 * 1024 * 1024
    # Bundle.total when a search does not say (_total): see search/total.py.
    default_total: str = "estimate"
    exact_total_up_to: int = 1000
    sql_echo: bool = False
    # Off leaves every read and write open: tests and a local demo only, never a deployment.
    auth: bool = True
    # Seconds; SMART Backend Services recommends at most 5 minutes for both.
    token_lifetime: int = 300
    max_assertion_lifetime: int = 300
    # PEM key signing access tokens; out of the repr, like every secret.
    jwt_private_key: str = field(default="", repr=False)
    # Without it: the key file, readable by the server's user only, generated at the first start
    # (fhirsrv/auth/keys.py says why not in the database). Default: in the data directory.
    jwt_key_file: Path = PROJECT_ROOT / "var" / JWT_KEY_FILE_NAME
    # Requests per minute; 0 disables the limit.
    rate_limit_anonymous: int = 600
    rate_limit_client: int = 6000
    cors_origins: str = "*"
    # Sends Strict-Transport-Security when the public base is https, or the request came over
    # https (directly, or as a trusted proxy says).
    hsts: bool = True
    # Reverse proxies in front of the server whose X-Forwarded-For/-Proto/-Host headers are
    # believed (werkzeug's ProxyFix, this many hops); 0: none, the headers are ignored.
    trusted_proxies: int = 0
    # When writes must conform to the SOS profile of their type (fhirsrv.wiring).
    enforce_sos_profiles: str = "non-admin"
    # Worker processes of the bulk loader; None: one per core, 0: none (all in the parent).
    load_workers: int | None = None
    # Outgoing mail of the inclusion procedure (fhirsrv/workflow/outbox.py). No host: messages
    # are still written to the outbox with their transitions, but nothing delivers them.
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_security: str = "none"
    smtp_user: str = ""
    # Out of the repr, so printing or logging the settings never shows it.
    smtp_password: str = field(default="", repr=False)
    mail_sender: str = "annuaire-sos@localhost"
    # Seconds each SMTP operation (connect, each command) may take before the attempt fails.
    smtp_timeout: int = 10
    # A failed message is retried after base, 2 x base, 4 x base... seconds (capped at 6 h),
    # and is marked failed (kept, retryable with `fhirsrv outbox retry`) after max attempts.
    mail_retry_base_seconds: int = 60
    mail_max_attempts: int = 8
    # The yearly verification (fhirsrv/workflow/sweep.py): a published entry not verified for
    # this many days is asked to verify; a second reminder comes after the second period, and
    # the entry is delisted after the third, both counted from the request.
    verify_after_days: int = 365
    second_reminder_days: int = 30
    delist_after_days: int = 61
    # Seconds between two sweeps run inside `fhirsrv serve` (0: none; run `fhirsrv sweep` from cron).
    sweep_interval_seconds: int = 0
    # How `fhirsrv serve` writes its log (fhirsrv/logformat.py): one JSON object a line, or text.
    log_format: str = "json"
    # Who may read /metrics (fhirsrv/api/metrics.py): the holder of this bearer token, or an
    # address in these comma-separated networks (CIDR). Neither set: /metrics answers 404.
    metrics_token: str = field(default="", repr=False)
    metrics_allow: str = ""
    # Where prometheus-client's worker processes keep their counts (multi-process mode); empty:
    # one process, counts in memory.
    prometheus_multiproc_dir: str = ""
    # Processes of `fhirsrv serve` (its --workers option wins): 1 is one waitress process; 2 or
    # more run under granian, and the rate limits are shared out between them (auth/hardening.py).
    workers: int = 1
    # Processes of the heavy-request pool beside them, when `workers` is 2 or more
    # (fhirsrv/heavy_pool.py): batches, operations and costly searches are answered there, so
    # that they never slow the workers' cheap requests. 0: none, each worker answers all.
    heavy_workers: int = 1
    # How long a thread of a server process may keep the interpreter's lock while another
    # waits for it (sys.setswitchinterval), in milliseconds. Python's 5 ms let one client's
    # heavy request delay every other request of its process by up to 5 ms each time it needed
    # the lock; a cheap request (/metadata, a read) then took several times its usual time
    # (README, "Limits against abuse"). Set in each server process as it starts.
    switch_interval_ms: float = 5.0
    # rest-hook Subscriptions (fhirsrv/sync/): whether `fhirsrv serve` runs their delivery loop
    # (one process of a deployment delivers at a time); how long it waits for a change when
    # it has seen none (a write in the same process wakes it at once); how long one POST to a
    # receiver may take (connecting, and each read); the first retry's delay after a failed
    # delivery, doubling up to the maximum; consecutive failures before the Subscription's
    # status becomes `error`; notifications kept per Subscription while its receiver is down
    # (the oldest are dropped past it: the receiver sees a gap in the event numbers and
    # catches up from `_history`).
    subscription_delivery: bool = True
    subscription_poll_seconds: float = 1.0
    subscription_timeout: float = 5.0
    subscription_retry_base_seconds: float = 10.0
    subscription_max_retry_seconds: int = 3600
    subscription_max_failures: int = 5
    subscription_max_queued: int = 10_000
    # Origins (scheme://host[:port], comma-separated) a Subscription may name although they
    # are plain http or reach a loopback, private or link-local address: a receiver inside the
    # deployment's own network. Every other endpoint is https to a public address.
    subscription_allowed_endpoints: str = ""
    # Bulk $export (fhirsrv/sync/): where the NDJSON files of the jobs are written (default: the
    # data directory's exports/), how long a job and its files are kept once finished, whether
    # anonymous callers may export (the public view only), and the lines of one file (a type with
    # more is split into several files).
    export_dir: Path = PROJECT_ROOT / "var" / EXPORT_DIR_NAME
    export_ttl_seconds: int = 86_400
    export_anonymous: bool = False
    export_file_lines: int = 100_000
    # The public page's map tiles (`{z}/{x}/{y}` URL template, `{s}` for subdomains): the map
    # loads them from there and the page's Content-Security-Policy allows that host. Empty: no
    # tiles, the markers over the départements' outlines only. A region with its own tile
    # server names it; tile.openstreetmap.org's policy forbids heavy use.
    web_tile_url: str = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    web_tile_attribution: str = "© OpenStreetMap contributors"

    def __post_init__(self) -> None:
        """Check every field, so an override or a direct construction is as strict as the environment."""
        for f in fields(self):
            _check_field(f.name, _KINDS[str(f.type)], getattr(self, f.name))
        metrics_networks(self.metrics_allow)
        allowed_origins(self.subscription_allowed_endpoints)
        if self.subscription_max_retry_seconds < self.subscription_retry_base_seconds:
            raise SettingsError(
                f"{VARIABLES['subscription_max_retry_seconds']} must be at least "
                f"{VARIABLES['subscription_retry_base_seconds']} ({self.subscription_retry_base_seconds})"
            )
        if self.metrics_token and len(self.metrics_token) < METRICS_TOKEN_MIN_LENGTH:
            raise SettingsError(
                f"{VARIABLES['metrics_token']} must have at least {METRICS_TOKEN_MIN_LENGTH} characters "
                "(a random string: the endpoint does not slow down guesses)"
            )

    @property
    def profiles_dir(self) -> Path:
        return self.content_root / "profiles"

    @property
    def terminology_dir(self) -> Path:
        return self.content_root / "terminology"

    @property
    def seed_dir(self) -> Path:
        return self.content_root / "seed"

    @classmethod
    def from_env(cls, *, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """The settings of `environ` (default: the process environment), then `overrides`.

        Overrides are typed values (`auth=False`, not "off"); a None override means "not given"
        (the CLI passes its unset flags so), so it never replaces the environment's value.
        """
        env = os.environ if environ is None else environ
        values = _read_environment(env)
        values.setdefault("database_url", default_sqlite_url(_data_dir(env)))
        values.setdefault("jwt_key_file", _data_dir(env) / JWT_KEY_FILE_NAME)
        values.setdefault("export_dir", _data_dir(env) / EXPORT_DIR_NAME)
        return cls(**values).overridden(**overrides)

    def overridden(self, **overrides: object) -> Settings:
        """These settings with typed `overrides` on top, checked like the rest; None changes nothing."""
        unknown = sorted(set(overrides) - {f.name for f in fields(self)})
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(unknown)}")
        given = {name: value for name, value in overrides.items() if value is not None}
        return replace(self, **given) if given else self


def metrics_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The networks of FHIRSRV_METRICS_ALLOW ("10.0.0.0/8, ::1"); a bare address is its own /32
    or /128. A value that is not a network stops the process, rather than opening nothing or
    everything."""
    networks = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            networks.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            raise SettingsError(
                f"{VARIABLES['metrics_allow']} must list networks (CIDR, comma-separated), not {part.strip()!r}"
            ) from None
    return tuple(networks)


def allowed_origins(text: str) -> frozenset[str]:
    """The origins of FHIRSRV_SUBSCRIPTION_ALLOWED_ENDPOINTS ("http://10.0.0.5:8080, https://hooks.lan"),
    each as `scheme://host:port` in lower case with the scheme's default port written out, as
    sync/endpoints.py compares them. Anything else (a path, a query, another scheme) stops the
    process: an entry that silently allowed nothing, or more than meant, would be worse."""
    from urllib.parse import urlsplit

    origins = set()
    variable = VARIABLES["subscription_allowed_endpoints"]
    for part in text.split(","):
        entry = part.strip()
        if not entry:
            continue
        try:
            url = urlsplit(entry)
            port = url.port
        except ValueError:
            raise SettingsError(f"{variable} lists origins (scheme://host[:port]), not {entry!r}") from None
        extra = url.path not in ("", "/") or url.query or url.fragment or url.username or url.password
        if url.scheme not in ("http", "https") or not url.hostname or extra:
            raise SettingsError(f"{variable} lists origins (http[s]://host[:port]), not {entry!r}")
        origins.add(origin(url.scheme, url.hostname, port))
    return frozenset(origins)


def origin(scheme: str, host: str, port: int | None) -> str:
    """`scheme://host:port`, lower case, the scheme's default port written out, an IPv6 address
    in brackets: one spelling per origin, so that two spellings of one never differ."""
    scheme = scheme.lower()
    host = host.lower().rstrip(".")
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port or (443 if scheme == 'https' else 80)}"


@dataclass(frozen=True)
class _Kind:
    """How a field of one type is checked (typed value) and parsed (environment text)."""

    expected: str
    accepts: Callable[[object], bool]
    parse: Callable[[str, str], object]


def _parse_bool(variable: str, text: str) -> bool:
    word = text.strip().lower()
    if word not in BOOLEAN_WORDS:
        accepted = ", ".join(BOOLEAN_WORDS)
        raise SettingsError(f"{variable} must be one of {accepted} (any case), not {text!r}")
    return BOOLEAN_WORDS[word]


def _parse_int(variable: str, text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise SettingsError(f"{variable} must be an integer, not {text!r}") from None


def _parse_float(variable: str, text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise SettingsError(f"{variable} must be a number, not {text!r}") from None


def _parse_str(variable: str, text: str) -> str:
    return text.strip()


def _parse_path(variable: str, text: str) -> Path:
    return Path(text.strip())


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# Keyed by the fields' annotations, which are strings here (`from __future__ import annotations`).
_KINDS: dict[str, _Kind] = {
    "bool": _Kind("true or false", lambda v: isinstance(v, bool), _parse_bool),
    "int": _Kind("an integer", _is_int, _parse_int),
    "int | None": _Kind("an integer or None", lambda v: v is None or _is_int(v), _parse_int),
    "float": _Kind("a number", lambda v: _is_int(v) or isinstance(v, float), _parse_float),
    "str": _Kind("a string", lambda v: isinstance(v, str), _parse_str),
    "Path": _Kind("a path", lambda v: isinstance(v, Path), _parse_path),
}


def _label(name: str) -> str:
    variable = VARIABLES.get(name)
    return f"{name} ({variable})" if variable else name


def _check_field(name: str, kind: _Kind, value: object) -> None:
    if not kind.accepts(value):
        raise SettingsError(f"{_label(name)} must be {kind.expected}, not {value!r}")
    if name in CHOICES and value not in CHOICES[name]:
        raise SettingsError(f"{_label(name)} must be one of {', '.join(CHOICES[name])}, not {value!r}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        minimum = 1 if name in AT_LEAST_ONE else 0
        if not math.isfinite(value) or value < minimum:
            raise SettingsError(f"{_label(name)} must be at least {minimum}, not {value!r}")
        if name in POSITIVE and value <= 0:
            raise SettingsError(f"{_label(name)} must be more than 0, not {value!r}")
        if name in AT_MOST and value > AT_MOST[name]:
            raise SettingsError(f"{_label(name)} must be at most {AT_MOST[name]}, not {value!r}")


def _read_environment(env: Mapping[str, str]) -> dict[str, object]:
    """The fields set in `env`; an empty (or blank) variable counts as unset, i.e. the default."""
    values: dict[str, object] = {}
    for f in fields(Settings):
        variable = VARIABLES.get(f.name)
        text = env.get(variable, "") if variable else ""
        if text.strip():
            values[f.name] = _KINDS[str(f.type)].parse(variable or f.name, text)
    return values


def _data_dir(env: Mapping[str, str]) -> Path:
    text = env.get(DATA_DIR_VARIABLE, "").strip()
    return Path(text) if text else PROJECT_ROOT / "var"
