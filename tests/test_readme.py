"""The README stays the operator's reference: every setting in its configuration table, every beat
entry in its schedule, every command in its command list."""

from __future__ import annotations

import re
from pathlib import Path

from vmportal.app.beat import beat_schedule
from vmportal.kit.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(title)
    following = re.search(r"^#{2,3} ", README[start + len(title) :], flags=re.MULTILINE)
    return README[start : start + len(title) + following.start()] if following else README[start:]


def test_every_setting_is_in_the_configuration_table() -> None:
    table = _section("## Configuration")
    rows = [line for line in table.splitlines() if line.startswith("| `VMPORTAL_")]
    documented = set(re.findall(r"`(VMPORTAL_[A-Z_]+)`", "\n".join(rows)))
    expected = {f"VMPORTAL_{name.upper()}" for name in Settings.model_fields}
    assert expected - documented == set(), "settings missing from the README's table"
    assert documented - expected == set(), "the README's table names settings that do not exist"


def test_every_beat_entry_is_in_the_schedule_table() -> None:
    table = _section("### Beat schedule")
    for name, entry in beat_schedule().items():
        row = next((line for line in table.splitlines() if line.startswith(f"| `{name}` ")), None)
        assert row is not None, f"beat entry {name} is not documented"
        assert f"`{entry['task']}`" in row


def test_the_commands_are_listed() -> None:
    commands = _section("## Commands")
    for command in ("serve", "migrate", "create-admin", "audit verify", "sync", "worker", "beat", "redrive"):
        assert f"\nvmportal {command}" in commands, command
    assert README.startswith("# vmportal\n\n```sh\nmake run    # ")
