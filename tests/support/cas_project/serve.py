"""Start the CAS test server: migrate, register the service pattern, serve on a free port.

Prints one JSON line (``{"port": ..., "pid": ...}``) on stdout once listening, then serves until
stdin closes (the test process ended or stopped it) or SIGTERM.
"""

import json
import os
import shutil
import sqlite3
import sys
import threading
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cas_settings")

import django

django.setup()

from cas_server.models import ReplaceAttributName, ServicePattern  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from waitress.server import create_server  # noqa: E402


def _register_services(run):
    pattern, _ = ServicePattern.objects.update_or_create(
        name="loopback services",
        defaults={
            "pos": 100,
            "pattern": run["service_pattern"],
            "single_log_out": True,
        },
    )
    pattern.attributs.all().delete()
    for name in run["released_attributes"]:
        ReplaceAttributName.objects.create(name=name, replace="", service_pattern=pattern)


def _migrate(run):
    """Migrate, starting from the cached migrated database of an earlier run when there is one.

    The cache (keyed by the test side on this project's files and the pinned requirements) saves
    the second of a fresh migration at every session start.
    """
    database = Path(settings.DATABASES["default"]["NAME"])
    template = Path(run["migrated_template"]) if run.get("migrated_template") else None
    if template is not None and template.is_file():
        shutil.copyfile(template, database)
    call_command("migrate", verbosity=0, interactive=False)
    if template is not None and not template.is_file():
        template.parent.mkdir(parents=True, exist_ok=True)
        partial = template.with_suffix(f".{os.getpid()}.partial")
        source, copy = sqlite3.connect(database), sqlite3.connect(partial)
        try:
            source.backup(copy)
        finally:
            copy.close()
            source.close()
        os.replace(partial, template)  # atomic: concurrent workers never see half a file


def _exit_when_stdin_closes():
    sys.stdin.buffer.read()
    os._exit(0)


def main():
    _migrate(settings.RUN)
    _register_services(settings.RUN)
    server = create_server(get_wsgi_application(), host="127.0.0.1", port=0, threads=4, ident="cas-test")
    threading.Thread(target=_exit_when_stdin_closes, daemon=True).start()
    print(json.dumps({"port": server.effective_port, "pid": os.getpid()}), flush=True)
    server.run()


if __name__ == "__main__":
    main()
