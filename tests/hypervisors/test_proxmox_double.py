"""The Proxmox double refuses what a real PVE 9.1.3 node refuses, and keeps its task promises.

If the double accepted a malformed request, the adapter tests built on it would prove nothing, so
these tests talk to it with plain ``requests``, not through the adapter.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import pytest
import requests

# The fixtures arrive as a plugin (so pytest rewrites the double's asserts); the module is imported
# inside the tests that need more than annotations, after the plugin has loaded it.

if TYPE_CHECKING:
    from tests.support.proxmox_double import ProxmoxDouble

API = "/api2/json"


def call(
    double: ProxmoxDouble,
    method: str,
    path: str,
    *,
    token: str | None = None,
    json_body: dict[str, Any] | None = None,
    **params: Any,
) -> requests.Response:
    headers = {"Authorization": token or f"PVEAPIToken={double.token_id}={double.token_secret}"}
    send: dict[str, Any] = {"params": params} if method in ("GET", "DELETE") else {"data": params}
    if json_body is not None:
        send = {"json": json_body}
    return requests.request(
        method, f"{double.url}{API}{path}", headers=headers, verify=double.ca_file, timeout=5, **send
    )


def errors_of(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 400, response.text
    assert response.reason == "Parameter verification failed."
    body = response.json()
    assert body["data"] is None
    return dict(body["errors"])


def wait_task(double: ProxmoxDouble, upid: str) -> dict[str, Any]:
    node = upid.split(":")[1]
    for _ in range(200):
        status = call(double, "GET", f"/nodes/{node}/tasks/{upid}/status").json()["data"]
        if status["status"] == "stopped":
            return dict(status)
        time.sleep(0.01)
    raise AssertionError(f"task {upid} never finished")


# ---- path and method ----------------------------------------------------------------------


def test_unknown_path_is_501(proxmox_double: ProxmoxDouble) -> None:
    response = call(proxmox_double, "GET", "/nodes/pve1/qemu/100/teleport")
    assert response.status_code == 501
    assert "not implemented" in response.reason
    assert not proxmox_double.requests[-1].schema_valid


def test_path_outside_api_is_501(proxmox_double: ProxmoxDouble) -> None:
    response = requests.get(
        f"{proxmox_double.url}/api2/extjs/version", verify=proxmox_double.ca_file, timeout=5
    )
    assert response.status_code == 501


def test_unknown_method_on_known_path_is_501(proxmox_double: ProxmoxDouble) -> None:
    assert call(proxmox_double, "DELETE", "/version").status_code == 501
    assert call(proxmox_double, "PATCH", "/nodes/pve1/qemu/100/config").status_code == 501
    assert all(r.rejected for r in proxmox_double.requests)


# ---- parameters ---------------------------------------------------------------------------


def test_missing_required_parameter_is_named(proxmox_double: ProxmoxDouble) -> None:
    errors = errors_of(call(proxmox_double, "POST", "/nodes/pve1/qemu/9000/clone", name="web01"))
    assert errors == {"newid": "property is missing and it is not optional"}


def test_unknown_parameter_is_named(proxmox_double: ProxmoxDouble) -> None:
    errors = errors_of(call(proxmox_double, "POST", "/nodes/pve1/qemu/9000/clone", newid=150, linked=1))
    assert list(errors) == ["linked"]
    assert "not defined in schema" in errors["linked"]


@pytest.mark.parametrize(
    ("params", "field", "reason"),
    [
        ({"newid": "abc"}, "newid", "type check ('integer') failed - got 'abc'"),
        ({"newid": 42}, "newid", "value must have a minimum value of 100"),
        ({"newid": 1_000_000_000}, "newid", "value must have a maximum value of 999999999"),
        ({"newid": 150, "full": "maybe"}, "full", "type check ('boolean') failed - got 'maybe'"),
        ({"newid": 150, "format": "vdi"}, "format", "does not have a value in the enumeration"),
        ({"newid": 150, "name": "web_01"}, "name", "valid DNS name"),
        ({"newid": 150, "storage": "local lvm"}, "storage", "storage ID"),
        ({"newid": 150, "target": "-pve2"}, "target", "valid node name"),
        ({"newid": 150, "snapname": "x" * 41}, "snapname", "may only be 40 characters long"),
    ],
)
def test_ill_typed_parameter_is_named(
    proxmox_double: ProxmoxDouble, params: dict[str, Any], field: str, reason: str
) -> None:
    errors = errors_of(call(proxmox_double, "POST", "/nodes/pve1/qemu/9000/clone", **params))
    assert field in errors
    assert reason in errors[field]


def test_path_parameters_are_verified(proxmox_double: ProxmoxDouble) -> None:
    assert (
        "type check ('integer')"
        in errors_of(call(proxmox_double, "GET", "/nodes/pve1/qemu/web/config"))["vmid"]
    )
    assert (
        "minimum value of 100" in errors_of(call(proxmox_double, "GET", "/nodes/pve1/qemu/99/config"))["vmid"]
    )
    assert "node name" in errors_of(call(proxmox_double, "GET", "/nodes/pve_1/qemu/100/config"))["node"]


def test_property_string_keys_and_values_are_verified(proxmox_double: ProxmoxDouble) -> None:
    base = "virtio=BC:24:11:00:01:00,bridge=vmbr0"
    path = "/nodes/pve1/qemu/100/config"
    assert "colour" in errors_of(call(proxmox_double, "POST", path, net0=f"{base},colour=red"))["net0"]
    assert "link_down" in errors_of(call(proxmox_double, "POST", path, net0=f"{base},link_down=2"))["net0"]
    assert "tag" in errors_of(call(proxmox_double, "POST", path, net0=f"{base},tag=5000"))["net0"]
    assert "net0" in errors_of(call(proxmox_double, "POST", path, net0="bridge=vmbr0"))  # model is required
    assert "ipconfig0" in errors_of(call(proxmox_double, "POST", path, ipconfig0="ip=10.0.0.5,gw=10.0.0.1"))
    assert "nameserver" in errors_of(call(proxmox_double, "POST", path, nameserver="10.0.0.1 dns_server!"))
    assert "net32" in errors_of(call(proxmox_double, "POST", path, net32=base))  # PVE has net0..net31
    accepted = call(
        proxmox_double, "POST", path, net0=f"{base},link_down=1", ipconfig0="ip=10.0.0.5/24,gw=10.0.0.1"
    )
    assert accepted.status_code == 200, accepted.text


def test_requires_is_enforced(proxmox_double: ProxmoxDouble) -> None:
    errors = errors_of(call(proxmox_double, "PUT", "/nodes/pve1/qemu/100/config", force=1))
    assert "delete" in errors


def test_json_body_is_verified_too(proxmox_double: ProxmoxDouble) -> None:
    response = call(proxmox_double, "POST", "/nodes/pve1/qemu/9000/clone", json_body={"newid": "x"})
    assert "newid" in errors_of(response)


def test_check_value_matches_pve_wording() -> None:
    from tests.support.proxmox_double import check_value

    assert check_value({"type": "integer", "minimum": 1}, "0") == "value must have a minimum value of 1"
    assert check_value({"type": "boolean"}, "True") is None  # proxmoxer sends Python bools like this
    assert check_value({"type": "string", "pattern": "(?^i:[a-z]+)"}, "ABC") is None


def test_every_modelled_route_exists_in_the_schema() -> None:
    """The double must never serve an endpoint PVE does not have."""
    from tests.support.proxmox_double import _ROUTES, load_schema

    schema = load_schema()
    for method, template in _ROUTES:
        concrete = re.sub(r"\{[^}]+\}", "x", template)
        found = schema.match(concrete)
        assert found is not None, template
        assert found[0].template == template
        assert method in found[0].methods, f"{method} {template}"


# ---- authentication -----------------------------------------------------------------------


def test_wrong_token_secret_is_401(proxmox_double: ProxmoxDouble) -> None:
    wrong = f"PVEAPIToken={proxmox_double.token_id}=00000000-0000-0000-0000-000000000000"
    assert call(proxmox_double, "GET", "/version", token=wrong).status_code == 401
    unknown = f"PVEAPIToken=root@pam!other={proxmox_double.token_secret}"
    assert call(proxmox_double, "GET", "/version", token=unknown).status_code == 401
    anonymous = requests.get(f"{proxmox_double.url}{API}/version", verify=proxmox_double.ca_file, timeout=5)
    assert anonymous.status_code == 401


def test_ticket_login_and_csrf(proxmox_double: ProxmoxDouble) -> None:
    login = requests.post(
        f"{proxmox_double.url}{API}/access/ticket",
        data={"username": "root@pam", "password": proxmox_double.password},
        verify=proxmox_double.ca_file,
        timeout=5,
    )
    assert login.status_code == 200
    ticket = login.json()["data"]
    cookies = {"PVEAuthCookie": ticket["ticket"]}
    url = f"{proxmox_double.url}{API}/nodes/pve1/qemu/100/status/stop"
    assert requests.get(
        f"{proxmox_double.url}{API}/version", cookies=cookies, verify=proxmox_double.ca_file, timeout=5
    ).ok
    assert (
        requests.post(url, cookies=cookies, verify=proxmox_double.ca_file, timeout=5).status_code == 401
    )  # no CSRF
    headers = {"CSRFPreventionToken": ticket["CSRFPreventionToken"]}
    assert requests.post(url, cookies=cookies, headers=headers, verify=proxmox_double.ca_file, timeout=5).ok
    bad = requests.post(
        f"{proxmox_double.url}{API}/access/ticket",
        data={"username": "root@pam", "password": "guess"},
        verify=proxmox_double.ca_file,
        timeout=5,
    )
    assert bad.status_code == 401


# ---- state and tasks ----------------------------------------------------------------------


def test_task_upid_format_and_completion(proxmox_double: ProxmoxDouble) -> None:
    proxmox_double.task_delay = 0.5  # long enough to see it running, even on a loaded CI box
    upid = call(proxmox_double, "POST", "/nodes/pve1/qemu/100/status/stop").json()["data"]
    assert re.fullmatch(
        r"UPID:pve1:[0-9A-F]{8}:[0-9A-F]{8}:[0-9A-F]{8}:qmstop:100:vmportal@pve!portal:", upid
    )
    running = call(proxmox_double, "GET", f"/nodes/pve1/tasks/{upid}/status").json()["data"]
    assert running["status"] == "running"
    assert "exitstatus" not in running
    assert wait_task(proxmox_double, upid)["exitstatus"] == "OK"
    assert proxmox_double.vm(100).status == "stopped"


def test_fail_next_task_hook(proxmox_double: ProxmoxDouble) -> None:
    proxmox_double.fail_next_task("qmstop", "VM quit/powerdown failed - got timeout")
    upid = call(proxmox_double, "POST", "/nodes/pve1/qemu/100/status/stop").json()["data"]
    assert wait_task(proxmox_double, upid)["exitstatus"] == "VM quit/powerdown failed - got timeout"
    assert proxmox_double.vm(100).status == "running"  # a failed task changes nothing
    upid = call(proxmox_double, "POST", "/nodes/pve1/qemu/100/status/stop").json()["data"]
    assert wait_task(proxmox_double, upid)["exitstatus"] == "OK"  # only the next one fails


def test_clone_takes_the_id_at_once_and_fills_it_when_done(proxmox_double: ProxmoxDouble) -> None:
    upid = call(
        proxmox_double,
        "POST",
        "/nodes/pve1/qemu/9000/clone",
        newid=150,
        name="web01",
        full=1,
        description="m",
    ).json()["data"]
    assert proxmox_double.vm(150).config == {"lock": "clone"}
    again = call(proxmox_double, "POST", "/nodes/pve1/qemu/9000/clone", newid=150, name="web02", full=1)
    assert again.status_code == 500
    assert wait_task(proxmox_double, upid)["exitstatus"] == "OK"
    config = call(proxmox_double, "GET", "/nodes/pve1/qemu/150/config").json()["data"]
    assert config["name"] == "web01"
    assert "template" not in config
    assert config["scsi0"].startswith("local-lvm:vm-150-disk-0")
    assert config["net0"] != proxmox_double.vm(9000).config["net0"]  # new MAC


def test_clone_to_a_full_storage_fails_in_the_task(proxmox_double: ProxmoxDouble) -> None:
    upid = call(
        proxmox_double,
        "POST",
        "/nodes/pve1/qemu/9000/clone",
        newid=150,
        name="web01",
        full=1,
        storage="nearly-full",
    ).json()["data"]
    assert "insufficient free space" in wait_task(proxmox_double, upid)["exitstatus"]


def test_missing_vm_answers_like_pve(proxmox_double: ProxmoxDouble) -> None:
    response = call(proxmox_double, "GET", "/nodes/pve1/qemu/4242/config")
    assert response.status_code == 500
    assert "does not exist" in response.reason
    assert proxmox_double.requests[-1].schema_valid  # well-formed, just about nothing


def test_cipassword_is_never_returned(proxmox_double: ProxmoxDouble) -> None:
    call(proxmox_double, "PUT", "/nodes/pve1/qemu/100/config", cipassword="Initial#Pass1")
    config = call(proxmox_double, "GET", "/nodes/pve1/qemu/100/config").json()["data"]
    assert config["cipassword"] == "**********"
    assert proxmox_double.vm(100).cipassword == "Initial#Pass1"


def test_stale_digest_is_refused(proxmox_double: ProxmoxDouble) -> None:
    response = call(proxmox_double, "PUT", "/nodes/pve1/qemu/100/config", cores=2, digest="0" * 40)
    assert response.status_code == 500
    assert "detected modified configuration" in response.reason


def test_log_records_every_request(proxmox_double: ProxmoxDouble) -> None:
    call(proxmox_double, "GET", "/cluster/resources", type="vm")
    call(proxmox_double, "GET", "/cluster/resources", type="vms")
    good, bad = proxmox_double.requests
    assert (good.template, good.params, good.status, good.rejected) == (
        "/cluster/resources",
        {"type": "vm"},
        200,
        False,
    )
    assert bad.rejected
    assert "type" in bad.errors
    with pytest.raises(AssertionError, match=r"'type': 'vms'"):
        proxmox_double.assert_all_valid()
    proxmox_double.clear_log()
    proxmox_double.assert_all_valid()


def test_stop_and_start_the_node(proxmox_double: ProxmoxDouble) -> None:
    assert call(proxmox_double, "GET", "/version").ok
    proxmox_double.stop()
    with pytest.raises(requests.ConnectionError):
        call(proxmox_double, "GET", "/version")
    proxmox_double.start()
    assert call(proxmox_double, "GET", "/version").ok


def test_tls_is_verifiable_only_with_the_ca(proxmox_double: ProxmoxDouble) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{proxmox_double.url}{API}/version", timeout=5)
    assert (
        requests.get(
            f"{proxmox_double.url}{API}/version", verify=proxmox_double.ca_file, timeout=5
        ).status_code
        == 401
    )
