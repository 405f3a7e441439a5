"""Shared pieces of the security tests: registering sources, posting signed alerts, reading the simulator,
and alert records written from each format's documentation (Suricata EVE, Wazuh alerts.json, Zeek
notice.log, Elastic/ECS, Alertmanager webhook v4)."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from fastapi.testclient import TestClient
from httpx import Response

from hypervisors import ConnectionConfig, HypervisorKind, create
from hypervisors.simulator import SimulatorAdapter
from tests.factories import Factory
from vmportal.alerts import signing
from vmportal.vm.models import VM

OUTSIDER = "198.51.100.23"
C2_SERVER = "203.0.113.80"
_seq = itertools.count(1)


def center_admin(client: TestClient, factory: Factory) -> dict[str, str]:
    return factory.login(client, factory.user("center_admin"))


def register(
    client: TestClient,
    headers: dict[str, str],
    kind: str,
    *,
    name: str | None = None,
    auth: str | None = None,
    cidrs: list[str] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name or f"{kind}-{next(_seq)}", "kind": kind}
    if auth:
        body["auth"] = auth
    if cidrs is not None:
        body["allowed_cidrs"] = cidrs
    r = client.post("/api/v1/alert-sources", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def encode(body: Any) -> bytes:
    if isinstance(body, bytes):
        return body
    return json.dumps(body, ensure_ascii=False).encode()


def post(
    client: TestClient,
    source: dict[str, Any],
    body: Any,
    *,
    msg_id: str | None = None,
    timestamp: int | None = None,
    secret: str | None = None,
    extra: dict[str, str] | None = None,
) -> Response:
    """Post as the source would: signed with its secret (or ``secret``), else with its bearer token."""
    data = encode(body)
    headers = {"Content-Type": "application/json", **(extra or {})}
    key = secret or source.get("secret")
    if key:
        headers.update(
            signing.signed_headers(
                data, key, msg_id=msg_id or f"msg_{next(_seq)}_{time.time_ns()}", timestamp=timestamp
            )
        )
    else:
        headers["Authorization"] = f"Bearer {source['token']}"
    return client.post(f"/api/v1/alerts/{source['name']}", content=data, headers=headers)


def simulator(factory: Factory) -> SimulatorAdapter:
    adapter = create(ConnectionConfig(kind=HypervisorKind.SIMULATOR, url=factory.connection().url))
    assert isinstance(adapter, SimulatorAdapter)
    return adapter


def nics(factory: Factory, vm: VM) -> list[bool]:
    return [n.connected for n in simulator(factory).get_vm(vm.hypervisor_ref).nics]


def calls(factory: Factory, vm: VM, operation: str) -> int:
    return sum(1 for t in simulator(factory).task_log(vm.hypervisor_ref) if t.extra["operation"] == operation)


def vm_state(client: TestClient, headers: dict[str, str], vm: VM) -> dict[str, Any]:
    r = client.get(f"/api/v1/vms/{vm.id}", headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def incidents(client: TestClient, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    r = client.get("/api/v1/incidents", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


# ---- records ---------------------------------------------------------------------------------------


def suricata_c2(vm_ip: str, *, flow_id: int | None = None, inbound: bool = False) -> dict[str, Any]:
    """A trojan's command-and-control traffic (EVE ``alert``). Outbound: the VM beacons out (it is the
    source); inbound: the C2 server answers the VM (the VM is the destination, ``to_client``)."""
    src, dst = (C2_SERVER, vm_ip) if inbound else (vm_ip, C2_SERVER)
    return {
        "timestamp": "2026-03-16T14:10:02.123456+0800",
        "flow_id": flow_id or 1_800_000_000 + next(_seq),
        "in_iface": "ens224",
        "event_type": "alert",
        "src_ip": src,
        "src_port": 443 if inbound else 51544,
        "dest_ip": dst,
        "dest_port": 51544 if inbound else 443,
        "proto": "TCP",
        "tx_id": 0,
        "direction": "to_client" if inbound else "to_server",
        "alert": {
            "action": "allowed",
            "gid": 1,
            "signature_id": 2035468,
            "rev": 2,
            "signature": "ET TROJAN Observed Malicious SSL Cert (Cobalt Strike CnC)",
            "category": "A Network Trojan was detected",
            "severity": 1,
        },
        "tls": {"sni": "static.cdn-update.example", "version": "TLS 1.2"},
    }


def wazuh_webshell(agent_ip: str, *, alert_id: str | None = None) -> dict[str, Any]:
    """Wazuh syscheck found a PHP web shell (rule group ``webshell``, level 12 → high)."""
    return {
        "timestamp": "2026-03-16T14:20:11.418+0800",
        "rule": {
            "level": 12,
            "description": "File added to the system: PHP web shell signature found",
            "id": "31516",
            "firedtimes": 1,
            "groups": ["ossec", "syscheck", "webshell"],
        },
        "agent": {"id": "017", "name": "kyc-web02", "ip": agent_ip},
        "manager": {"name": "wazuh-manager"},
        "id": alert_id or f"17736{next(_seq):05d}.55123",
        "full_log": "File '/var/www/html/images/1.php' added",
        "syscheck": {"path": "/var/www/html/images/1.php", "event": "added", "sha256_after": "cd" * 32},
        "decoder": {"name": "syscheck_new_entry"},
        "location": "syscheck",
    }


def wazuh_rule_510(agent_ip: str) -> dict[str, Any]:
    """Rootcheck's "Trojaned version of file" (rule 510): a weak signal that fires on ordinary binaries."""
    return {
        "timestamp": "2026-03-16T03:00:04.002+0800",
        "rule": {
            "level": 7,
            "description": "Host-based anomaly detection event (rootcheck).",
            "id": "510",
            "firedtimes": 1,
            "groups": ["ossec", "rootcheck"],
        },
        "agent": {"id": "021", "name": "lib-app01", "ip": agent_ip},
        "manager": {"name": "wazuh-manager"},
        "id": f"17735{next(_seq):05d}.9001",
        "full_log": "Trojaned version of file '/bin/ls' detected. Signature used: 'bash|^/bin/sh|file\\.h' (Generic).",
        "decoder": {"name": "rootcheck"},
        "data": {"title": "Trojaned version of file detected.", "file": "/bin/ls"},
        "location": "rootcheck",
    }


