"""The alert webhook through the HTTP API: formats in, the right VM contained, and every kind of bad post
refused with its status and a clear message (nothing accepted lost)."""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import select

from tests.factories import Factory
from tests.security.helpers import (
    OUTSIDER,
    alertmanager,
    calls,
    center_admin,
    elastic_malware,
    encode,
    incidents,
    nics,
    post,
    register,
    suricata_c2,
    vm_state,
    wazuh_webshell,
    zeek_malware,
)
from vmportal.alerts import ingest, signing
from vmportal.audit.models import AuditEntry
from vmportal.incidents.models import AlertRecord, SecurityAlert
from vmportal.kit import db


def _contained(
    client: TestClient, headers: dict[str, str], factory: Factory, vm: Any, category: str
) -> dict[str, Any]:
    found = incidents(client, headers, vm_id=vm.id)
    assert len(found) == 1, found
    incident = found[0]
    assert (incident["category"], incident["state"], incident["containment_state"]) == (
        category,
        "contained",
        "confirmed",
    ), incident
    assert incident["executed_action"] == "isolate_network"
    assert (
        incident["containment_latency_seconds"] is not None and incident["containment_latency_seconds"] >= 0
    )
    assert incident["reasons_zh"] and incident["decision_rule"]["action"] == "isolate_network"
    state = vm_state(client, headers, vm)
    assert (state["security_state"], state["network_connected"]) == ("suspended", False)
    assert nics(factory, vm) and not any(nics(factory, vm))  # read back from the hypervisor
    return incident


def test_signed_records_of_each_format_contain_the_vm_they_accuse(
    client: TestClient, factory: Factory
) -> None:
    h = center_admin(client, factory)
    unit = factory.unit()
    vms = [factory.vm(unit) for _ in range(6)]
    bystander = factory.vm(unit)
    cases = [
        ("suricata", suricata_c2(vms[0].ip_address), "trojan"),  # the VM is the source
        ("suricata", suricata_c2(vms[1].ip_address, inbound=True), "trojan"),  # the VM is the destination
        ("wazuh", wazuh_webshell(vms[2].ip_address), "webshell"),
        ("zeek", zeek_malware(vms[3].ip_address), "virus"),
        ("elastic", elastic_malware(vms[4].ip_address), "virus"),
        ("alertmanager", alertmanager(vms[5].ip_address), "backdoor"),
    ]
    for (kind, record, category), vm in zip(cases, vms, strict=True):
        source = register(client, h, kind, auth="hmac")
        r = post(client, source, record)
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["accepted"] == 1 and body["results"][0]["status"] == "accepted"
        assert body["results"][0]["format"] == kind
        incident = _contained(client, h, factory, vm, category)
        assert incident["alert_count"] == 1 and incident["vm_ip"] == vm.ip_address
    inbound = incidents(client, h, vm_id=vms[1].id)[0]
    timeline = client.get(f"/api/v1/incidents/{inbound['id']}/timeline", headers=h).json()
    alert_item = next(i for i in timeline if i["kind"] == "alert")
    assert alert_item["data"]["match"]["role"] == "dst" and alert_item["data"]["match"]["accused"]
    assert [i["kind"] for i in timeline] == ["alert", "opened", "containment_queued", "contained"]
    assert any(nics(factory, bystander))  # nobody else touched
    assert vm_state(client, h, bystander)["security_state"] == "normal"


def test_generic_source_json_lines_and_arrays(client: TestClient, factory: Factory) -> None:
    h = center_admin(client, factory)
    unit = factory.unit()
    a, b, c = factory.vm(unit), factory.vm(unit), factory.vm(unit)
    source = register(client, h, "generic")
    lines = b"\n".join(encode(r) for r in (suricata_c2(a.ip_address), wazuh_webshell(b.ip_address))) + b"\n"
    r = post(client, source, lines)
    assert r.status_code == 202, r.text
    assert [x["format"] for x in r.json()["results"]] == ["suricata", "wazuh"]
    r = post(client, source, [zeek_malware(c.ip_address)])
    assert r.status_code == 202 and r.json()["results"][0]["format"] == "zeek"
    for vm in (a, b, c):
        assert not any(nics(factory, vm))


