"""Log-in, lock-out, tokens, role gates and account management through the HTTP API (issue 2, point 3)."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlmodel import select

from tests.factories import PASSWORD, Factory
from vmportal.audit.models import AuditEntry
from vmportal.identity.models import AuthToken, User
from vmportal.kit import db
from vmportal.kit.settings import Settings

API = "/api/v1"
NEW_PASSWORD = "An0ther-Passw0rd#"


def _login(client: TestClient, username: str, password: str = PASSWORD) -> tuple[int, dict]:
    r = client.post(f"{API}/auth/login", json={"username": username, "password": password})
    return r.status_code, r.json()


def _field(body: dict) -> tuple[str, str]:
    first = body["error"]["fields"][0]
    return first["field"], first["rule"]


# ---- log-in ----------------------------------------------------------------------------------------


def test_login_answers_a_bearer_token_and_the_user(client: TestClient, factory: Factory) -> None:
    unit = factory.unit()
    user = factory.user("unit_admin", unit)
    status, body = _login(client, user.username)
    assert status == 200
    assert body["token_type"] == "bearer"
    assert body["expires_in"] > 0
    assert body["user"] == {
        "id": user.id,
        "username": user.username,
        "role": "unit_admin",
        "unit_id": unit.id,
        "display_name": user.display_name,
    }
    me = client.get(f"{API}/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["username"] == user.username


def test_wrong_password_and_unknown_user_are_401(client: TestClient, factory: Factory) -> None:
    user = factory.user("center_operator")
    assert _login(client, user.username, "Wrong-passw0rd!")[0] == 401
    status, body = _login(client, "nobody-here", PASSWORD)
    assert status == 401
    assert body["error"]["code"] == "unauthorized"


def test_lockout_after_threshold_then_423_then_unlock(
    client: TestClient, factory: Factory, settings: Settings
) -> None:
    user = factory.user("unit_admin", factory.unit())
    admin = factory.login(client, factory.user("center_admin"))
    for _ in range(settings.lockout_threshold):
        assert _login(client, user.username, "Wrong-passw0rd!")[0] == 401
    # Locked now: even the right password is refused, with 423 and the time it ends.
    status, body = _login(client, user.username)
    assert status == 423
    assert body["error"]["code"] == "locked"
    assert "locked_until" in body["error"]
    # The failures survived their requests' rollback: they are in the database and the audit log.
    with db.transaction() as s:
        row = s.get(User, user.id)
        assert row is not None and row.locked_until is not None
        failed = s.exec(
            select(AuditEntry).where(AuditEntry.action == "login.failed", AuditEntry.actor == user.username)
        ).all()
        assert len(failed) == settings.lockout_threshold
        assert failed[-1].detail == "account locked"
    shown = client.get(f"{API}/users/{user.id}", headers=admin).json()
    assert shown["locked"] is True
    r = client.post(f"{API}/users/{user.id}/unlock", headers=admin)
    assert r.status_code == 200
    assert r.json()["locked"] is False
    assert _login(client, user.username)[0] == 200


def test_lockout_does_not_reveal_which_names_exist(
    client: TestClient, factory: Factory, settings: Settings
) -> None:
    """A real account and a name nobody has answer the same sequence: 401 until the threshold,
    then 423 with locked_until, for the right password too (issue 13, probing the log-in)."""
    real = factory.user("center_admin", username="real.chief")
    answers: dict[str, list[tuple[int, str, bool]]] = {}
    for name in (real.username, "made.up.chief"):
        seen = []
        for _ in range(settings.lockout_threshold + 1):
            status, body = _login(client, name, "Wrong-passw0rd!")
            seen.append((status, body["error"]["code"], "locked_until" in body["error"]))
        answers[name] = seen
    assert answers[real.username] == answers["made.up.chief"]
    assert answers[real.username][-1] == (423, "locked", True)
    assert _login(client, "made.up.chief", PASSWORD)[0] == 423


def test_a_flooding_address_is_stopped_and_others_still_log_in(
    client: TestClient, factory: Factory, settings: Settings
) -> None:
    """Failed log-ins are limited per address: past the limit that address gets 429 with
    Retry-After, whatever name or password it tries, while another address logs in as usual."""
    from vmportal.app.factory import create_app

    settings.login_failure_rate = "3/minute"
    chief = factory.user("center_admin", username="only.chief")
    for name in ("x1", "x2", "x3"):
        assert _login(client, name, "Wrong-passw0rd!")[0] == 401
    r = client.post(f"{API}/auth/login", json={"username": chief.username, "password": PASSWORD})
    assert r.status_code == 429, r.text
    assert int(r.headers["retry-after"]) >= 1
    assert r.json()["error"]["code"] == "too_many_requests"
    assert "频繁" in r.json()["error"]["message_zh"] or "过多" in r.json()["error"]["message_zh"]
    with TestClient(create_app(settings, migrate=False), client=("127.0.0.2", 50000)) as elsewhere:
        r = elsewhere.post(f"{API}/auth/login", json={"username": chief.username, "password": PASSWORD})
        assert r.status_code == 200, r.text


def test_failures_below_threshold_are_forgotten_after_a_success(
    client: TestClient, factory: Factory, settings: Settings
) -> None:
    user = factory.user("auditor")
    for _ in range(settings.lockout_threshold - 1):
        assert _login(client, user.username, "Wrong-passw0rd!")[0] == 401
    assert _login(client, user.username)[0] == 200
    assert _login(client, user.username, "Wrong-passw0rd!")[0] == 401
    assert _login(client, user.username)[0] == 200


def test_lock_ends_by_itself(client: TestClient, factory: Factory, settings: Settings) -> None:
    user = factory.user("auditor")
    for _ in range(settings.lockout_threshold):
        _login(client, user.username, "Wrong-passw0rd!")
    assert _login(client, user.username)[0] == 423
    with db.transaction() as s:
        row = s.get(User, user.id)
        assert row is not None
        row.locked_until = db.utcnow() - timedelta(seconds=1)
        s.add(row)
    assert _login(client, user.username)[0] == 200


def test_expired_token_is_refused(client: TestClient, factory: Factory) -> None:
    user = factory.user("auditor")
    headers = factory.login(client, user)
    assert client.get(f"{API}/auth/me", headers=headers).status_code == 200
    with db.transaction() as s:
        for token in s.exec(select(AuthToken).where(AuthToken.user_id == user.id)):
            token.expires_at = db.utcnow() - timedelta(seconds=1)
            s.add(token)
    r = client.get(f"{API}/auth/me", headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"


def test_logout_revokes_the_token(client: TestClient, factory: Factory) -> None:
    headers = factory.login(client, factory.user("auditor"))
    assert client.post(f"{API}/auth/logout", headers=headers).status_code == 204
    assert client.get(f"{API}/auth/me", headers=headers).status_code == 401


def test_missing_or_garbage_token_is_401(client: TestClient) -> None:
    assert client.get(f"{API}/auth/me").status_code == 401
    assert client.get(f"{API}/auth/me", headers={"Authorization": "Bearer not-a-token"}).status_code == 401


def test_login_bad_input(client: TestClient) -> None:
    r = client.post(
        f"{API}/auth/login", content=b'{"username": "x", ', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "malformed_json"
    r = client.post(f"{API}/auth/login", json={"username": "x" * 65, "password": "y"})
    assert r.status_code == 422
    assert _field(r.json())[0] == "username"


# ---- users ------------------------------------------------------------------------------------------


def _new_user(**overrides: object) -> dict:
    return {
        "username": "zhang.san",
        "password": NEW_PASSWORD,
        "role": "center_operator",
        "display_name": "张三",
        "email": "zhangsan@example.edu.cn",
        **overrides,
    }


def test_center_admin_creates_users_and_they_can_log_in(client: TestClient, factory: Factory) -> None:
    admin = factory.login(client, factory.user("center_admin"))
    unit = factory.unit()
    r = client.post(f"{API}/users", json=_new_user(), headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["role"] == "center_operator"
    r = client.post(
        f"{API}/users", json=_new_user(username="li.si", role="unit_admin", unit_id=unit.id), headers=admin
    )
    assert r.status_code == 201, r.text
    assert r.json()["unit_id"] == unit.id
    assert _login(client, "li.si", NEW_PASSWORD)[0] == 200
    with db.transaction() as s:
        rows = s.exec(select(AuditEntry).where(AuditEntry.action == "user.create")).all()
        assert {r.after["username"] for r in rows if r.after} >= {"zhang.san", "li.si"}
        assert all("password" not in (r.after or {}) for r in rows)


def test_only_center_admin_creates_users(client: TestClient, factory: Factory) -> None:
    unit = factory.unit()
    for role, member in (
        ("auditor", None),
        ("center_operator", None),
        ("unit_lead", unit),
        ("unit_admin", unit),
    ):
        headers = factory.login(client, factory.user(role, member))
        r = client.post(f"{API}/users", json=_new_user(username=f"x-{role}"), headers=headers)
        assert r.status_code == 403, role
        assert r.json()["error"]["role"] == role


def test_create_user_refusals(client: TestClient, factory: Factory) -> None:
    admin = factory.login(client, factory.user("center_admin"))
    unit = factory.unit()
    cases = [
        (_new_user(role="unit_admin"), 422, ("unit_id", "required")),
        (_new_user(unit_id=unit.id), 422, ("unit_id", "forbidden")),
        (_new_user(role="unit_admin", unit_id=999_999), 422, ("unit_id", "not_found")),
        (_new_user(password="short1A!"), 422, ("password", "min_length")),
        (_new_user(password="alllowercaseletters"), 422, ("password", "complexity")),
        (_new_user(password="Zhang.San-2024!"), 422, ("password", "contains_username")),
        (_new_user(role="superuser"), 422, ("role", "enum")),
        (_new_user(display_name="长" * 101), 422, ("display_name", "string_too_long")),
        (_new_user(username="Bad Name!"), 422, ("username", "format")),
        (_new_user(email="not-an-email"), 422, ("email", "format")),
    ]
    for body, status, (field, rule) in cases:
        r = client.post(f"{API}/users", json=body, headers=admin)
        assert r.status_code == status, (body, r.text)
        assert _field(r.json()) == (field, rule), body
    assert client.post(f"{API}/users", json=_new_user(), headers=admin).status_code == 201
    r = client.post(f"{API}/users", json=_new_user(), headers=admin)
    assert r.status_code == 409
    assert r.json()["error"]["field"] == "username"


def test_common_and_guessable_passwords_are_refused_in_both_languages(
    client: TestClient, factory: Factory
) -> None:
    """Each mixes three character classes and is long enough, yet is among the first guesses of any
    attacker; the refusal names the field and the rule in English and Chinese."""
    admin = factory.login(client, factory.user("center_admin"))
    for password in ("Password123", "Qwerty12345", "Aaaaaaaaaa1", "P@ssw0rd2024"):
        r = client.post(f"{API}/users", json=_new_user(password=password), headers=admin)
        assert r.status_code == 422, (password, r.text)
        assert _field(r.json()) == ("password", "guessable"), password
        error = r.json()["error"]
        assert "guess" in error["message"] and "猜" in error["message_zh"], error
    me = factory.user("center_operator")
    headers = factory.login(client, me)
    r = client.post(
        f"{API}/users/{me.id}/password",
        json={"old_password": PASSWORD, "new_password": "Qwerty12345"},
        headers=headers,
    )
    assert (r.status_code, _field(r.json())) == (422, ("new_password", "guessable"))
    # A password of random words and symbols passes.
    r = client.post(f"{API}/users", json=_new_user(password="Tz7#qLm2xRw9"), headers=admin)
    assert r.status_code == 201, r.text


def test_unit_users_see_only_their_own_unit(client: TestClient, factory: Factory) -> None:
    unit_a, unit_b = factory.unit(), factory.unit()
    a_admin, a_lead = factory.user("unit_admin", unit_a), factory.user("unit_lead", unit_a)
    b_admin = factory.user("unit_admin", unit_b)
    center = factory.user("center_operator")
    headers = factory.login(client, a_admin)
    listed = client.get(f"{API}/users", headers=headers).json()
    assert {u["id"] for u in listed} == {a_admin.id, a_lead.id}
    assert client.get(f"{API}/users", params={"unit_id": unit_b.id}, headers=headers).json() == []
    assert client.get(f"{API}/users/{a_lead.id}", headers=headers).status_code == 200
    assert client.get(f"{API}/users/{b_admin.id}", headers=headers).status_code == 404
    assert client.get(f"{API}/users/{center.id}", headers=headers).status_code == 404
    auditor = factory.login(client, factory.user("auditor"))
    everyone = {u["id"] for u in client.get(f"{API}/users", headers=auditor).json()}
    assert {a_admin.id, a_lead.id, b_admin.id, center.id} <= everyone
    by_unit = client.get(f"{API}/users", params={"unit_id": unit_b.id}, headers=auditor).json()
    assert [u["id"] for u in by_unit] == [b_admin.id]


def test_deactivating_revokes_tokens(client: TestClient, factory: Factory) -> None:
    admin_user = factory.user("center_admin")
    admin = factory.login(client, admin_user)
    target = factory.user("unit_admin", factory.unit())
    target_headers = factory.login(client, target)
    r = client.patch(f"{API}/users/{target.id}", json={"active": False}, headers=admin)
    assert r.status_code == 200
    assert r.json()["active"] is False
    assert client.get(f"{API}/auth/me", headers=target_headers).status_code == 401
    assert _login(client, target.username)[0] == 401
    r = client.patch(f"{API}/users/{admin_user.id}", json={"active": False}, headers=admin)
    assert r.status_code == 422
    assert _field(r.json()) == ("active", "self")
    with db.transaction() as s:
        row = s.exec(select(AuditEntry).where(AuditEntry.action == "user.deactivate")).one()
        assert row.before is not None and row.before["active"] is True
        assert row.after is not None and row.after["active"] is False
    assert client.patch(f"{API}/users/{target.id}", json={"active": True}, headers=admin).status_code == 200
    assert _login(client, target.username)[0] == 200


def test_users_edit_their_own_name_only(client: TestClient, factory: Factory) -> None:
    unit = factory.unit()
    me, colleague = factory.user("unit_admin", unit), factory.user("unit_lead", unit)
    headers = factory.login(client, me)
    r = client.patch(f"{API}/users/{me.id}", json={"display_name": "新名字"}, headers=headers)
    assert r.status_code == 200
    assert r.json()["display_name"] == "新名字"
    assert client.patch(f"{API}/users/{me.id}", json={"active": False}, headers=headers).status_code == 403
    r = client.patch(f"{API}/users/{colleague.id}", json={"display_name": "x"}, headers=headers)
    assert r.status_code == 403


def test_change_own_password(client: TestClient, factory: Factory) -> None:
    user = factory.user("unit_lead", factory.unit())
    headers = factory.login(client, user)
    other_session = factory.login(client, user)
    url = f"{API}/users/{user.id}/password"
    r = client.post(url, json={"new_password": NEW_PASSWORD}, headers=headers)
    assert (r.status_code, _field(r.json())) == (422, ("old_password", "required"))
    r = client.post(
        url, json={"old_password": "Wrong-passw0rd!", "new_password": NEW_PASSWORD}, headers=headers
    )
    assert (r.status_code, _field(r.json())) == (422, ("old_password", "mismatch"))
    r = client.post(url, json={"old_password": PASSWORD, "new_password": "weak"}, headers=headers)
    assert (r.status_code, _field(r.json())) == (422, ("new_password", "min_length"))
    r = client.post(url, json={"old_password": PASSWORD, "new_password": NEW_PASSWORD}, headers=headers)
    assert r.status_code == 204
    assert client.get(f"{API}/auth/me", headers=headers).status_code == 200  # this session stays
    assert client.get(f"{API}/auth/me", headers=other_session).status_code == 401  # the others end
    assert _login(client, user.username)[0] == 401
    assert _login(client, user.username, NEW_PASSWORD)[0] == 200


def test_center_admin_resets_a_password_others_cannot(client: TestClient, factory: Factory) -> None:
    unit_a, unit_b = factory.unit(), factory.unit()
    target = factory.user("unit_admin", unit_a)
    target_headers = factory.login(client, target)
    lead = factory.login(client, factory.user("unit_lead", unit_a))
    other_unit = factory.login(client, factory.user("unit_lead", unit_b))
    operator = factory.login(client, factory.user("center_operator"))
    url = f"{API}/users/{target.id}/password"
    assert client.post(url, json={"new_password": NEW_PASSWORD}, headers=lead).status_code == 403
    assert client.post(url, json={"new_password": NEW_PASSWORD}, headers=other_unit).status_code == 404
    assert client.post(url, json={"new_password": NEW_PASSWORD}, headers=operator).status_code == 403
    admin = factory.login(client, factory.user("center_admin"))
    assert client.post(url, json={"new_password": NEW_PASSWORD}, headers=admin).status_code == 204
    assert client.get(f"{API}/auth/me", headers=target_headers).status_code == 401
    assert _login(client, target.username, NEW_PASSWORD)[0] == 200


# ---- accounts from the contact registry --------------------------------------------------------------


def test_accounts_created_from_the_contact_registry(client: TestClient, factory: Factory) -> None:
    unit = factory.unit()
    admin = factory.login(client, factory.user("center_admin"))
    r = client.post(f"{API}/units/{unit.id}/accounts", headers=admin)
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    accounts = {a["contact"]: a for a in r.json()["accounts"]}
    assert set(accounts) == {"security_admin", "security_lead"}
    contacts = {c["role"]: c for c in client.get(f"{API}/units/{unit.id}/contacts", headers=admin).json()}
    made_admin = accounts["security_admin"]["user"]
    assert made_admin["role"] == "unit_admin"
    assert made_admin["unit_id"] == unit.id
    assert made_admin["contact_id"] == contacts["security_admin"]["id"]
    assert made_admin["display_name"] == contacts["security_admin"]["name"]
    assert made_admin["username"] == contacts["security_admin"]["staff_no"].lower()  # derived from staff no.
    made_lead = accounts["security_lead"]["user"]
    assert made_lead["role"] == "unit_lead"
    assert made_lead["username"] == contacts["security_lead"]["email"].split("@")[0]
    for account in accounts.values():
        status, body = _login(client, account["user"]["username"], account["initial_password"])
        assert status == 200
        assert body["user"]["unit_id"] == unit.id
    # The passwords were shown once: nowhere in the database or the log.
    with db.transaction() as s:
        for row in s.exec(select(AuditEntry)):
            text = str(row.before) + str(row.after) + row.detail
            assert all(a["initial_password"] not in text for a in accounts.values())
    # A second time: the contacts already have accounts.
    r = client.post(f"{API}/units/{unit.id}/accounts", headers=admin)
    assert r.status_code == 409
    assert r.json()["error"]["field"] == "contacts.security_admin"


def test_accounts_refused_when_the_registry_lacks_the_contact(client: TestClient, factory: Factory) -> None:
    unit = factory.unit(paperwork=False)
    admin = factory.login(client, factory.user("center_admin"))
    lead = {
        "name": "王负责",
        "title": "副院长",
        "office_phone": "0516-83590000",
        "mobile": "13812345678",
        "email": "wang.fz@example.edu.cn",
    }
    assert (
        client.put(f"{API}/units/{unit.id}/contacts/security_lead", json=lead, headers=admin).status_code
        == 200
    )
    r = client.post(f"{API}/units/{unit.id}/accounts", headers=admin)
    assert r.status_code == 422
    assert _field(r.json()) == ("contacts.security_admin", "missing_contact")
    assert "网络安全管理员" in r.json()["error"]["message_zh"]
    # Nothing half-done: not even the lead's account was kept.
    assert client.get(f"{API}/users", params={"unit_id": unit.id}, headers=admin).json() == []
    r = client.post(
        f"{API}/units/{unit.id}/accounts",
        json={"accounts": [{"contact": "security_lead", "username": "wang.lead"}]},
        headers=admin,
    )
    assert r.status_code == 201
    assert r.json()["accounts"][0]["user"]["username"] == "wang.lead"


def test_accounts_only_by_center_admin_and_for_real_units(client: TestClient, factory: Factory) -> None:
    unit = factory.unit()
    operator = factory.login(client, factory.user("center_operator"))
    assert client.post(f"{API}/units/{unit.id}/accounts", headers=operator).status_code == 403
    admin = factory.login(client, factory.user("center_admin"))
    assert client.post(f"{API}/units/999999/accounts", headers=admin).status_code == 404
    r = client.post(
        f"{API}/units/{unit.id}/accounts", json={"accounts": [{"contact": "dean"}]}, headers=admin
    )
    assert r.status_code == 422
    assert _field(r.json())[0] == "accounts.0.contact"


def test_every_log_in_gets_a_new_session_id(client: TestClient, factory: Factory) -> None:
    """No token is ever handed out twice, so none can be planted before a log-in (session fixation)."""
    user = factory.user("auditor")
    tokens = {_login(client, user.username)[1]["access_token"] for _ in range(3)}
    assert len(tokens) == 3
    with db.transaction() as s:
        rows = s.exec(
            select(AuditEntry).where(AuditEntry.action == "login", AuditEntry.actor_id == user.id)
        ).all()
    assert len(rows) == 3
