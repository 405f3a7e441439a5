"""Alerts from the senders a center really runs: Suricata, Wazuh and Zeek sources are given a bearer
token by default (their shippers send a static Authorization header and compute no signature), and
a whole Suricata ``eve.json`` posted as it is keeps only its ``alert`` events; the flows, DNS, HTTP,
TLS, file and stats lines are counted in the answer and dropped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from tests.factories import Factory
from tests.security.helpers import C2_SERVER, post, register, wazuh_webshell, zeek_malware
from vmportal.incidents.models import AlertRecord, SecurityAlert
from vmportal.kit import db

EVE = (Path(__file__).parent / "data" / "eve.json").read_bytes()


def _center(client: TestClient, factory: Factory) -> dict[str, str]:
    return factory.login(client, factory.user("center_admin"))


def _bearer(source: dict[str, Any], body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, {"Authorization": f"Bearer {source['token']}", "Content-Type": "application/x-ndjson"}


@pytest.mark.parametrize("kind", ["suricata", "wazuh", "zeek", "elastic", "alertmanager"])
def test_sensor_sources_get_a_bearer_token_by_default(
    client: TestClient, factory: Factory, kind: str
) -> None:
    source = register(client, _center(client, factory), kind)
    assert source["auth"] == "bearer" and source["token"] and source["secret"] is None


def test_a_generic_source_still_signs_and_any_source_can_ask_for_a_secret(
    client: TestClient, factory: Factory
) -> None:
    h = _center(client, factory)
    generic = register(client, h, "generic")
    assert generic["auth"] == "hmac" and generic["secret"] and generic["token"] is None
    signed = register(client, h, "suricata", auth="hmac")
    assert signed["auth"] == "hmac" and signed["secret"]


def test_wazuh_and_zeek_alerts_posted_with_the_token_are_accepted(
    client: TestClient, factory: Factory
) -> None:
    h = _center(client, factory)
    for kind, record in (("wazuh", wazuh_webshell("10.20.1.15")), ("zeek", zeek_malware("10.20.1.15"))):
        source = register(client, h, kind)
        r = post(client, source, record)  # no secret: posted with the bearer token
        assert r.status_code == 202, r.text
        assert r.json()["accepted"] == 1 and r.json()["dropped"] == 0
        wrong = client.post(
            f"/api/v1/alerts/{source['name']}",
            content=json.dumps(record).encode(),
            headers={"Authorization": "Bearer not-the-token", "Content-Type": "application/json"},
        )
        assert wrong.status_code == 401


def test_a_whole_eve_json_stores_only_its_alerts_and_says_what_it_dropped(
    client: TestClient, factory: Factory
) -> None:
    source = register(client, _center(client, factory), "suricata")
    body, headers = _bearer(source, EVE)
    r = client.post(f"/api/v1/alerts/{source['name']}", content=body, headers=headers)
    assert r.status_code == 202, r.text
    answer = r.json()
    assert (answer["records"], answer["accepted"], answer["rejected"], answer["dropped"]) == (9, 2, 0, 7)
    assert answer["dropped_event_types"] == {
        "anomaly": 1,
        "dns": 1,
        "fileinfo": 1,
        "flow": 1,
        "http": 1,
        "stats": 1,
        "tls": 1,
    }
    # Each result names its line in the file the sensor wrote (the 3rd and the 8th).
    assert [res["index"] for res in answer["results"]] == [2, 7]
    with db.transaction(read_only=True) as s:
        records = s.exec(select(AlertRecord).where(AlertRecord.source_id == source["id"])).all()
        alerts = s.exec(select(SecurityAlert).where(SecurityAlert.source_id == source["id"])).all()
    assert len(records) == 2 and all('"event_type":"alert"' in row.raw for row in records)
    assert sorted(a.title for a in alerts) == [
        "ET MALWARE Cobalt Strike Beacon Observed",
        "ET SCAN Potential SSH Scan",
    ]
    assert any(C2_SERVER in json.dumps(a.addresses) for a in alerts)


def test_a_post_of_flows_only_is_accepted_and_stores_nothing(client: TestClient, factory: Factory) -> None:
    source = register(client, _center(client, factory), "generic", auth="bearer")
    lines = [line for line in EVE.splitlines() if b'"event_type":"alert"' not in line]
    body, headers = _bearer(source, b"\n".join(lines))
    r = client.post(f"/api/v1/alerts/{source['name']}", content=body, headers=headers)
    assert r.status_code == 202, r.text  # not 422: a sender retrying it would be wrong
    assert (r.json()["records"], r.json()["accepted"], r.json()["dropped"]) == (7, 0, 7)
    with db.transaction(read_only=True) as s:
        assert not s.exec(select(AlertRecord).where(AlertRecord.source_id == source["id"])).all()


def test_a_wazuh_source_keeps_what_it_is_sent(client: TestClient, factory: Factory) -> None:
    """Only EVE lines are sorted out: a Wazuh or Zeek record is never dropped for a field it has."""
    source = register(client, _center(client, factory), "wazuh")
    record = {**wazuh_webshell("10.20.1.15"), "event_type": "syscheck"}
    r = post(client, source, record)
    assert r.status_code == 202 and r.json()["accepted"] == 1 and r.json()["dropped"] == 0
