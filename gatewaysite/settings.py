"""Settings of codex-gateway.

Every environment variable is read here and nowhere else (the README's
"Configuration" lists them). Defaults run a development gateway on SQLite; bad values raise
ImproperlyConfigured at start rather than misbehave later.
"""
from __future__ import annotations

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from plumbing.ratelimit import parse_rate  # pure: importing it here loads no Django app
from upstreams.crypto import parse_keys  # pure too

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def _size(name: str, default: int) -> int:
    """Read a byte size such as ``16777216``, ``512k`` or ``16m``."""
    raw = env.str(name, default=str(default)).strip().lower()
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    try:
        if raw and raw[-1] in units:
            return int(float(raw[:-1]) * units[raw[-1]])
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a byte count like 16m, got {raw!r}") from None


DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is false")
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# HTTPS, for `manage.py check --deploy` (README: "Running in production"). Behind a TLS
# proxy set GATEWAY_BEHIND_TLS_PROXY=true so X-Forwarded-Proto: https counts as secure.
if env.bool("GATEWAY_BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]  # probes from inside the network
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)

# --- gateway ---------------------------------------------------------------------------
GATEWAY_ALLOW_ANONYMOUS = env.bool("GATEWAY_ALLOW_ANONYMOUS", default=False)
# Start under daphne, Twisted or autobahn versions other than those the gateway's patches were
# tested with (plumbing/patches/: refused by default, naming them).
GATEWAY_ALLOW_UNTESTED_SERVER = env.bool("GATEWAY_ALLOW_UNTESTED_SERVER", default=False)
GATEWAY_MAX_BODY_BYTES = _size("GATEWAY_MAX_BODY_BYTES", 16 * 1024 * 1024)
# The audit journal (logs/audit/journal.py): a local directory, one journal per process, kept across
# restarts (a dead process's rows are written by the next one to start). Empty: no journal.
GATEWAY_JOURNAL_DIR = env.str("GATEWAY_JOURNAL_DIR", default=str(BASE_DIR / ".gateway" / "journal"))
# Audit rows waiting for the database that are kept in memory; past this, in the journal only.
GATEWAY_AUDIT_MEMORY_ROWS = env.int("GATEWAY_AUDIT_MEMORY_ROWS", default=10_000)
# Seconds a connection has to deliver a request's complete headers, from its first byte (0: no deadline).
GATEWAY_HEADER_TIMEOUT = env.float("GATEWAY_HEADER_TIMEOUT", default=10.0)
GATEWAY_RATE_LIMIT = env.str("GATEWAY_RATE_LIMIT", default="")
# Seconds the last good routing copy (keys, upstreams) keeps serving while the database is away.
GATEWAY_ROUTING_STALE_MAX = env.float("GATEWAY_ROUTING_STALE_MAX", default=300.0)
# Bad client keys an address may send per minute before its unknown keys get 429 (0: no limit).
GATEWAY_AUTH_FAILURES_PER_MINUTE = env.int("GATEWAY_AUTH_FAILURES_PER_MINUTE", default=30)
try:
    parse_rate(GATEWAY_RATE_LIMIT)
except ValueError as exc:
    raise ImproperlyConfigured(f"GATEWAY_RATE_LIMIT: {exc}") from None
# Failover: how many upstreams one request may try before the first byte, and when a
# failing upstream is skipped (COOLDOWN_AFTER failures in a row -> COOLDOWN_SECONDS off).
GATEWAY_MAX_ATTEMPTS = env.int("GATEWAY_MAX_ATTEMPTS", default=3)
GATEWAY_COOLDOWN_AFTER = env.int("GATEWAY_COOLDOWN_AFTER", default=3)
GATEWAY_COOLDOWN_SECONDS = env.int("GATEWAY_COOLDOWN_SECONDS", default=30)
GATEWAY_LOG_BODIES = env.bool("GATEWAY_LOG_BODIES", default=False)
# Seconds an upstream may be silent mid-answer before the client is sent a heartbeat: a
# response.in_progress on a Responses stream, an SSE comment on a relayed one (api/http/app.py).
# Codex gives up after stream_idle_timeout_ms (300 s) without an event. 0: none.
GATEWAY_STREAM_HEARTBEAT = env.float("GATEWAY_STREAM_HEARTBEAT", default=10.0)
if GATEWAY_STREAM_HEARTBEAT < 0:
    raise ImproperlyConfigured(f"GATEWAY_STREAM_HEARTBEAT must be >= 0 seconds, got {GATEWAY_STREAM_HEARTBEAT}")
