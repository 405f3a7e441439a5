"""Guest customization sent with CloneVM_Task: admin password, host name and address.

* Windows templates (guest id ``win*``) get Sysprep: the Administrator password (Sysprep sets no
  other account), the computer name (NetBIOS-sized) and the address.
* Linux templates get cloud-init (``CloudinitPrep``, vSphere 7.0U3+; the template must carry
  cloud-init) when a password is to be set, because LinuxPrep cannot set one; otherwise LinuxPrep
  (host name, domain, time zone and address).
* The first NIC gets the requested address, every other NIC DHCP (vCenter refuses a spec whose
  NIC mappings do not match the VM's NICs).

The password travels in the clone request only (vCenter hands it to the guest's customization and
does not keep it on the VM) and is never logged. ``defaults`` are the connection's:
``domain``, ``dns`` (comma-separated), ``timezone`` (Olson, default Asia/Shanghai),
``windows_timezone`` (index, default 210 = China Standard Time), ``workgroup``, ``organization``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Mapping
from typing import Any

from pyVmomi import vim

from hypervisors.base import CloneSpec, InvalidSpec


def hostname_for(text: str, *, windows: bool) -> str:
    """A valid host name (RFC 1123 label; NetBIOS-sized for Windows) derived from ``text``."""
    label = re.sub(r"[^A-Za-z0-9-]+", "-", text).strip("-") or "vm"
    label = label[:15] if windows else label[:63]
    return label.strip("-") or "vm"


Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def customization_spec(
    spec: CloneSpec, guest_id: str, nic_count: int, defaults: Mapping[str, str]
) -> vim.vm.customization.Specification | None:
    """Guest customization for ``spec`` on a template of ``guest_id`` with ``nic_count`` NICs.

    None when nothing is asked (no address, host name or password). Raises
    :class:`~hypervisors.base.InvalidSpec` naming the field for an unparseable address, a gateway
    outside the subnet, an address for a template without NICs, or a Windows admin account other
    than Administrator.
    """
    if not (spec.ip or spec.hostname or spec.admin_password):
        return None
    windows = guest_id.lower().startswith("win")
    hostname = hostname_for(spec.hostname or spec.name, windows=windows)
    dns = (
        list(spec.ip.dns)
        if spec.ip and spec.ip.dns
        else [d.strip() for d in defaults.get("dns", "").split(",") if d.strip()]
    )
    domain = defaults.get("domain", "localdomain")
    interface = _interface(spec)
    if spec.ip and not nic_count:
        raise InvalidSpec("the template has no network adapter to give an address", detail={"field": "ip"})
    custom = vim.vm.customization
    identity: Any
    nic_settings: list[Any] = []
    if windows:
        identity = _sysprep(spec, hostname, defaults)
    elif spec.admin_password:
        identity = custom.CloudinitPrep(
            metadata=cloud_init_metadata(spec, hostname, interface, dns),
            userdata=cloud_init_userdata(spec, defaults),
        )
    else:
        identity = custom.LinuxPrep(
            hostName=custom.FixedName(name=hostname),
            domain=domain,
            timeZone=defaults.get("timezone", "Asia/Shanghai"),
            hwClockUTC=True,
        )
    if not isinstance(identity, custom.CloudinitPrep):
        # cloud-init carries the address in its own metadata; Sysprep and LinuxPrep take it here.
        nic_settings = _nic_settings(spec, interface, dns, nic_count)
    return custom.Specification(
        identity=identity,
        globalIPSettings=custom.GlobalIPSettings(dnsServerList=dns, dnsSuffixList=[domain] if domain else []),
        nicSettingMap=nic_settings,
    )


def _interface(spec: CloneSpec) -> Interface | None:
    if not spec.ip:
        return None
    try:
        interface = ipaddress.ip_interface(f"{spec.ip.address}/{spec.ip.prefix_length}")
        gateway = ipaddress.ip_address(spec.ip.gateway)
    except ValueError as exc:
        raise InvalidSpec(f"invalid IP settings: {exc}", detail={"field": "ip"}) from exc
    if gateway not in interface.network:
        raise InvalidSpec(f"gateway {gateway} is outside {interface.network}", detail={"field": "ip.gateway"})
    return interface


def _sysprep(spec: CloneSpec, hostname: str, defaults: Mapping[str, str]) -> vim.vm.customization.Sysprep:
    custom = vim.vm.customization
    if spec.admin_user and spec.admin_user.lower() != "administrator":
        raise InvalidSpec(
            "Sysprep sets the Administrator password only; admin_user must be Administrator "
            "(or empty) for a Windows template",
            detail={"field": "admin_user"},
        )
    return custom.Sysprep(
        guiUnattended=custom.GuiUnattended(
            password=custom.Password(value=spec.admin_password, plainText=True)
            if spec.admin_password
            else None,
            autoLogon=False,
            autoLogonCount=0,
            timeZone=int(defaults.get("windows_timezone", "210")),
        ),
        userData=custom.UserData(
            fullName=defaults.get("organization", "vmportal"),
            orgName=defaults.get("organization", "vmportal"),
            computerName=custom.FixedName(name=hostname),
            productId="",
        ),
        identification=custom.Identification(joinWorkgroup=defaults.get("workgroup", "WORKGROUP")),
    )


def _nic_settings(
    spec: CloneSpec, interface: Interface | None, dns: list[str], nic_count: int
) -> list[vim.vm.customization.AdapterMapping]:
    # One mapping per NIC, in device order (vCenter rejects a count mismatch): the first
    # NIC gets the requested address, any others DHCP.
    custom = vim.vm.customization
    first = custom.IPSettings(ip=custom.DhcpIpGenerator(), dnsServerList=dns)
    if interface is not None and spec.ip is not None:
        if interface.version == 4:
            first.ip = custom.FixedIp(ipAddress=str(interface.ip))
            first.subnetMask = str(interface.netmask)
            first.gateway = [spec.ip.gateway]
        else:
            first.ipV6Spec = custom.IPSettings.IpV6AddressSpec(
                ip=[custom.FixedIpV6(ipAddress=str(interface.ip), subnetMask=interface.network.prefixlen)],
                gateway=[spec.ip.gateway],
            )
    if not nic_count:
        return []
    return [custom.AdapterMapping(adapter=first)] + [
        custom.AdapterMapping(adapter=custom.IPSettings(ip=custom.DhcpIpGenerator()))
        for _ in range(nic_count - 1)
    ]


def cloud_init_metadata(spec: CloneSpec, hostname: str, interface: Interface | None, dns: list[str]) -> str:
    """cloud-init meta-data: instance id (stable per marker), host name and a netplan v2 address."""
    # JSON is valid YAML, and json.dumps quotes every string safely.
    metadata: dict[str, Any] = {
        "instance-id": "vmportal-" + hashlib.sha256(spec.marker.encode()).hexdigest()[:16],
        "local-hostname": hostname,
    }
    if interface is not None and spec.ip is not None:
        ethernet: dict[str, Any] = {
            "match": {"name": "e*"},
            "addresses": [str(interface)],
            "routes": [{"to": "default" if interface.version == 4 else "::/0", "via": spec.ip.gateway}],
        }
        if dns:
            ethernet["nameservers"] = {"addresses": dns}
        metadata["network"] = {"version": 2, "ethernets": {"nic0": ethernet}}
    return json.dumps(metadata, indent=2)


def cloud_init_userdata(spec: CloneSpec, defaults: Mapping[str, str]) -> str:
    """cloud-init user-data: the admin account (created with sudo unless root) and its password."""
    user = spec.admin_user or "root"
    config: dict[str, Any] = {
        "timezone": defaults.get("timezone", "Asia/Shanghai"),
        "ssh_pwauth": True,
        "chpasswd": {
            "expire": False,
            "users": [{"name": user, "password": spec.admin_password, "type": "text"}],
        },
    }
    if user != "root":
        config["users"] = [
            "default",
            {"name": user, "sudo": "ALL=(ALL) ALL", "shell": "/bin/bash", "lock_passwd": False},
        ]
    return "#cloud-config\n" + json.dumps(config, indent=2) + "\n"
