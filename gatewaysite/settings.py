"""Settings of codex-gateway.

Every environment variable is read here and nowhere else (see ../shared/spec/contract.md,
"Configuration"). Defaults run a development gateway on SQLite; bad values raise
ImproperlyConfigured at start rather than misbehave later.
"""
from __future__ import annotations

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from bridge.ratelimit import parse_rate  # pure: importing it here loads no Django app

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

# --- gateway ---------------------------------------------------------------------------
GATEWAY_ALLOW_ANONYMOUS = env.bool("GATEWAY_ALLOW_ANONYMOUS", default=False)
GATEWAY_MAX_BODY_BYTES = _size("GATEWAY_MAX_BODY_BYTES", 16 * 1024 * 1024)
GATEWAY_RATE_LIMIT = env.str("GATEWAY_RATE_LIMIT", default="")
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
UPSTREAM_BASE_URL = env.str("UPSTREAM_BASE_URL", default="")
UPSTREAM_SUPPORTS_RESPONSES = env.bool("UPSTREAM_SUPPORTS_RESPONSES", default=False)
UPSTREAM_API_KEY = env.str("UPSTREAM_API_KEY", default="")
REDIS_URL = env.str("REDIS_URL", default="")

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
    "bridge",
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
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                  "CONFIG": {"hosts": [REDIS_URL]}}}
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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # httpx logs every request line at INFO, including URLs: keep it quiet.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}
