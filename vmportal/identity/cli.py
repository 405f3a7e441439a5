"""``vmportal directory-sync``: the LDAP / CAS-list sync now (beat runs it periodically)."""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    @app.command("directory-sync")
    def directory_sync() -> None:
        """Deactivate the accounts the LDAP directory or the CAS center list no longer vouch for
        (sessions and tokens revoked); bring their roles up to date."""
        from vmportal.identity import ldap, tasks
        from vmportal.kit import crypto, db
        from vmportal.kit.settings import get_settings

        settings = get_settings()
        crypto.configure(settings.fernet_keys())
        db.init(settings)
        try:
            typer.echo(json.dumps(tasks.run_sync(), ensure_ascii=False))
        except ldap.DirectoryUnavailable as exc:
            typer.echo(f"directory sync failed, nothing changed: {exc.message}", err=True)
            raise typer.Exit(1) from None