# A Responses WebSocket is told websocket_connection_limit_reached past this age (seconds), as
# the OpenAI API does after 60 minutes; Codex then opens a new one.
GATEWAY_WEBSOCKET_MAX_AGE = env.float("GATEWAY_WEBSOCKET_MAX_AGE", default=3600.0)
# The flight recorder (logs/recording/recorder.py) keeps at most this much of each part of an exchange.
GATEWAY_RECORDING_MAX_BYTES = _size("GATEWAY_RECORDING_MAX_BYTES", 4 * 1024 * 1024)
# Request log retention: `manage.py prunelogs` without --older-than deletes older rows; 0 keeps all.
GATEWAY_LOG_RETENTION_DAYS = env.int("GATEWAY_LOG_RETENTION_DAYS", default=30)
if GATEWAY_LOG_RETENTION_DAYS < 0:
    raise ImproperlyConfigured(f"GATEWAY_LOG_RETENTION_DAYS must be >= 0, got {GATEWAY_LOG_RETENTION_DAYS}")
# Stored responses (store: true, the API's default): what prunelogs keeps of them; 0 keeps all.
GATEWAY_RESPONSE_RETENTION_DAYS = env.int("GATEWAY_RESPONSE_RETENTION_DAYS", default=30)
if GATEWAY_RESPONSE_RETENTION_DAYS < 0:
    raise ImproperlyConfigured(f"GATEWAY_RESPONSE_RETENTION_DAYS must be >= 0, got {GATEWAY_RESPONSE_RETENTION_DAYS}")
# Set: /metrics answers only scrapers that send 'Authorization: Bearer <this>'. Unset: open.
GATEWAY_METRICS_TOKEN = env.str("GATEWAY_METRICS_TOKEN", default="")
# Seconds between a process's heartbeats for its background responses; one three beats old
# has lost its process and is marked failed (api/background/).
GATEWAY_BACKGROUND_HEARTBEAT = env.float("GATEWAY_BACKGROUND_HEARTBEAT", default=10.0)
if GATEWAY_BACKGROUND_HEARTBEAT <= 0:
    raise ImproperlyConfigured(f"GATEWAY_BACKGROUND_HEARTBEAT must be > 0, got {GATEWAY_BACKGROUND_HEARTBEAT}")
# Upstream API keys at rest: comma-separated Fernet keys, the first encrypts, all decrypt
# (README "Secrets": rotation). The key derived from SECRET_KEY is always last.
try:
    GATEWAY_ENCRYPTION_KEYS = parse_keys(env.str("GATEWAY_ENCRYPTION_KEY", default=""), SECRET_KEY)
except ValueError as exc:
    raise ImproperlyConfigured(f"GATEWAY_ENCRYPTION_KEY: {exc}") from None
# SIGTERM: seconds in-flight requests get to finish before they are cut (plumbing/shutdown.py).
GATEWAY_SHUTDOWN_GRACE = env.float("GATEWAY_SHUTDOWN_GRACE", default=30.0)
if GATEWAY_SHUTDOWN_GRACE < 0:
    raise ImproperlyConfigured(f"GATEWAY_SHUTDOWN_GRACE must be >= 0 seconds, got {GATEWAY_SHUTDOWN_GRACE}")
# Seconds a process keeps the enabled upstreams (and the keys it has seen) in memory
# between two reads; edits made in the same process apply at once (upstreams/routing.py).
# 0 reads them from the database on every request.
GATEWAY_ROUTING_TTL = env.float("GATEWAY_ROUTING_TTL", default=1.0)
if GATEWAY_ROUTING_TTL < 0:
    raise ImproperlyConfigured(f"GATEWAY_ROUTING_TTL must be >= 0 seconds, got {GATEWAY_ROUTING_TTL}")
