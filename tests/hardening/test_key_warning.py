"""A non-demo install that keeps its generated encryption key in the data folder is warned at start
(issue 11, point 10): one copy of that folder would decrypt every national ID. A key from the
environment, or the demo, starts without the warning."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from vmportal.app import startup
from vmportal.kit import crypto, db
from vmportal.kit.settings import Settings

WARNING = "kept beside the database"


def _start(data_dir: Path, schema: Path, caplog: pytest.LogCaptureFixture, **fields: object) -> list[str]:
    """Start a portal on a data folder of its own (a copy of the migrated database); its warnings."""
    data_dir.mkdir()
    shutil.copy(schema, data_dir / "vmportal.sqlite3")
    caplog.clear()
    settings = Settings(**{"data_dir": data_dir, "demo": False, **fields})  # type: ignore[arg-type]
    try:
        startup.prepare(settings, migrate=False, seed=False)
    finally:
        db.engine().dispose()
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_key_kept_in_the_data_folder_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, settings: Settings, migrated_sqlite: Path
) -> None:
    caplog.set_level(logging.WARNING, logger="vmportal.app.startup")
    warned = [m for m in _start(tmp_path / "embedded", migrated_sqlite, caplog) if WARNING in m]
    assert len(warned) == 1 and str(tmp_path / "embedded" / "encryption.key") in warned[0]
    assert "VMPORTAL_ENCRYPTION_KEY" in warned[0]
    assert (tmp_path / "embedded" / "encryption.key").stat().st_mode & 0o077 == 0  # and it is private

    key = Fernet.generate_key().decode()
    assert not [
        m for m in _start(tmp_path / "with-key", migrated_sqlite, caplog, encryption_key=key) if WARNING in m
    ]
    assert not (tmp_path / "with-key" / "encryption.key").exists()
    assert not [m for m in _start(tmp_path / "demo", migrated_sqlite, caplog, demo=True) if WARNING in m]
    # Back to the suite's own database and key for the rest of the test.
    db.init(settings)
    crypto.configure(settings.fernet_keys())
