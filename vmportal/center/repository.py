"""Every query of the center's settings."""

from __future__ import annotations

from sqlmodel import Session, select

from vmportal.center.models import CenterSetting


def setting_row(session: Session, key: str) -> CenterSetting | None:
    """The stored row of this setting, if a center_admin ever set it."""
    return session.get(CenterSetting, key)


def lock_setting_row(session: Session, key: str) -> CenterSetting | None:
    """The stored row of this setting, locked (FOR UPDATE) so two changes of it follow one another."""
    return session.exec(select(CenterSetting).where(CenterSetting.key == key).with_for_update()).first()
