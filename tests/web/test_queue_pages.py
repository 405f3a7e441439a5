"""待审批 against the live demo portal: CS's unit admin files requests through the API; the operator finds
them on /queue, soonest due first, with approve and reject; a unit's admin is refused the page and
the action naming the rule (request.approve), nothing written; a rejection without a reason is
refused beside its field with the rule, nothing written; a form without its CSRF token is refused;
the operator rejects one with a reason and approves another, which the simulator then provisions
(the request delivered, shown in 我的申请 and in the queue's self-refreshing provisioning list). English
too; one Chromium pass with axe-core (no serious or critical violation): the operator approves from
the queue through the confirmation dialog and watches, without reloading, the provisioning end;
the queue is paged, 50 soonest due a page, a refusal shown on the page the form was on;
screenshots at desktop and phone width under .cache/screenshots (tests/web/screens.py)."""

from __future__ import annotations

import contextlib
import re
import sqlite3

import pytest
from playwright.sync_api import Browser, expect

from policies.roles import Role
from tests.production.harness import wait_for
from tests.web.conftest import Live
from tests.web.pagekit import as_user, csrf, first_connection, sign_in, submit_request
from tests.web.screens import Shots, axe_violations, shots

# The tests of this file build on one another (a module fixture, states reached in order): one
# worker runs them all, in order (make test uses --dist loadgroup).
pytestmark = pytest.mark.xdist_group("web-queue-pages")

API = "/api/v1"
__all__ = ["shots"]


def _state(live: Live, request_id: int) -> str:
    with live.client() as c:
        r = c.get(f"{API}/requests/{request_id}", headers=live.login("operator", Role.CENTER_OPERATOR))
        assert r.status_code == 200, r.text
        return str(r.json()["state"])


@pytest.fixture(scope="module")
def filed(live: Live) -> dict[str, int]:
    connection = first_connection(live)
    return {
        "approve": submit_request(live, "课程实验平台", "queue-a", connection),
        "reject": submit_request(live, "临时测试平台", "queue-b", connection),
        "browser": submit_request(live, "科研数据平台", "queue-c", connection),
    }


