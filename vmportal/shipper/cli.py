"""``vmportal ship``: the command that runs the shipper on a sensor host.

The project's command line adds it with :func:`register` (the ``EXTENSIONS`` list of the ``vmportal``
CLI); ``python -m vmportal.shipper`` runs the same command on its own.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from vmportal.shipper.config import SECRET_ENV, TOKEN_ENV, ConfigError, load
from vmportal.shipper.formats import LogFormat
from vmportal.shipper.runner import run
from vmportal.shipper.state import StateError

log = logging.getLogger("vmportal.shipper")


def ship(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML file with the settings below (keys as named).")
    ] = None,
    file: Annotated[
        Path | None, typer.Option(help="The log to follow (eve.json, notice.log, alerts.json).")
    ] = None,
    format: Annotated[LogFormat | None, typer.Option("--format", help="What the log is.")] = None,
    portal: Annotated[
        str | None, typer.Option(help="The portal's URL, e.g. https://vmportal.example.edu.cn.")
    ] = None,
    source: Annotated[str | None, typer.Option(help="The alert source's name in the portal.")] = None,
    secret_file: Annotated[
        Path | None, typer.Option(help=f"File holding the source's signing secret (or ${SECRET_ENV}).")
    ] = None,
    token_file: Annotated[
        Path | None, typer.Option(help=f"File holding the source's bearer token (or ${TOKEN_ENV}).")
    ] = None,
    state_file: Annotated[
        Path | None,
        typer.Option(help="Where the position is kept (default /var/lib/vmportal-ship/<source>.state)."),
    ] = None,
    dead_letter: Annotated[
        Path | None, typer.Option(help="Where refused lines go (default <state>.dead-letter.ndjson).")
    ] = None,
    batch_records: Annotated[int | None, typer.Option(min=1, help="Records per post at most (500).")] = None,
    batch_bytes: Annotated[
        int | None, typer.Option(min=1024, help="Bytes per post at most (262144).")
    ] = None,
    min_level: Annotated[
        int | None, typer.Option(min=0, max=16, help="Wazuh: lowest rule.level posted.")
    ] = None,
    from_end: Annotated[
        bool, typer.Option("--from-end", help="First start: skip what the file already holds.")
    ] = False,
    ca_file: Annotated[Path | None, typer.Option(help="CA bundle for the portal's certificate.")] = None,
    once: Annotated[bool, typer.Option("--once", help="Exit once the file is shipped to its end.")] = False,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Follow a Suricata, Zeek or Wazuh log and post its alerts to the portal, signed, in batches.

    跟踪 Suricata / Zeek / Wazuh 日志，将其中的告警分批签名推送到平台；断点续传，不丢不重。
    """
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = load(
            config,
            {
                "file": file,
                "format": format.value if format else None,
                "portal": portal,
                "source": source,
                "secret_file": secret_file,
                "token_file": token_file,
                "state_file": state_file,
                "dead_letter": dead_letter,
                "batch_records": batch_records,
                "batch_bytes": batch_bytes,
                "min_level": min_level,
                # A flag not given leaves the TOML file's value alone (None is "not set").
                "start_at_end": from_end or None,
                "ca_file": ca_file,
                "once": once or None,
            },
        )
    except ConfigError as exc:
        typer.secho(f"配置错误 / configuration error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None

    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info(
            "收到信号 %s，完成当前批次后停止 / signal %s: stopping after the batch in flight", signum, signum
        )
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        run(settings, stop)
    except (StateError, PermissionError) as exc:
        typer.secho(str(exc), err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def register(app: typer.Typer) -> None:
    """Add ``ship`` to the ``vmportal`` command line."""
    app.command("ship")(ship)


def main() -> None:
    app = typer.Typer(add_completion=False)
    app.command()(ship)
    app()
