"""``vmportal worker``, ``vmportal beat`` and ``vmportal sync``."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def worker(
        concurrency: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 2,
        loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
        hostname: Annotated[str | None, typer.Option(help="Worker node name.")] = None,
    ) -> None:
        """Run a Celery worker (production: needs VMPORTAL_BROKER_URL)."""
        from vmportal.worker import app as celery

        argv = ["worker", f"--concurrency={concurrency}", f"--loglevel={loglevel}", "--without-gossip"]
        if hostname:
            argv.append(f"--hostname={hostname}")
        celery.worker_main(argv)

    @app.command()
    def beat(loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO") -> None:
        """Run Celery beat: outbox re-drive, inventory sync, deadline reminders, audit check."""
        from vmportal.worker import app as celery

        celery.start(["beat", f"--loglevel={loglevel}", "--schedule=/tmp/vmportal-beat-schedule"])

    @app.command()
    def sync(
        connection_id: Annotated[int | None, typer.Option(help="Only this connection.")] = None,
    ) -> None:
        """Reconcile the portal with every hypervisor now (drift, missing and unregistered VMs)."""
        from vmportal import startup
        from vmportal.inventory import service
        from vmportal.settings import get_settings

        startup.prepare(get_settings(), migrate=False, seed=False)
        reports = service.sync_all(connection_id=connection_id)
        for report in reports:
            typer.echo(json.dumps(report.as_dict(), ensure_ascii=False))
        if any(r.error for r in reports):
            raise typer.Exit(1)
