"""A lock-out holds for the address whose failures imposed it (issue 13 point 5): a flood from one
address cannot shut the only center admin out for someone logging in from elsewhere."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import PASSWORD, Factory
from tests.support.server_process import (
    die_with_parent,
    free_port,
    log_tail,
    port_accepts,
    stop_process,
    wait_until,
)
from vmportal.identity.models import User
from vmportal.kit import db
from vmportal.kit.settings import Settings

API = "/api/v1"
WRONG = "Wrong-passw0rd!"
FLOODER = ("127.0.0.3", 40000)
ADMIN_DESK = ("127.0.0.4", 40001)


@pytest.fixture
def clients(settings: Settings, client: TestClient) -> Iterator[tuple[TestClient, TestClient]]:
    """Two clients of one portal, seen at two loopback addresses (what uvicorn reports as the
    client once the trusted proxy's X-Forwarded-For is applied)."""
    app = client.app
    with TestClient(app, client=FLOODER) as flooder, TestClient(app, client=ADMIN_DESK) as desk:
        yield flooder, desk


def _login(c: TestClient, username: str, password: str = PASSWORD) -> tuple[int, dict]:
    r = c.post(f"{API}/auth/login", json={"username": username, "password": password})
    return r.status_code, r.json()


def test_a_flood_from_one_address_does_not_lock_the_admin_out_elsewhere(
    clients: tuple[TestClient, TestClient], factory: Factory, settings: Settings
) -> None:
    flooder, desk = clients
    chief = factory.user("center_admin", username="only.chief")
    for _ in range(settings.lockout_threshold):
        assert _login(flooder, chief.username, WRONG)[0] == 401
    status, body = _login(flooder, chief.username)  # the right password, from the flooding address
    assert status == 423 and "locked_until" in body["error"]
    status, body = _login(desk, chief.username)
    assert status == 200, body
    assert body["user"]["username"] == chief.username
    # The admin's log-in does not lift the flooder's lock, and the flooder keeps answering 423.
    assert _login(flooder, chief.username)[0] == 423
    with db.transaction() as s:
        row = s.get(User, chief.id)
        assert row is not None and row.locked_address == FLOODER[0]


def test_the_other_address_keeps_its_own_count(
    clients: tuple[TestClient, TestClient], factory: Factory, settings: Settings
) -> None:
    """After the flooder's lock, a typo at the admin's desk is one failure there, not a lock; the
    desk locks only after its own run of failures."""
    flooder, desk = clients
    chief = factory.user("center_admin", username="only.chief")
    for _ in range(settings.lockout_threshold):
        _login(flooder, chief.username, WRONG)
    assert _login(desk, chief.username, WRONG)[0] == 401
    assert _login(desk, chief.username)[0] == 200
    for _ in range(settings.lockout_threshold):
        assert _login(desk, chief.username, WRONG)[0] == 401
    assert _login(desk, chief.username)[0] == 423


def test_unknown_names_lock_per_address_like_accounts(
    clients: tuple[TestClient, TestClient], factory: Factory, settings: Settings
) -> None:
    """The per-address lock must not tell real names from made-up ones: both answer the same at
    the flooding address and at the other one."""
    flooder, desk = clients
    real = factory.user("center_operator", username="real.operator")
    answers: dict[str, list[int]] = {}
    for name in (real.username, "made.up.operator"):
        seen = [_login(flooder, name, WRONG)[0] for _ in range(settings.lockout_threshold + 1)]
        seen.append(_login(desk, name, WRONG)[0])
        answers[name] = seen
    assert answers[real.username] == answers["made.up.operator"]
    assert answers[real.username][-2:] == [423, 401]


def test_unlock_lifts_the_lock_for_the_flooded_address(
    clients: tuple[TestClient, TestClient], factory: Factory, settings: Settings
) -> None:
    flooder, desk = clients
    chief = factory.user("center_admin", username="only.chief")
    for _ in range(settings.lockout_threshold):
        _login(flooder, chief.username, WRONG)
    admin = factory.login(desk, factory.user("center_admin", username="second.admin"))
    r = desk.post(f"{API}/users/{chief.id}/unlock", headers=admin)
    assert r.status_code == 200 and r.json()["locked"] is False
    assert _login(flooder, chief.username)[0] == 200


def test_a_flood_short_of_the_threshold_does_not_add_up_with_a_typo_elsewhere(
    clients: tuple[TestClient, TestClient], factory: Factory, settings: Settings
) -> None:
    """The flooder stops one failure short of the lock and waits; the admin's single typo at the desk
    must be one failure there, not the one that completes the flooder's run and locks the desk."""
    flooder, desk = clients
    chief = factory.user("center_admin", username="only.chief")
    for _ in range(settings.lockout_threshold - 1):
        assert _login(flooder, chief.username, WRONG)[0] == 401
    assert _login(desk, chief.username, WRONG)[0] == 401
    status, body = _login(desk, chief.username)
    assert status == 200, body
    # And the flooder's run is its own: one more failure there locks the flooder, not the desk.
    assert _login(flooder, chief.username, WRONG)[0] == 401
    assert _login(flooder, chief.username)[0] == 423
    assert _login(desk, chief.username)[0] == 200


def _masked(body: dict) -> dict:
    """An error body with the lock's end time taken out (it differs by the instant of each lock)."""
    error = dict(body["error"])
    until = error.pop("locked_until", None)
    for key in ("message", "message_zh"):
        if until and key in error:
            error[key] = error[key].replace(until[:19], "<until>")
    error.pop("request_id", None)
    return error


def test_a_locked_real_account_and_a_locked_unknown_name_answer_the_same_body(
    clients: tuple[TestClient, TestClient], factory: Factory, settings: Settings
) -> None:
    """Status code and body alike, before the lock, at the lock, with the right password and from
    the other address (issue 13: a locked real account answered 423 while an unknown name 401)."""
    flooder, desk = clients
    real = factory.user("center_admin", username="real.chief")
    seen: dict[str, list[tuple[int, dict]]] = {}
    for name in (real.username, "made.up.chief"):
        answers = []
        for _ in range(settings.lockout_threshold + 1):
            status, body = _login(flooder, name, WRONG)
            answers.append((status, _masked(body)))
        status, body = _login(flooder, name)  # the right password of the real account
        answers.append((status, _masked(body)))
        status, body = _login(desk, name, WRONG)
        answers.append((status, _masked(body)))
        seen[name] = answers
    assert seen[real.username] == seen["made.up.chief"]
    assert [s for s, _ in seen[real.username]][-3:] == [423, 423, 401]
    assert seen[real.username][-2][1]["code"] == "locked"


class _CountingHasher:
    """The test's argon2 hasher, counting the verifications that hash a password (a hash that is no
    argon2 hash is refused at once, with no work: it is not counted)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.argon2_runs = 0

    def verify(self, hash: str, password: str) -> bool:
        if hash.startswith("$argon2"):
            self.argon2_runs += 1
        return bool(self.inner.verify(hash, password))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_every_refusal_costs_one_argon2_verification(
    clients: tuple[TestClient, TestClient],
    factory: Factory,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The work behind each answer is the same, whether the name is a real account (wrong password,
    locked), an account with no local password (CAS or LDAP vouches for it), a deactivated one, or
    nobody's (locked or not): one argon2 verification each. Counted, not timed."""
    from vmportal.identity import service

    settings.login_failure_rate = "1000/minute"  # this test is about the lock, not the rate limit
    counting = _CountingHasher(service._hasher)
    monkeypatch.setattr(service, "_hasher", counting)
    flooder, _desk = clients
    real = factory.user("center_operator", username="real.operator")
    gone = factory.user("center_operator", username="gone.operator")
    with db.transaction() as s:
        s.add(
            User(
                username="cas.operator",
                password_hash=service.NO_LOCAL_PASSWORD,
                role="center_operator",
                auth_source="cas",
            )
        )
        row = s.get(User, gone.id)
        assert row is not None
        row.active = False
        s.add(row)
    for name in (real.username, "cas.operator", gone.username, "made.up.operator"):
        for attempt in range(settings.lockout_threshold + 2):  # 401s, then 423s once locked
            before = counting.argon2_runs
            status, _body = _login(flooder, name, WRONG)
            assert status == (401 if attempt < settings.lockout_threshold else 423)
            assert counting.argon2_runs - before == 1, (name, attempt)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """Debian's redis-server on a free loopback port, nothing saved to disk."""
    port = free_port()
    log = tmp_path / "redis.log"
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,
    )
    try:
        if not wait_until(lambda: port_accepts("127.0.0.1", port), process, timeout=20):
            raise RuntimeError(f"redis-server did not start:\n{log_tail(log)}")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(process)