def zeek_malware(vm_ip: str) -> dict[str, Any]:
    """Zeek's Team Cymru hash registry match: the VM downloaded known malware (virus, high)."""
    return {
        "ts": 1773641200.25,
        "uid": f"CzK{next(_seq):06d}bq3",
        "id.orig_h": vm_ip,
        "id.orig_p": 50120,
        "id.resp_h": C2_SERVER,
        "id.resp_p": 80,
        "proto": "tcp",
        "note": "TeamCymruMalwareHashRegistry::Match",
        "msg": "Malware Hash Registry Detection rate: 71%  Last seen: 2026-03-10 08:00:00",
        "sub": "https://www.virustotal.com/gui/search/?query=a1b2c3",
        "src": vm_ip,
        "dst": C2_SERVER,
        "p": 80,
        "actions": ["Notice::ACTION_LOG"],
    }


def elastic_malware(vm_ip: str) -> dict[str, Any]:
    """A Kibana rule's alert document as the center's webhook template renders it (ECS fields)."""
    return {
        "@timestamp": "2026-03-16T06:31:00.000Z",
        "event": {"kind": "alert", "category": ["malware"], "module": "endpoint"},
        "kibana": {
            "alert": {
                "uuid": f"e1a5{next(_seq):028d}",
                "severity": "high",
                "risk_score": 73,
                "rule": {"name": "Malicious File - Detected - Elastic Defend"},
            }
        },
        "host": {"name": "cwc-oa01", "ip": [vm_ip]},
        "file": {"path": "/tmp/.x/kworker", "hash": {"sha256": "ef" * 32}},
    }


def alertmanager(vm_ip: str, *, status: str = "firing", fingerprint: str = "c0ffee01") -> dict[str, Any]:
    """An Alertmanager v4 webhook notification with one backdoor alert labelled with the VM's address."""
    alert = {
        "status": status,
        "labels": {
            "alertname": "BackdoorListener",
            "category": "backdoor",
            "severity": "critical",
            "vm_ip": vm_ip,
        },
        "annotations": {"summary": "Unexpected listener on tcp/31337"},
        "startsAt": "2026-03-16T06:40:00.000Z",
        "endsAt": "2026-03-16T07:40:00.000Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.nic.example.edu.cn/graph?g0.expr=up",
        "fingerprint": fingerprint,
    }
    return {
        "version": "4",
        "groupKey": '{}:{alertname="BackdoorListener"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "vmportal",
        "groupLabels": {"alertname": "BackdoorListener"},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager.nic.example.edu.cn",
        "alerts": [alert],
    }
