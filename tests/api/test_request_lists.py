"""The approval queue's lists in one query (request.service.lists_with_units): each part in its own
order and limit, every request with its unit's names, the first part's total; the same requests
the per-state pages (list_requests) give; a unit's user sees their unit's only; a page past the end
still counts. Both databases (VMPORTAL_TEST_DB=postgres)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session

from policies.roles import Actor, Role
from tests.factories import Factory
from vmportal.kit import db
from vmportal.request import service
from vmportal.request.models import RequestState, VMRequest
from vmportal.unit.models import Unit

WAITING = (RequestState.SUBMITTED, RequestState.ENDORSED)
IN_PROGRESS = (RequestState.APPROVED, RequestState.PROVISIONING, RequestState.FAILED)
STATES = [*WAITING, *IN_PROGRESS, RequestState.DELIVERED, RequestState.REJECTED]


def _arrange(factory: Factory) -> tuple[list[Unit], int]:
    units = [factory.unit(), factory.unit()]
    admin = factory.user(Role.UNIT_ADMIN.value, units[0])
    connection = factory.connection()
    now = datetime.now(UTC)
    with db.transaction() as s:
        for n in range(40):
            # Due times repeat (every 4th request shares one) so the id has to break the ties.
            s.add(
                VMRequest(
                    unit_id=units[n % 2].id, requested_by=admin.id, state=STATES[n % len(STATES)],
                    purpose="teaching", system_name=f"系统{n}", hostname=f"req-{n}",
                    connection_id=connection.id, template_ref="tpl", vcpus=2, memory_gib=4, disk_gib=40,
                    due_at=now + timedelta(hours=(n // 4) - 3), submitted_at=now - timedelta(days=1),
                )
            )  # fmt: skip
    return units, int(admin.id or 0)


def _ids(listed: list[tuple[VMRequest, str, str]]) -> list[int]:
    return [int(r.id or 0) for r, _zh, _en in listed]


def _merged(session: Session, actor: Actor, states: tuple[RequestState, ...], sort: str) -> list[int]:
    found: list[VMRequest] = []
    for state in states:
        found += service.list_requests(session, actor, state=state, limit=500, sort=sort)[0]
    key = sort.lstrip("-")
    found.sort(key=lambda r: (getattr(r, key), r.id), reverse=sort.startswith("-"))
    return [int(r.id or 0) for r in found]


def test_the_queue_lists_match_the_per_state_pages(factory: Factory, session: Session) -> None:
    units, _admin = _arrange(factory)
    operator = Actor(user_id=1, role=Role.CENTER_OPERATOR, unit_id=None)
    parts = [
        service.Part(WAITING, limit=3, offset=3),
        service.Part(IN_PROGRESS, limit=200),
        service.Part((RequestState.DELIVERED,), limit=2, sort="-id"),
    ]
    (waiting, progress, delivered), total = service.lists_with_units(session, operator, parts, counted=True)
    all_waiting = _merged(session, operator, WAITING, "due_at")
    assert total == len(all_waiting) and _ids(waiting) == all_waiting[3:6]
    assert _ids(progress) == _merged(session, operator, IN_PROGRESS, "due_at")
    assert _ids(delivered) == _merged(session, operator, (RequestState.DELIVERED,), "-id")[:2]
    names = {u.id: (u.name_zh, u.name_en) for u in units}
    assert all((zh, en) == names[r.unit_id] for r, zh, en in waiting + progress + delivered)
    # Without counted, no total.
    assert service.lists_with_units(session, operator, parts[1:])[1] is None


def test_a_unit_user_sees_their_units_requests_only(factory: Factory, session: Session) -> None:
    units, admin = _arrange(factory)
    actor = Actor(user_id=admin, role=Role.UNIT_ADMIN, unit_id=units[0].id)
    parts = [service.Part(WAITING, limit=50), service.Part(IN_PROGRESS, limit=50)]
    (waiting, progress), total = service.lists_with_units(session, actor, parts, counted=True)
    assert waiting and progress and {r.unit_id for r, _zh, _en in waiting + progress} == {units[0].id}
    assert total == len(_merged(session, actor, WAITING, "due_at")) == len(waiting)


def test_a_page_past_the_end_still_counts(factory: Factory, session: Session) -> None:
    _arrange(factory)
    operator = Actor(user_id=1, role=Role.CENTER_OPERATOR, unit_id=None)
    waiting = len(_merged(session, operator, WAITING, "due_at"))
    # Nothing at all listed (no row carries the total): counted apart.
    (listed,), total = service.lists_with_units(
        session, operator, [service.Part(WAITING, limit=50, offset=100)], counted=True
    )
    assert listed == [] and total == waiting
    # Another part's rows carry it.
    (listed, progress), total = service.lists_with_units(
        session, operator, [service.Part(WAITING, limit=50, offset=100), service.Part(IN_PROGRESS, limit=5)],
        counted=True,
    )  # fmt: skip
    assert listed == [] and progress and total == waiting
