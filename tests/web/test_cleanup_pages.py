"""清理工作 as pages (in process): a unit's admin sees the campaign and its own unit's items, confirms
one, corrects a domain, marks a system as no longer needed (a reason is required, refused beside the
item without one, nothing written), confirms the rest; another unit's item answers the 404 page; a
form without its CSRF token is refused; the center's admin reads the progress per unit. Chinese
first, English on request."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi.testclient import TestClient

from tests.factories import Factory
from tests.web.pagekit import csrf
from vmportal.kit import db

API = "/api/v1"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _login(client: TestClient, username: str) -> None:
    r = client.post(
        "/login",
        data={"username": username, "password": Factory.PASSWORD, "next": "/cleanup"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


def _statuses(html: str) -> dict[int, str]:
    return {int(i): s for i, s in re.findall(r'<tr data-item="(\d+)" data-status="(\w+)">', html)}


def test_a_unit_answers_its_items_on_the_page_and_the_center_reads_the_progress(
    client: TestClient, factory: Factory
) -> None:
    a, b = factory.unit(), factory.unit()
    system = factory.system(a, name="课程实验平台")
    factory.system(a, name="旧网站", purpose="management")
    factory.vm(a, name="lab-web")
    factory.vm(b, name="oa-db")
    center = factory.user("center_admin")
    headers = factory.login(client, center)
    r = client.post(
        f"{API}/cleanup/campaigns",
        json={
            "name": "2026年度网站域名、虚拟机清理",
            "deadline_at": (db.utcnow() + timedelta(days=10)).isoformat(),
        },
        headers=headers,
    )
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    items = {
        (i["kind"], i["label"]): i["id"]
        for i in client.get(f"{API}/cleanup/campaigns/{cid}/items", headers=headers).json()["items"]
    }
    b_item = next(v for (k, label), v in items.items() if label.startswith("oa-db"))

    admin = factory.user("unit_admin", a)
    _login(client, admin.username)
    page = client.get("/cleanup")
    assert page.status_code == 200, page.text
    assert "2026年度网站域名、虚拟机清理" in page.text and "清理" in page.text
    assert "仍在使用" in page.text and "未确认" in page.text  # Chinese first
    mine = _statuses(page.text)
    assert len(mine) == 5 and set(mine.values()) == {"pending"} and b_item not in mine
    assert "oa-db" not in page.text
    token = csrf(page.text)

    # The 附件4 form of the unit, uploaded unchanged: both systems answered "confirmed".
    form = client.get("/cleanup/form.xlsx")
    assert form.status_code == 200 and form.content[:2] == b"PK"
    bad = client.post(
        f"/cleanup/campaigns/{cid}/register",
        data={"csrf_token": token},
        files={"file": ("附件4.csv", b"a,b\n", "text/csv")},
    )
    assert bad.status_code == 422 and "cleanup-error" in bad.text
    r = client.post(
        f"/cleanup/campaigns/{cid}/register",
        data={"csrf_token": token},
        files={"file": ("附件4.xlsx", form.content, XLSX)},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    after = _statuses(client.get("/cleanup").text)
    systems = [items[("system", "课程实验平台")], items[("system", "旧网站")]]
    assert [after[i] for i in systems] == ["confirmed", "confirmed"]

    vm_item = next(v for (k, label), v in items.items() if k == "vm" and label.startswith("lab-web"))
    r = client.post(f"/cleanup/items/{vm_item}/confirm", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/cleanup?done=confirm"
    # Without the token: refused, nothing written.
    domain_item = next(v for (k, label), v in items.items() if k == "domain" and "课程实验平台" in label)
    assert client.post(f"/cleanup/items/{domain_item}/confirm", data={}).status_code == 403
    r = client.post(
        f"/cleanup/items/{domain_item}/correct",
        data={"csrf_token": token, "domain": "course.example.edu.cn", "note": "域名已更换"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    assert client.get(f"{API}/units/{a.id}/systems/{system.id}", headers=headers).json()["domains"] == [
        "course.example.edu.cn"
    ]
    old = items[("system", "旧网站")]
    refused = client.post(f"/cleanup/items/{old}/retire", data={"csrf_token": token})
    assert refused.status_code == 422 and "cleanup-error" in refused.text and "理由" in refused.text
    assert _statuses(refused.text)[old] == "confirmed"  # as the upload left it: nothing written
    # Another unit's item: the 404 page.
    assert client.post(f"/cleanup/items/{b_item}/confirm", data={"csrf_token": token}).status_code == 404
    r = client.post(
        f"/cleanup/items/{old}/retire",
        data={"csrf_token": token, "reason": "已并入站点群"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    r = client.post(
        f"/cleanup/campaigns/{cid}/confirm-all", data={"csrf_token": token}, follow_redirects=False
    )
    assert r.status_code == 303
    done = client.get("/cleanup?done=confirm-all")
    assert "pending" not in _statuses(done.text).values()
    assert _statuses(done.text)[vm_item] == "confirmed" and _statuses(done.text)[domain_item] == "corrected"
    assert _statuses(done.text)[old] == "retired"
    assert "本单位的清理项目" in done.text and "已更正" in done.text and "不再需要" in done.text
    client.get("/lang/en?next=/cleanup")
    english = client.get("/cleanup")
    assert "Your unit&#39;s items" in english.text or "Your unit's items" in english.text
    assert "Corrected" in english.text and "No longer needed" in english.text
    client.get("/lang/zh_CN?next=/cleanup")

    client.cookies.clear()
    _login(client, center.username)
    progress = client.get("/cleanup")
    assert progress.status_code == 200
    rows = dict(re.findall(r'<tr data-unit="(\d+)" data-pending="(\d+)">', progress.text))
    assert rows == {str(a.id): "0", str(b.id): "1"}
    assert 'data-unconfirmed="1"' in progress.text
    assert f'data-unconfirmed-item="{b_item}"' in progress.text and "oa-db" in progress.text