def test_bearer_token_source(client: TestClient, factory: Factory) -> None:
    h = center_admin(client, factory)
    vm = factory.vm(factory.unit())
    source = register(client, h, "alertmanager")
    assert source["auth"] == "bearer" and source["token"] and source["secret"] is None
    r = post(client, source, alertmanager(vm.ip_address))
    assert r.status_code == 202, r.text
    assert not any(nics(factory, vm))
    wrong = client.post(
        f"/api/v1/alerts/{source['name']}",
        content=encode(alertmanager(vm.ip_address, fingerprint="other")),
        headers={"Authorization": "Bearer not-the-token"},
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"]["reason"] == "token_invalid"
    assert "not this source's token" in wrong.json()["error"]["message"]
    signed_instead = post(client, source, alertmanager(vm.ip_address), secret="whsec_" + "QUFB" * 8)
    assert signed_instead.status_code == 401
    assert "bearer" in signed_instead.json()["error"]["message"].lower()


def test_forged_stale_and_unsigned_posts_are_401_and_audited(client: TestClient, factory: Factory) -> None:
    h = center_admin(client, factory)
    vm = factory.vm(factory.unit())
    source = register(client, h, "suricata", auth="hmac")
    record = suricata_c2(vm.ip_address)

    forged = post(client, source, record, secret=signing.new_secret())
    assert forged.status_code == 401
    assert forged.json()["error"]["reason"] == "signature_invalid"
    assert "does not match" in forged.json()["error"]["message"]

    stale = post(client, source, record, timestamp=int(time.time()) - 301)
    assert stale.status_code == 401
    assert stale.json()["error"]["reason"] == "timestamp_out_of_window"
    # 301 s when signed, a second or two more if the machine is busy before the portal reads it.
    age = re.search(r"(\d+) s old", stale.json()["error"]["message"])
    assert age is not None and 301 <= int(age.group(1)) <= 330

    tampered_headers = signing.signed_headers(encode(record), source["secret"])
    tampered = client.post(
        f"/api/v1/alerts/{source['name']}",
        content=encode({**record, "src_ip": OUTSIDER}),
        headers=tampered_headers,
    )
    assert tampered.status_code == 401

    unsigned = client.post(f"/api/v1/alerts/{source['name']}", content=encode(record))
    assert unsigned.status_code == 401
    assert unsigned.json()["error"]["reason"] == "missing_headers"
    assert "webhook-signature" in unsigned.json()["error"]["message"]

    assert incidents(client, h) == []
    assert any(nics(factory, vm))
    with db.transaction() as s:
        denied = s.exec(
            select(AuditEntry).where(
                AuditEntry.action == "security.alert.receive", AuditEntry.result == "denied"
            )
        ).all()
        assert len(denied) == 4
        assert s.exec(select(AlertRecord)).all() == []  # nothing stored from an unauthenticated post


def test_replayed_webhook_id_is_a_duplicate_without_a_second_incident(
    client: TestClient, factory: Factory
) -> None:
    h = center_admin(client, factory)
    vm = factory.vm(factory.unit())
    source = register(client, h, "suricata", auth="hmac")
    record = suricata_c2(vm.ip_address)
    first = post(client, source, record, msg_id="msg_replay_1")
    assert first.status_code == 202
    again = post(client, source, record, msg_id="msg_replay_1")
    assert again.status_code == 200
    assert again.json()["duplicate"] is True and again.json()["webhook_id"] == "msg_replay_1"
    found = incidents(client, h)
    assert len(found) == 1 and found[0]["alert_count"] == 1
    # The same record under a new webhook id is the same alert (same flow_id:signature_id:tx_id).
    resent = post(client, source, record, msg_id="msg_replay_2")
    assert resent.status_code == 202
    assert resent.json()["results"][0]["status"] == "duplicate"
    assert resent.json()["duplicates"] == 1
    assert incidents(client, h)[0]["alert_count"] == 1
    alerts = client.get("/api/v1/alerts", headers=h).json()
    assert alerts["total"] == 1 and alerts["items"][0]["repeats"] == 1
    assert calls(factory, vm, "set_network") == 1


def test_bad_posts(client: TestClient, factory: Factory) -> None:
    h = center_admin(client, factory)
    vm = factory.vm(factory.unit())
    source = register(client, h, "suricata")

    unknown = client.post("/api/v1/alerts/no-such-source", content=b"{}")
    assert unknown.status_code == 404
    assert "alert source no-such-source not found" in unknown.json()["error"]["message"]

    malformed = post(client, source, b'{"event_type": "alert", "src_ip": ')
    assert malformed.status_code == 400
    assert malformed.json()["error"]["reason"] == "malformed_json"
    assert "not JSON" in malformed.json()["error"]["message"]

    limit = factory.settings.alert_max_bytes
    padding = "x" * (limit + 1)
    big = post(client, source, {**suricata_c2(vm.ip_address), "payload_printable": padding})
    assert big.status_code == 413
    assert str(limit) in big.json()["error"]["message"]

    # A body that says nothing of its length is counted while it is read.
    def chunks() -> Any:
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    streamed = client.post(f"/api/v1/alerts/{source['name']}", content=chunks())
    assert streamed.status_code == 413

    with db.transaction() as s:
        assert s.exec(select(AlertRecord)).all() == []
    assert any(nics(factory, vm))


def test_unparseable_records_are_kept_raw_and_answered_422(client: TestClient, factory: Factory) -> None:
    h = center_admin(client, factory)
    vm = factory.vm(factory.unit())
    source = register(client, h, "generic")
    junk = {"hostname": "x", "message": "disk almost full", "level": "warning"}
    r = post(client, source, junk)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "not_understood" and error["kept"] is True
    assert "no parser recognises this record" in error["message"]
    record_id = error["results"][0]["record_id"]

    failed = client.get("/api/v1/alert-records", params={"failed": "true"}, headers=h).json()
    assert failed["total"] == 1 and failed["items"][0]["id"] == record_id
    kept = client.get(f"/api/v1/alert-records/{record_id}", headers=h).json()
    assert json.loads(kept["raw"]) == junk and kept["error_code"] == "not_understood"

    # A mixed batch: the good record is accepted, the bad one kept with its reason; 202.
    mixed = post(client, source, [suricata_c2(vm.ip_address), junk, {"event_type": "flow"}])
    assert mixed.status_code == 202
    statuses = [x["status"] for x in mixed.json()["results"]]
    assert statuses == ["accepted", "rejected"]  # an EVE event that is not an alert is only counted
    assert mixed.json()["dropped_event_types"] == {"flow": 1}
    assert mixed.json()["results"][1]["reason"].startswith("no parser recognises")
    assert not any(nics(factory, vm))

    # A source registered as one format says so when the record is another.
    suricata_only = register(client, h, "suricata")
    wrong = post(client, suricata_only, wazuh_webshell(vm.ip_address))
    assert wrong.status_code == 422
    assert "looks like wazuh" in wrong.json()["error"]["results"][0]["reason"]


def test_address_ranges_and_inactive_sources(client: TestClient, factory: Factory) -> None:
    h = center_admin(client, factory)
    vm = factory.vm(factory.unit())
    source = register(client, h, "suricata", cidrs=["10.99.0.0/16"])
    r = post(client, source, suricata_c2(vm.ip_address))
    assert r.status_code == 403
    assert r.json()["error"]["reason"] == "address_not_allowed"
    assert "10.99.0.0/16" in r.json()["error"]["message"]
    # The test client's address is "testclient"; allow any address, then deactivate.
    patched = client.patch(f"/api/v1/alert-sources/{source['id']}", json={"allowed_cidrs": []}, headers=h)
    assert patched.status_code == 200
    assert post(client, source, suricata_c2(vm.ip_address)).status_code == 202
    client.patch(f"/api/v1/alert-sources/{source['id']}", json={"active": False}, headers=h)
    r = post(client, source, suricata_c2(vm.ip_address))
    assert r.status_code == 403 and r.json()["error"]["reason"] == "source_inactive"


def test_unmatched_alerts_wait_for_a_human_who_assigns_them(client: TestClient, factory: Factory) -> None:
    h = center_admin(client, factory)
    unit = factory.unit()
    vm = factory.vm(unit)
    source = register(client, h, "suricata")
    r = post(client, source, suricata_c2("10.77.7.7"))  # no VM has this address
    assert r.status_code == 202
    waiting = client.get("/api/v1/alerts", params={"matched": "false"}, headers=h).json()
    assert waiting["total"] == 1 and waiting["items"][0]["state"] == "unmatched"
    alert_id = waiting["items"][0]["id"]
    assert incidents(client, h) == []

    operator = factory.login(client, factory.user("center_operator"))
    unit_admin = factory.login(client, factory.user("unit_admin", unit))
    assert (
        client.post(
            f"/api/v1/alerts/{alert_id}/assign", json={"vm_id": vm.id}, headers=unit_admin
        ).status_code
        == 403
    )
    r = client.post(f"/api/v1/alerts/{alert_id}/assign", json={"vm_id": vm.id}, headers=operator)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "matched" and r.json()["match"]["via"] == "manual"
    assert not any(nics(factory, vm))
    again = client.post(f"/api/v1/alerts/{alert_id}/assign", json={"vm_id": vm.id}, headers=operator)
    assert again.status_code == 409 and again.json()["error"]["state"] == "matched"
    assert client.get("/api/v1/alerts", params={"matched": "false"}, headers=h).json()["total"] == 0


def test_a_vm_named_only_as_the_victim_is_not_contained(client: TestClient, factory: Factory) -> None:
    h = center_admin(client, factory)
    vm = factory.vm(factory.unit())
    source = register(client, h, "suricata")
    attack = suricata_c2(OUTSIDER)
    attack.update(src_ip=OUTSIDER, dest_ip=vm.ip_address, dest_port=80, direction="to_server")
    attack["alert"] = {
        "action": "allowed",
        "gid": 1,
        "signature_id": 2034647,
        "rev": 2,
        "signature": "ET EXPLOIT Apache log4j RCE Attempt (http uri)",
        "category": "Attempted Administrator Privilege Gain",
        "severity": 1,
    }
    r = post(client, source, attack)
    assert r.status_code == 202
    incident = incidents(client, h, vm_id=vm.id)[0]
    assert (incident["state"], incident["action"], incident["containment_state"]) == (
        "open",
        "notify_only",
        "none",
    )
    assert "victim" in " ".join(incident["reasons_en"])
    assert any(nics(factory, vm))


def test_alertmanager_resolved_never_releases(client: TestClient, factory: Factory) -> None:
    h = center_admin(client, factory)
    vm = factory.vm(factory.unit())
    source = register(client, h, "alertmanager")
    assert post(client, source, alertmanager(vm.ip_address)).status_code == 202
    r = post(client, source, alertmanager(vm.ip_address, status="resolved"))
    assert r.status_code == 202 and r.json()["results"][0]["status"] == "accepted"
    incident = incidents(client, h, vm_id=vm.id)[0]
    assert incident["state"] == "contained" and incident["alert_count"] == 1
    assert vm_state(client, h, vm)["security_state"] == "suspended"
    assert not any(nics(factory, vm))
    timeline = client.get(f"/api/v1/incidents/{incident['id']}/timeline", headers=h).json()
    resolved = [i for i in timeline if i["kind"] == "alert" and "resolved" in i["message_en"]]
    assert len(resolved) == 1
    with db.transaction() as s:
        assert len(s.exec(select(SecurityAlert)).all()) == 2


def test_alerts_are_for_the_center_not_the_units(client: TestClient, factory: Factory) -> None:
    unit = factory.unit()
    unit_admin = factory.login(client, factory.user("unit_admin", unit))
    auditor = factory.login(client, factory.user("auditor"))
    assert client.get("/api/v1/alerts", headers=unit_admin).status_code == 403
    assert client.get("/api/v1/alert-records", headers=unit_admin).status_code == 403
    assert client.get("/api/v1/alerts", headers=auditor).status_code == 200


def test_an_ipv6_inventory_address_and_a_system_domain_match(client: TestClient, factory: Factory) -> None:
    h = center_admin(client, factory)
    unit = factory.unit()
    v6 = factory.vm(unit, ips=["10.20.9.9", "2001:db8:20::15"])
    system = factory.system(unit)
    web = factory.vm(unit, system_id=system.id)
    source = register(client, h, "generic")
    record = suricata_c2("2001:db8:20:0:0:0:0:15")
    record["dest_ip"] = "2001:db8:ffff::80"
    assert post(client, source, record).status_code == 202
    assert not any(nics(factory, v6))
    # An Elastic alert naming only the host by the system's domain.
    by_name = elastic_malware("192.0.2.1")
    by_name["host"] = {"name": system.domains[0]}
    assert post(client, source, by_name).status_code == 202
    incident = incidents(client, h, vm_id=web.id)[0]
    assert incident["state"] == "contained" and not any(nics(factory, web))


def test_replay_memory_is_pruned_after_a_day(client: TestClient, factory: Factory) -> None:
    h = center_admin(client, factory)
    vm = factory.vm(factory.unit())
    source = register(client, h, "suricata", auth="hmac")
    post(client, source, suricata_c2(vm.ip_address))
    assert ingest.prune_webhook_ids() == 0  # a fresh id is kept
    assert ingest.prune_webhook_ids(timedelta(seconds=-1)) == 1