# Budgets (api/budgets/): the output tokens held for a request that sets no max_output_tokens
# (a key may say otherwise), how long a hold outlives a process that died holding it, how
# often a process re-reads the spent totals from the database while Redis is away, and the
# clock periods are read by (a dotted path to a function returning unix seconds; tests set it).
GATEWAY_BUDGET_RESERVE = env.int("GATEWAY_BUDGET_RESERVE", default=4096)
GATEWAY_BUDGET_HOLD = env.float("GATEWAY_BUDGET_HOLD", default=900.0)
GATEWAY_BUDGET_REFRESH = env.float("GATEWAY_BUDGET_REFRESH", default=5.0)
GATEWAY_BUDGET_CLOCK = env.str("GATEWAY_BUDGET_CLOCK", default="time.time")
if GATEWAY_BUDGET_RESERVE < 0 or GATEWAY_BUDGET_HOLD <= 0 or GATEWAY_BUDGET_REFRESH <= 0:
    raise ImproperlyConfigured("GATEWAY_BUDGET_RESERVE must be >= 0, GATEWAY_BUDGET_HOLD and "
                               "GATEWAY_BUDGET_REFRESH > 0 seconds")
UPSTREAM_BASE_URL = env.str("UPSTREAM_BASE_URL", default="")
# What the bootstrap upstream speaks: chat, responses or anthropic. UPSTREAM_SUPPORTS_RESPONSES=true,
# the older switch, still means responses when UPSTREAM_API is not set.
UPSTREAM_API = env.str("UPSTREAM_API", default="responses" if env.bool("UPSTREAM_SUPPORTS_RESPONSES", default=False)
                       else "chat")
if UPSTREAM_API not in ("chat", "responses", "anthropic"):
    raise ImproperlyConfigured(f"UPSTREAM_API must be chat, responses or anthropic, got {UPSTREAM_API!r}")
UPSTREAM_API_KEY = env.str("UPSTREAM_API_KEY", default="")
REDIS_URL = env.str("REDIS_URL", default="")
GATEWAY_REDIS_TIMEOUT = env.float("GATEWAY_REDIS_TIMEOUT", default=0.1)  # seconds, for each cache call

# Django reads the whole body before a view runs; this makes it refuse larger ones.
DATA_UPLOAD_MAX_MEMORY_SIZE = GATEWAY_MAX_BODY_BYTES

# --- Django ----------------------------------------------------------------------------
INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "upstreams",
    "state",
    "logs",
    "api",  # no models: its management commands (replay, exportfixture)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "gatewaysite.urls"
# The request log UI (/logs/) has no login page of its own: staff sign in through the admin's.
LOGIN_URL = "admin:login"
ASGI_APPLICATION = "gatewaysite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
# Django's default (close after each request) is right under ASGI, where each request's
# ORM calls get a thread of their own. The API's hot path keeps its connections in its own
# threads instead (plumbing/dbthread.py).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the server write audit rows while staff read them; IMMEDIATE avoids
    # "database is locked" when two writers upgrade their locks at once.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
         "transaction_mode": "IMMEDIATE", "timeout": 20}
    )
    # Tests start real servers in other processes: they need a file, not :memory:; one
    # per test run, so two runs on one checkout do not delete each other's database.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f".test-db-{os.getpid()}.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if REDIS_URL:
    # Short timeouts: a frozen Redis costs one request at most this long per breaker
    # interval (plumbing/sharedstate.py), never redis-py's seconds for every request.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                          "OPTIONS": {"socket_timeout": GATEWAY_REDIS_TIMEOUT,
                                      "socket_connect_timeout": GATEWAY_REDIS_TIMEOUT}}}
    # A receive blocks on Redis for 5 s (channels_redis's BRPOP); redis-py's own read timeout
    # must outlast it, or every idle receive ends in a TimeoutError.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                  "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}]}}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, got {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
                   "json": {"()": "plumbing.logformat.JsonFormatter"}},
    # Every record reaches this one handler, and its filter scrubs keys and Authorization values.
    "filters": {"redact": {"()": "plumbing.redact.RedactingFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["redact"]}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Django's default handlers on "django" (console when DEBUG, mail when not) would
        # bypass the redacting filter: send its records to the root handler instead.
        "django": {"handlers": [], "propagate": True},
        # httpx logs every request line at INFO, including URLs: keep it quiet.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}