def test_runs_and_locks_are_shared_by_every_api_process_through_redis(
    clients: tuple[TestClient, TestClient], factory: Factory, settings: Settings, redis_url: str
) -> None:
    """With ``rate_limit_storage`` in Redis, a run begun in one API process continues in another:
    each log-in below is answered by a fresh limiter (what another process has), and a real account
    and a made-up name still lock at the same failure, with the same answer."""
    from vmportal.identity import throttle

    settings.rate_limit_storage = redis_url
    flooder, desk = clients
    real = factory.user("center_operator", username="real.operator")
    seen: dict[str, list[tuple[int, dict]]] = {}
    for name in (real.username, "made.up.operator"):
        answers = []
        for _ in range(settings.lockout_threshold + 1):
            throttle._current = None  # the next log-in is another process's
            status, body = _login(flooder, name, WRONG)
            answers.append((status, _masked(body)))
        throttle._current = None
        status, body = _login(desk, name, WRONG)
        answers.append((status, _masked(body)))
        seen[name] = answers
    assert seen[real.username] == seen["made.up.operator"]
    assert [s for s, _ in seen[real.username]] == [401] * settings.lockout_threshold + [423, 401]
    import redis

    keys = redis.Redis.from_url(redis_url).keys("*vmportal-login-lock/*")
    assert len(keys) == 1  # the made-up name's lock (the real account's is in its row)