def _waiting(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<li class="queue-item" data-request="(\d+)"', html)]


def test_a_unit_admin_is_refused_naming_the_rule(live: Live, filed: dict[str, int]) -> None:
    rid = filed["approve"]
    with as_user(live, "cs-admin", Role.UNIT_ADMIN) as c:
        page = c.get("/queue")
        assert page.status_code == 403 and "request.approve" in page.text
        assert "申请由信息中心值班员和管理员审批" in page.text
        assert 'href="/queue"' not in c.get("/vms").text  # not in a unit's navigation
        token = csrf(page.text)
        refused = c.post(f"/queue/{rid}/approve", data={"csrf_token": token})
        assert refused.status_code == 403 and "request.approve" in refused.text
        assert c.get("/queue/progress").status_code == 403
    assert _state(live, rid) == "submitted"  # nothing written


def test_the_operator_rejects_and_approves_and_provisioning_ends(live: Live, filed: dict[str, int]) -> None:
    with as_user(live, "operator", Role.CENTER_OPERATOR) as c:
        page = c.get("/queue")
        assert page.status_code == 200 and "待审批" in page.text
        waiting = _waiting(page.text)
        assert [filed["approve"], filed["reject"], filed["browser"]] == [
            i for i in waiting if i in filed.values()
        ]
        assert (
            f'/queue/{filed["approve"]}/approve"' in page.text
            and f'/queue/{filed["reject"]}/reject"' in page.text
        )
        token = csrf(page.text)

        rid = filed["reject"]
        no_reason = c.post(f"/queue/{rid}/reject", data={"csrf_token": token, "reason": "  "})
        assert no_reason.status_code == 422 and "请填写理由" in no_reason.text
        assert "required" in no_reason.text and 'aria-invalid="true"' in no_reason.text
        assert _state(live, rid) == "submitted"
        assert c.post(f"/queue/{rid}/reject", data={"reason": "测试"}).status_code == 403  # no CSRF token
        rejected = c.post(
            f"/queue/{rid}/reject", data={"csrf_token": token, "reason": "用途不明确，请补充说明"}
        )
        assert (
            rejected.status_code == 303 and rejected.headers["location"] == f"/queue?done=rejected&id={rid}"
        )
        assert f"申请 {rid} 已驳回" in c.get(rejected.headers["location"]).text
        assert _state(live, rid) == "rejected"
        # Once decided, a second decision is refused with the state it is in now.
        again = c.post(f"/queue/{rid}/approve", data={"csrf_token": token})
        assert again.status_code == 409 and "已驳回" in again.text

        rid = filed["approve"]
        approved = c.post(f"/queue/{rid}/approve", data={"csrf_token": token})
        assert approved.status_code == 303, approved.text
        assert f"申请 {rid} 已批准" in c.get(approved.headers["location"]).text
        wait_for(lambda: _state(live, rid) == "delivered", timeout=90, what="the request delivered")
        after = c.get("/queue").text
        assert rid not in _waiting(after) and filed["reject"] not in _waiting(after)
        progress = c.get("/queue/progress", headers={"HX-Request": "true"})
        assert progress.status_code == 200 and "<html" not in progress.text  # the part alone
        assert f'<tr data-request="{rid}">' in progress.text and 'data-state="delivered"' in progress.text
        assert c.get(f"/requests/{rid}").status_code == 200
    with as_user(live, "cs-admin", Role.UNIT_ADMIN) as c:
        assert "已交付" in c.get(f"/requests/{filed['approve']}").text


def test_the_queue_in_english(live: Live, filed: dict[str, int]) -> None:
    with as_user(live, "center-admin", Role.CENTER_ADMIN, headers={"Accept-Language": "en"}) as c:
        page = c.get("/queue")
        assert (
            page.status_code == 200
            and "Approval queue" in page.text
            and "Waiting for a decision" in page.text
        )
        assert "Reason to approve over the quota" in page.text  # a center admin may approve over it
        bad = c.post(f"/queue/{filed['browser']}/reject", data={"csrf_token": csrf(page.text), "reason": ""})
        assert bad.status_code == 422 and "Give the reason; it is told to the unit." in bad.text
    assert _state(live, filed["browser"]) == "submitted"


def test_the_operator_approves_from_the_queue_in_chromium(
    live: Live, filed: dict[str, int], browser: Browser, vendored: None, shots: Shots
) -> None:
    rid = filed["browser"]
    for locale, width in (("zh-CN", 375), ("en-US", 1280)):
        context = browser.new_context(
            locale=locale, viewport={"width": width, "height": 900}, bypass_csp=True
        )
        page = context.new_page()
        try:
            sign_in(page, live.base_url, "operator", Role.CENTER_OPERATOR, "/queue")
            shots.both(page, "queue")
            assert axe_violations(page) == []
            if locale != "zh-CN":
                continue
            item = page.locator(f"li.queue-item[data-request='{rid}']")
            expect(item).to_be_visible()
            item.locator("button[data-action=approve]").click()
            dialog = page.locator("#confirm-dialog")
            expect(dialog).to_be_visible()
            expect(dialog).to_contain_text(f"批准申请 {rid}")
            dialog.locator("[data-confirm-ok]").click()
            page.wait_for_url(f"{live.base_url}/queue?done=approved&id={rid}")
            expect(page.locator(".flash-success")).to_contain_text(f"申请 {rid} 已批准")
            assert axe_violations(page) == []
            # The provisioning list refreshes itself: the simulator's clone ends, no reload.
            state = page.locator(f"#queue-progress tr[data-request='{rid}'] .request-state")
            expect(state).to_have_attribute("data-state", "delivered", timeout=60_000)
            expect(state).to_contain_text("已交付")
            shots.both(page, "queue-delivered")
        finally:
            context.close()
    wait_for(lambda: _state(live, rid) == "delivered", timeout=90, what="the request delivered")


def _copies(live: Live, of: int, n: int) -> list[int]:
    """``n`` more submitted requests like ``of`` (its row copied in the portal's database), due at
    the same time as it: the queue orders them by id after it."""
    with contextlib.closing(sqlite3.connect(live.data_dir / "vmportal.sqlite3", timeout=30)) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(vm_request)") if row[1] != "id"]
        listed = ", ".join(columns)
        made = []
        for _ in range(n):
            cur = db.execute(
                f"INSERT INTO vm_request ({listed}) SELECT {listed} FROM vm_request WHERE id = ?",  # noqa: S608
                (of,),
            )
            assert cur.lastrowid is not None
            made.append(cur.lastrowid)
        marks = ", ".join("?" * len(made))
        db.execute(
            "UPDATE vm_request SET state = 'submitted', decided_by = NULL, decided_at = NULL,"  # noqa: S608
            f" decision_reason = '' WHERE id IN ({marks})",
            made,
        )
        db.commit()
    return made


def test_the_queue_is_paged_soonest_due_first(live: Live, filed: dict[str, int]) -> None:
    made = _copies(live, filed["reject"], 60)
    with as_user(live, "operator", Role.CENTER_OPERATOR) as c:
        first = c.get("/queue").text
        on_first = _waiting(first)
        assert len(on_first) == 50 and 'aria-label="分页"' in first
        assert 'href="?page=2"' in first and "第 1 / 2 页" in first
        second = c.get("/queue", params={"page": 2})
        assert second.status_code == 200 and 'start="51"' in second.text
        on_second = _waiting(second.text)
        assert not set(on_first) & set(on_second)
        assert set(made) <= set(on_first + on_second)
        # Soonest due first across the pages (the copies share a due time: then by number).
        assert [i for i in on_first + on_second if i in made] == made
        # A refusal on page 2 is shown there, beside its request, the operator's place kept.
        rid = on_second[0]
        form = re.search(rf'action="/queue/{rid}/reject".*?</form>', second.text, re.S)
        assert form is not None and 'name="page" value="2"' in form.group(0)
        bad = c.post(
            f"/queue/{rid}/reject", data={"csrf_token": csrf(second.text), "reason": "", "page": "2"}
        )
        assert bad.status_code == 422 and rid in _waiting(bad.text) and 'start="51"' in bad.text
        assert 'aria-invalid="true"' in bad.text
        done = c.post(
            f"/queue/{rid}/reject", data={"csrf_token": csrf(second.text), "reason": "重复", "page": "2"}
        )
        assert done.status_code == 303 and done.headers["location"] == f"/queue?done=rejected&id={rid}&page=2"
        past = c.get("/queue", params={"page": 99})  # past the end: the last page
        assert past.status_code == 200 and _waiting(past.text) == _waiting(c.get("/queue?page=2").text)
