"""Django settings of the CAS test server; everything run-specific comes from ``run.json``."""

import json
import os
from pathlib import Path

RUN_DIR = Path(os.environ["VMPORTAL_CAS_RUN_DIR"])
RUN = json.loads((RUN_DIR / "run.json").read_text(encoding="utf-8"))

SECRET_KEY = RUN["secret_key"]
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "cas_server",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "cas_urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(RUN_DIR / "cas.sqlite3"),
        "OPTIONS": {"timeout": 20},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

LANGUAGE_CODE = "zh-hans"
TIME_ZONE = "Asia/Shanghai"
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"

# The portal under test runs on the same host (127.0.0.1, another port) and cookies ignore the
# port: names of the CAS server's own keep a browser-like client from mixing the two sessions.
SESSION_COOKIE_NAME = "cas_sessionid"
CSRF_COOKIE_NAME = "cas_csrftoken"
LANGUAGE_COOKIE_NAME = "cas_language"

PASSWORD_HASHERS = ["campus_hashers.CampusPBKDF2PasswordHasher"]

CAS_AUTH_CLASS = "campus_auth.CampusUser"
CAMPUS_USERS_FILE = RUN_DIR / "users.json"
# The stock pages would ask PyPI for a newer release on every login: no network in tests.
CAS_NEW_VERSION_HTML_WARNING = False
CAS_NEW_VERSION_EMAIL_WARNING = False
CAS_SHOW_POWERED = False
CAS_SHOW_SERVICE_MESSAGES = False
CAS_INFO_MESSAGES_ORDER: list[str] = []
CAS_TICKET_VALIDITY = int(RUN.get("ticket_validity", 60))
CAS_SLO_TIMEOUT = 5

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "cas_server": {"handlers": ["stderr"], "level": "INFO"},
        "django.request": {"handlers": ["stderr"], "level": "WARNING"},
        "waitress": {"handlers": ["stderr"], "level": "INFO"},
    },
}
