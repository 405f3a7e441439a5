"""The ``vmportal`` command line: run the portal, migrate, create the first admin, check the audit log.

Settings come from the environment (``VMPORTAL_*``, see the README). Commands that belong beside the
code they drive (worker, beat, sync, ship …) live in modules exposing ``register(app)``, called below.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer
from pydantic import ValidationError

from vmportal import __version__
from vmportal.app import cli_tasks
from vmportal.identity import cli as identity_cli
from vmportal.kit import crypto, db, errors
from vmportal.kit.settings import Settings, get_settings, use_settings
from vmportal.shipper import cli as ship_cli

app = typer.Typer(
    name="vmportal",
    help="VM self-service portal of the Network & Information Center (网络与信息中心虚拟机服务平台).",
    no_args_is_help=True,
    add_completion=False,
)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


def _open(settings: Settings | None = None) -> Settings:
    """Bind this process to the configured database and encryption keys."""
    settings = settings or get_settings()
    crypto.configure(settings.fernet_keys())
    db.init(settings)
    return settings


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(message, err=True, fg=typer.colors.RED)
    return typer.Exit(code)


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        typer.echo(f"vmportal {__version__}")
        raise typer.Exit(0)


# ---- serve -----------------------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (VMPORTAL_HOST).")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (VMPORTAL_PORT).")] = None,
    demo: Annotated[
        bool, typer.Option("--demo", help="Seed demo units, users and pools; print the logins.")
    ] = False,
    reload: Annotated[bool, typer.Option("--reload", help="Restart on code changes (development).")] = False,
    workers: Annotated[int, typer.Option(min=1, max=64, help="API processes (production).")] = 1,
) -> None:
    """Run the portal (API, docs and pages) with uvicorn."""
    import uvicorn

    updates: dict[str, object] = {}
    if host is not None:
        updates["host"] = host
    if port is not None:
        updates["port"] = port
    if demo:
        updates["demo"] = True
    settings = get_settings().model_copy(update=updates)
    use_settings(settings)
    # --reload runs the app in a fresh interpreter, which reads its settings from the environment.
    os.environ["VMPORTAL_HOST"] = settings.host
    os.environ["VMPORTAL_PORT"] = str(settings.port)
    if settings.demo:
        os.environ["VMPORTAL_DEMO"] = "true"
    shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
    typer.echo(
        f"vmportal {__version__}: http://{shown}:{settings.port}/  (API /api/v1, docs /docs, health /healthz)"
    )
    typer.echo(
        f"database: {settings.sqlalchemy_url if not settings.database_url else '(VMPORTAL_DATABASE_URL)'}"
    )
    if settings.demo:
        typer.echo("demo mode: demo data is seeded at start-up and its logins are printed below.")
    if workers > 1:
        # Migrate and seed once here, not racing in every worker's start-up.
        from vmportal.app import startup

        startup.prepare(settings)
        os.environ["VMPORTAL_STARTUP_PREPARED"] = "true"
    uvicorn.run(
        "vmportal.app.factory:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        reload=reload,
        workers=workers if not reload else None,
        log_level=settings.log_level.lower(),
        # uvicorn believes X-Forwarded-For from 127.0.0.1 by default, which would let anyone on the
        # host pose as any address (alert source ranges, rate limits, the audit log): only the proxies
        # the center names are believed, none by default.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=",".join(settings.trusted_proxies) or None,
        server_header=False,
    )


# ---- migrate ---------------------------------------------------------------------------------------


@app.command()
def migrate() -> None:
    """Bring the database schema to the newest migration (safe to run again)."""
    from vmportal.app import migrate as migrations

    _open()
    migrations.upgrade()
    typer.echo(f"database schema at revision {migrations.current_head()}")


# ---- create-admin ----------------------------------------------------------------------------------


@app.command("create-admin")
def create_admin(
    username: Annotated[str, typer.Argument(help="Login name: 2–64 lower-case letters, digits, . _ -")],
    password: Annotated[
        str | None, typer.Option(help="The password; prompted for (hidden) when neither this nor --generate.")
    ] = None,
    generate: Annotated[
        bool, typer.Option("--generate", help="Generate a strong password and print it once.")
    ] = False,
    display_name: Annotated[str, typer.Option(help="Name shown in the portal.")] = "",
) -> None:
    """Create a center_admin account (the first one on a fresh installation)."""
    from policies.roles import Role
    from vmportal.app import migrate as migrations
    from vmportal.audit.service import Who
    from vmportal.identity import service as identity
    from vmportal.identity.schemas import UserCreate

    if password is not None and generate:
        raise _fail("give either --password or --generate, not both", 2)
    if generate:
        password = identity.generate_password()
    elif password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    assert password is not None
    try:
        form = UserCreate(
            username=username,
            password=password,
            role=Role.CENTER_ADMIN,
            display_name=display_name or username,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _fail(f"{'.'.join(map(str, first['loc']))}: {first['msg']} (rule {first['type']})") from None
    try:
        identity.check_password_strength(form.password, username=form.username)
    except errors.InvalidField as exc:
        rule = exc.extra["fields"][0]["rule"]
        raise _fail(f"refused: {exc.message} (rule {rule})") from None
    _open()
    migrations.upgrade()
    try:
        with db.transaction() as session:
            user = identity.create_user(
                session,
                Who.system("cli:create-admin"),
                username=form.username,
                password=form.password,
                role=Role.CENTER_ADMIN,
                display_name=form.display_name,
            )
            user_id = user.id
    except errors.PortalError as exc:
        raise _fail(f"refused: {exc.message}") from None
    typer.echo(f"created center_admin '{form.username}' (user {user_id})")
    if generate:
        typer.echo(f"password (shown once): {password}")


# ---- audit -----------------------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify() -> None:
    """Walk the hash chain. Exit 0 when it holds; 1 naming the first broken link otherwise."""
    from vmportal.audit.service import verify

    _open()
    with db.transaction() as session:
        result = verify(session)
    if result.ok:
        typer.echo(f"audit chain OK: {result.checked} rows verified")
        return
    typer.echo(f"audit chain BROKEN after {result.checked} good rows")
    typer.echo(f"first broken link: row {result.broken_at} ({result.reason})")
    raise typer.Exit(1)


@audit_app.command("tail")
def audit_tail(
    lines: Annotated[int, typer.Option("-n", "--lines", min=1, max=10_000, help="How many rows.")] = 20,
) -> None:
    """Print the newest audit rows, oldest first."""
    from vmportal.audit.repository import newest_entries

    _open()
    with db.transaction() as session:
        rows = newest_entries(session, lines)
    for row in reversed(rows):
        role = f" ({row.actor_role})" if row.actor_role else ""
        unit = f" unit={row.unit_id}" if row.unit_id is not None else ""
        detail = f"  {row.detail}" if row.detail else ""
        typer.echo(
            f"#{row.id} {row.at.isoformat(timespec='seconds')} {row.actor}{role} {row.action} "
            f"{row.target_type}:{row.target_id}{unit} [{row.result}]{detail}"
        )


# ---- extensions ------------------------------------------------------------------------------------


# Commands defined beside the code they drive, added by name so the command line's dependencies read
# as plain imports.
cli_tasks.register(app)  # worker, beat, redrive, sync
ship_cli.register(app)  # ship: alerts from IDS logs to the portal
identity_cli.register(app)  # directory-sync: accounts LDAP or the CAS list no longer vouch for


@app.command()
def watch() -> None:
    """Follow every connection's changes (one watcher per connection across the cluster: a lease)."""
    import threading

    from vmportal.app import registry  # noqa: F401  (the hooks: re-containment on every change)
    from vmportal.inventory import watcher

    _open()
    stop = threading.Event()
    threads = watcher.start(stop)
    typer.echo(f"watching {len(threads)} connection(s); Ctrl-C stops")
    try:
        while any(t.is_alive() for t in threads):
            stop.wait(1.0)
    except KeyboardInterrupt:
        stop.set()


if __name__ == "__main__":  # pragma: no cover
    app()
