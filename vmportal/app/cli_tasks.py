"""``vmportal worker``, ``vmportal beat``, ``vmportal redrive`` and ``vmportal sync``."""

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
        from vmportal.app.worker import app as celery

        argv = ["worker", f"--concurrency={concurrency}", f"--loglevel={loglevel}", "--without-gossip"]
        if hostname:
            argv.append(f"--hostname={hostname}")
        celery.worker_main(argv)

    @app.command()
    def beat(loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO") -> None:
        """Run Celery beat: outbox re-drive, inventory sync, deadline reminders, audit check."""
        from vmportal.app.worker import app as celery
        from vmportal.kit.settings import get_settings

        # Beat's own bookkeeping (last run of each entry) lives with the portal's other state.
        data_dir = get_settings().data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        schedule = data_dir / "celerybeat-schedule"
        celery.start(["beat", f"--loglevel={loglevel}", f"--schedule={schedule}"])

    @app.command()
    def redrive(
        older_than: Annotated[
            float | None,
            typer.Option(
                min=0,
                help="Only tasks waiting longer than this many seconds "
                "(default VMPORTAL_OUTBOX_REDRIVE_SECONDS; 0 sends every unfinished task now).",
            ),
        ] = None,
    ) -> None:
        """Send again the tasks a crash or a broker outage kept from the workers (beat does this
        every half re-drive period; use this after restoring the broker to not wait for it)."""
        from datetime import timedelta

        from vmportal.app import (
            registry,  # noqa: F401  (in-process modes run the tasks here)
            startup,
        )
        from vmportal.jobs import outbox
        from vmportal.kit.settings import get_settings

        settings = get_settings()
        startup.prepare(settings, migrate=False, seed=False)
        sent = outbox.redrive(None if older_than is None else timedelta(seconds=older_than))
        if settings.effective_task_mode != "celery":
            outbox.wait_idle(timeout=settings.task_time_limit)  # they run in this process
        typer.echo(f"re-sent {sent} task(s)")

    @app.command()
    def sync(
        connection_id: Annotated[int | None, typer.Option(help="Only this connection.")] = None,
    ) -> None:
        """Reconcile the portal with every hypervisor now (drift, missing and unregistered VMs)."""
        from vmportal.app import startup
        from vmportal.inventory import service
        from vmportal.kit.settings import get_settings

        startup.prepare(get_settings(), migrate=False, seed=False)
        reports = service.sync_all(connection_id=connection_id)
        for report in reports:
            typer.echo(json.dumps(report.as_dict(), ensure_ascii=False))
        if any(r.error for r in reports):
            raise typer.Exit(1)
