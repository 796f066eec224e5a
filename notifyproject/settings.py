"""Settings for the notifyproject site, read from the environment (see README, Configuration)."""

from __future__ import annotations

import os
from pathlib import Path

from notifications.setup import (
    MAX_CONNECTIONS,
    channel_layers,
    sentinel_addresses,
    sentinel_master_options,
)
from notifyproject.env import env_bool, env_list, parse_database_url

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DJANGO_DEBUG", default=True)

_DEV_SECRET_KEY = "django-insecure-notifyproject-development-only-key-do-not-deploy"  # noqa: S105
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or (_DEV_SECRET_KEY if DEBUG else "")
if not SECRET_KEY:
    raise RuntimeError("Set DJANGO_SECRET_KEY when DJANGO_DEBUG is off.")
# Rotating the key: the new one in DJANGO_SECRET_KEY, the old ones here (comma-separated).
# Sessions signed with an old key stay valid (pages re-sign them; the socket only reads them),
# so a rotation logs nobody out. Drop an old key once its sessions have expired.
SECRET_KEY_FALLBACKS = env_list("DJANGO_SECRET_KEY_FALLBACKS", [])

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "notifications",
    "notifyproject.demo",  # demo users, the benchmark, run_stack: never in the wheel
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "notifications.middleware.TimezoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "notifyproject.urls"

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

WSGI_APPLICATION = None
ASGI_APPLICATION = "notifyproject.asgi.application"

DATABASES = {
    "default": parse_database_url(
        os.environ.get("DATABASE_URL", "sqlite:///db.sqlite3"), base_dir=BASE_DIR
    )
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("DJANGO_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
SERVE_STATIC = env_bool("DJANGO_SERVE_STATIC", default=DEBUG)
STATIC_ROOT = BASE_DIR / "var" / "static"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# For rediss:// with a private CA: the CA file every Redis client should trust.
REDIS_OPTIONS = (
    {"ssl_ca_certs": os.environ["REDIS_TLS_CA_FILE"]} if os.environ.get("REDIS_TLS_CA_FILE") else {}
)

# Redis Sentinel: with REDIS_SENTINELS ("host:port,host:port") and REDIS_SENTINEL_MASTER set,
# every Redis client (the save hook's PUBLISH, the listener, the channel layer, the health
# command) asks the sentinels where the master is and follows it through a failover. REDIS_URL
# then names no server: only its password, database number and rediss:// still apply, to the
# master. One of the two without the other is notifications.E006 at start-up.
REDIS_SENTINELS = sentinel_addresses(os.environ.get("REDIS_SENTINELS", ""))
REDIS_SENTINEL_MASTER = os.environ.get("REDIS_SENTINEL_MASTER", "")
_SENTINEL = bool(REDIS_SENTINELS and REDIS_SENTINEL_MASTER)
_MASTER_OPTIONS = {**REDIS_OPTIONS, **(sentinel_master_options(REDIS_URL) if _SENTINEL else {})}

# The channel layer may be sharded over several Redis servers (groups and channels are spread
# by consistent hashing); by default it is the one at REDIS_URL, or the Sentinel master. The
# helper sets the options learned the hard way (no socket timeout on blocking reads, a large
# pool, a large capacity).
_LAYER_OPTIONS = {
    "max_connections": int(os.environ.get("REDIS_MAX_CONNECTIONS", MAX_CONNECTIONS)),
    "prefix": os.environ.get("CHANNELS_PREFIX", "asgi"),
}
if _SENTINEL and not os.environ.get("CHANNEL_LAYER_URLS"):
    CHANNEL_LAYERS = channel_layers(
        sentinels=REDIS_SENTINELS,
        master_name=REDIS_SENTINEL_MASTER,
        options=_MASTER_OPTIONS,
        **_LAYER_OPTIONS,
    )
else:
    CHANNEL_LAYERS = channel_layers(
        os.environ.get("CHANNEL_LAYER_URLS", REDIS_URL), options=REDIS_OPTIONS, **_LAYER_OPTIONS
    )

NOTIFICATIONS = {
    "REDIS_URL": REDIS_URL,
    "REDIS_OPTIONS": _MASTER_OPTIONS,
    "CHANNEL": os.environ.get("NOTIFICATIONS_CHANNEL", "notifications"),
    # The inbox sits inside the demo's own layout (header, bell, account menu).
    "BASE_TEMPLATE": "base.html",
    # What users may mute or silence on /notifications/preferences/.
    "CATEGORIES": {
        "general": {"label": "General", "description": "Announcements and everything else."},
        "mentions": {"label": "Mentions", "description": "Someone mentioned you or replied."},
        "digest": {
            "label": "Weekly digest",
            "description": "A summary of the week. Off unless you switch it on.",
            "default": False,
        },
        "security": {
            "label": "Security",
            "description": "Sign-ins and account changes. Always shown.",
            "mutable": False,
        },
    },
}
if REDIS_SENTINELS or REDIS_SENTINEL_MASTER:
    NOTIFICATIONS.update(
        REDIS_SENTINELS=REDIS_SENTINELS, REDIS_SENTINEL_MASTER=REDIS_SENTINEL_MASTER
    )

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# Production (debug off) defaults to HTTPS everywhere; each can be relaxed by its variable,
# e.g. behind a proxy that already redirects.
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "0" if DEBUG else "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Only behind a proxy that sets X-Forwarded-Proto itself (and strips what clients send):
# otherwise any client could claim HTTPS. A boolean like the others, so "0" means off.
if env_bool("DJANGO_SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "notifications": {
            "handlers": ["console"],
            "level": os.environ.get("NOTIFICATIONS_LOG_LEVEL", "INFO"),
            "propagate": False,
        },
    },
}
