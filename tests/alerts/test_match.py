"""Matching an alert to a VM: by whichever address or hostname the inventory knows, with its role."""

from __future__ import annotations

from typing import Any

import pytest

from tests.alerts.helpers import C2_SERVER, OUTSIDER, VM_A, VM_B, VM_V6, one
from tests.alerts.test_suricata import eve
from vmportal.alerts import AddressRole, Inventory, match_all, match_vm
from vmportal.alerts.model import normalise_host, normalise_ip


def trojan(src: str, dst: str, **fields: Any) -> Any:
    record = eve(
        {"signature_id": 1, "signature": "ET MALWARE beacon", "category": "A Network Trojan was detected"},
        src_ip=src,
        dest_ip=dst,
        **fields,
    )
    return one("suricata", record)


def scan(src: str, dst: str) -> Any:
    record = eve(
        {"signature_id": 2, "signature": "ET SCAN Nmap", "category": "Detection of a Network Scan"},
        src_ip=src,
        dest_ip=dst,
    )
    return one("suricata", record)


def test_the_vm_as_source() -> None:
    found = match_vm(trojan(VM_A, C2_SERVER), {VM_A: "a"})
    assert found is not None
    assert (found.vm, found.via, found.value, found.role, found.field, found.accused) == (
        "a",
        "address",
        VM_A,
        AddressRole.SRC,
        "src_ip",
        True,
    )


def test_the_vm_as_destination() -> None:
    found = match_vm(trojan(C2_SERVER, VM_A), {VM_A: "a"})  # the C2 answering: the VM is still infected
    assert found is not None and found.role is AddressRole.DST and found.accused


def test_never_blindly_the_source() -> None:
    # An outsider scans a VM: the source is not ours, the VM is the victim.
    alert = scan(OUTSIDER, VM_A)
    assert match_vm(alert, {}) is None
    found = match_vm(alert, {VM_A: "a"})
    assert found is not None and found.vm == "a" and not found.accused


def test_both_ends_are_vms_the_accused_one_comes_first() -> None:
    alert = scan(VM_B, VM_A)  # VM B scans VM A
    matches = match_all(alert, {VM_A: "a", VM_B: "b"})
    assert [(m.vm, m.accused) for m in matches] == [("b", True), ("a", False)]


def test_one_match_per_vm_best_first() -> None:
    alert = trojan(VM_A, VM_V6)  # two addresses of one VM
    matches = match_all(alert, {VM_A: "a", VM_V6: "a"})
    assert [(m.vm, m.value) for m in matches] == [("a", VM_A)]


@pytest.mark.parametrize(
    "key",
    [
        "2001:db8:20::15",
        "2001:DB8:20:0:0:0:0:15",
        "2001:0db8:0020:0000:0000:0000:0000:0015",
        "[2001:db8:20::15]",
        "2001:db8:20::15%eth0",
    ],
)
def test_ipv6_inventory_keys_are_normalised(key: str) -> None:
    found = match_vm(trojan(VM_V6, C2_SERVER), {key: "v6"})
    assert found is not None and found.vm == "v6" and found.value == VM_V6


def test_ipv4_mapped_ipv6_matches_the_ipv4_inventory() -> None:
    found = match_vm(trojan("::ffff:10.20.1.15", C2_SERVER), {VM_A: "a"})
    assert found is not None and found.vm == "a" and found.value == VM_A


@pytest.mark.parametrize(
    "key",
    ["jwc.example.edu.cn", "JWC.Example.edu.CN.", "jwc.example.edu.cn:443", "https://jwc.example.edu.cn/"],
)
def test_hostnames_are_normalised(key: str) -> None:
    alert = trojan(OUTSIDER, C2_SERVER, http={"hostname": "JWC.example.edu.cn:8080"})
    found = match_vm(alert, {}, {key: "site"})
    assert found is not None and (found.vm, found.via, found.value, found.field) == (
        "site",
        "hostname",
        "jwc.example.edu.cn",
        "target_host",
    )


def test_hostnames_match_exactly_not_by_parent_domain() -> None:
    alert = trojan(OUTSIDER, C2_SERVER, http={"hostname": "www.lib.example.edu.cn"})
    assert match_vm(alert, {}, {"lib.example.edu.cn": "lib", "example.edu.cn": "main-site"}) is None


def test_an_accused_address_beats_a_named_hostname() -> None:
    alert = scan(VM_B, OUTSIDER)
    alert_with_host = one(
        "suricata",
        eve(
            {"signature_id": 2, "signature": "ET SCAN Nmap", "category": "Detection of a Network Scan"},
            src_ip=VM_B,
            dest_ip=VM_A,
            http={"hostname": "jwc.example.edu.cn"},
        ),
    )
    assert match_vm(alert, {VM_B: "b"}) is not None
    matches = match_all(alert_with_host, {VM_B: "b"}, {"jwc.example.edu.cn": "a"})
    assert [(m.vm, m.via, m.accused) for m in matches] == [("b", "address", True), ("a", "hostname", False)]


def test_inventory_errors() -> None:
    with pytest.raises(ValueError, match="not a valid address"):
        Inventory({"vm-17": 1})
    with pytest.raises(ValueError, match="belongs to two VMs"):
        Inventory({"2001:db8::1": 1, "2001:DB8::0001": 2})
    inventory = Inventory({VM_A: 1, "10.20.1.15": 1})  # the same VM twice is fine
    assert inventory.match(trojan(VM_A, C2_SERVER)) is not None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.20.1.15", VM_A),
        (" 10.20.1.15 ", VM_A),
        ("[::1]", "::1"),
        ("fe80::1%25eth0", "fe80::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("10.20.1.15:80", None),
        ("300.1.1.1", None),
        ("", None),
        (None, None),
        (42, None),
    ],
)
def test_normalise_ip(value: Any, expected: str | None) -> None:
    assert normalise_ip(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("WWW.Example.EDU.cn.", "www.example.edu.cn"),
        ("web01:9100", "web01"),
        ("http://a.example/x?y", "a.example"),
        ("a.example/path", "a.example"),
        ("10.20.1.15", None),
        ("[::1]:80", None),
        ("bad host", None),
        ("", None),
        ("http://[::1", None),
        ("教务处.Example.edu.cn", "xn--zfro2mtrl.example.edu.cn"),
        ("xn--zfro2mtrl.example.edu.cn", "xn--zfro2mtrl.example.edu.cn"),
    ],
)
def test_normalise_host(value: str, expected: str | None) -> None:
    assert normalise_host(value) == expected
