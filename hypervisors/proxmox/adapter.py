"""Proxmox VE adapter, over proxmoxer's HTTPS backend with an API token.

A VM's ref is ``"<node>/<vmid>"``. The vmid is unique in a cluster and never changes; the node can
(migration), so a ref whose node is stale is re-resolved through ``/cluster/resources`` instead of
being reported missing.

What the portal keeps on a Proxmox VM:

* its idempotency marker, as a ``vmportal-marker: ...`` line of the VM's description (notes);
* web blocking, as VM firewall rules whose comment starts with ``vmportal:web-block`` (the comment
  also records what the portal changed to make them effective, so unblocking restores exactly
  that), mirrored by the VM tag ``vmportal-web-blocked`` so the inventory can report it without
  reading every VM's rule set.

Configuration (:class:`~hypervisors.base.ConnectionConfig`):

* ``url``: ``https://pve.example.edu.cn:8006`` (scheme and port optional; port defaults to 8006;
  a path prefix before ``/api2/json`` is kept for reverse proxies);
* ``token_id`` ``"user@realm!tokenname"`` + ``secret`` (the token's UUID); without a token_id,
  ``username`` + ``secret`` log in for a ticket instead;
* ``verify_tls`` / ``ca_file``: the node's certificate is checked against ``ca_file`` when given,
  the system trust otherwise; ``verify_tls=False`` turns checking off;
* ``defaults``: ``node`` (clone target; the template's node otherwise), ``storage`` (alias
  ``datastore``; the template's storage otherwise), ``pool``, ``bridge`` (alias ``network``;
  the template's bridge otherwise). ``CloneSpec.placement`` overrides the same keys per clone.

Cloud-init on Proxmox takes the guest's hostname from the VM name, so ``CloneSpec.hostname`` has no
separate setting here: name the VM as the host should be called. Account, password, address and DNS
servers are written as ``ciuser``/``cipassword``/``ipconfig0``/``nameserver``; PVE rebuilds the
cloud-init drive when the VM starts, which is why the clone is configured before it is powered on.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from proxmoxer import ProxmoxAPI
from proxmoxer.core import AuthenticationError, ResourceException
from urllib3.exceptions import InsecureRequestWarning

from hypervisors.base import (
    AuthFailed,
    Capabilities,
    CloneSpec,
    ConnectionCheck,
    ConnectionConfig,
    DiskInfo,
    HypervisorError,
    HypervisorKind,
    InvalidSpec,
    NICInfo,
    NotFound,
    NotSupported,
    PowerAction,
    PowerState,
    Retriable,
    TaskFailed,
    TaskResult,
    TemplateInfo,
    TLSFailed,
    Unreachable,
    VMInfo,
)
from hypervisors.registry import register

log = logging.getLogger(__name__)

DEFAULT_PORT = 8006
MARKER_PREFIX = "vmportal-marker: "
WEB_BLOCK_COMMENT = "vmportal:web-block"
WEB_BLOCK_TAG = "vmportal-web-blocked"
WEB_PORTS = ("80", "443")
GIB = 1024**3

# Proxmox's own vocabulary: ``status`` is running/stopped; ``qmpstatus`` (QEMU's view) adds
# paused, suspended and the transient states that map to UNKNOWN.
_POWER_STATES: Mapping[str, PowerState] = {
    "running": PowerState.RUNNING,
    "stopped": PowerState.STOPPED,
    "paused": PowerState.SUSPENDED,
    "suspended": PowerState.SUSPENDED,
}

_ACTION_ENDPOINT: Mapping[PowerAction, str] = {
    PowerAction.START: "start",
    PowerAction.STOP: "stop",
    PowerAction.RESTART: "reset",
    PowerAction.SHUTDOWN: "shutdown",
    PowerAction.REBOOT: "reboot",
}

_DISK_KEY = re.compile(r"(scsi|virtio|sata|ide)(\d+)")
_NET_KEY = re.compile(r"net(\d+)")
_IPCONFIG_KEY = re.compile(r"ipconfig(\d+)")
_BUS_ORDER = {"scsi": 0, "virtio": 1, "sata": 2, "ide": 3}
_NIC_MODELS = frozenset(
    {
        "e1000",
        "e1000-82540em",
        "e1000-82544gc",
        "e1000-82545em",
        "e1000e",
        "i82551",
        "i82557b",
        "i82559er",
        "ne2k_isa",
        "ne2k_pci",
        "pcnet",
        "rtl8139",
        "virtio",
        "vmxnet3",
    }
)
# PVE's "dns-name" format, checked locally so a bad name is refused before anything is created.
_DNS_NAME = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?\.)*[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?"
)
# Messages of errors a retry can cure: a concurrent edit, a held lock, a busy node.
_TRANSIENT = ("detected modified configuration", "can't lock file", "got timeout", "is locked", "try again")


# --------------------------------------------------------------------------------------------
# Property strings ("virtio=BC:24:11:..,bridge=vmbr0,firewall=1")
# --------------------------------------------------------------------------------------------


def _prop_items(value: str) -> list[tuple[str, str]]:
    """Split a property string into (key, value) pairs, keeping order; a bare item has key ''."""
    items: list[tuple[str, str]] = []
    for part in value.split(","):
        if part:
            key, sep, item = part.partition("=")
            items.append((key, item) if sep else ("", part))
    return items


def _prop_join(items: list[tuple[str, str]]) -> str:
    return ",".join(f"{k}={v}" if k else v for k, v in items)


def _prop_get(value: str, key: str) -> str | None:
    return next((v for k, v in _prop_items(value) if k == key), None)


def _prop_set(value: str, key: str, item: str | None) -> str:
    """Set (or remove, when ``item`` is None) one key, leaving every other item where it was."""
    items = _prop_items(value)
    out: list[tuple[str, str]] = []
    placed = False
    for k, v in items:
        if k != key:
            out.append((k, v))
        elif item is not None and not placed:
            out.append((k, item))
            placed = True
    if item is not None and not placed:
        out.append((key, item))
    return _prop_join(out)


def _size_gib(size: str | None) -> float:
    if not size:
        return 0.0
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", size.strip())
    if match is None:
        return 0.0
    factor = {"": 1, "K": 1024, "M": 1024**2, "G": GIB, "T": 1024**4}[match.group(2)]
    return float(match.group(1)) * factor / GIB


def _is_disk(key: str, value: str) -> bool:
    # CD-ROMs and the cloud-init drive hang off the same buses but are not the VM's storage.
    return bool(_DISK_KEY.fullmatch(key)) and "media=cdrom" not in value and "cloudinit" not in value


def _disk_keys(config: Mapping[str, Any]) -> list[str]:
    """The VM's disks, boot disk first (the one a CloneSpec's ``disk_gib`` grows)."""

    def bus_order(key: str) -> tuple[int, int]:
        match = _DISK_KEY.fullmatch(key)
        assert match is not None
        return _BUS_ORDER[match.group(1)], int(match.group(2))

    disks = sorted((k for k, v in config.items() if _is_disk(k, str(v))), key=bus_order)
    boot_order = _prop_get(str(config.get("boot", "")), "order") or ""
    boot = next((d for d in boot_order.split(";") if d in disks), None) or (
        config.get("bootdisk") if config.get("bootdisk") in disks else None
    )
    if boot:
        disks.remove(boot)
        disks.insert(0, boot)
    return disks


def _memory_mib(config: Mapping[str, Any]) -> int:
    # Since PVE 8.x ``memory`` is a property string ("2048" or "current=2048").
    raw = str(config.get("memory", "512"))
    value = _prop_get(raw, "current") or next((v for k, v in _prop_items(raw) if k == ""), "512")
    return int(value)


def _vcpus(config: Mapping[str, Any]) -> int:
    return int(config.get("cores", 1)) * int(config.get("sockets", 1))


def _nics(config: Mapping[str, Any]) -> tuple[NICInfo, ...]:
    nics = []
    for key in sorted((k for k in config if _NET_KEY.fullmatch(k)), key=lambda k: int(k[3:])):
        items = _prop_items(str(config[key]))
        mac = next((v for k, v in items if k in _NIC_MODELS or k == "macaddr"), None)
        down = next((v for k, v in items if k == "link_down"), "0") in ("1", "true", "yes", "on")
        bridge = next((v for k, v in items if k == "bridge"), None)
        # link_down lives in the VM config, so it already survives a reboot: both flags agree.
        nics.append(NICInfo(key=key, mac=mac, network=bridge, connected=not down, start_connected=not down))
    return tuple(nics)


def _configured_ips(config: Mapping[str, Any]) -> tuple[str, ...]:
    ips = []
    for key in sorted((k for k in config if _IPCONFIG_KEY.fullmatch(k)), key=lambda k: int(k[8:])):
        for field in ("ip", "ip6"):
            value = _prop_get(str(config[key]), field)
            if value and value not in ("dhcp", "auto"):
                ips.append(value.split("/")[0])
    return tuple(ips)


def _marker(description: str | None) -> str | None:
    for line in (description or "").splitlines():
        if line.startswith(MARKER_PREFIX):
            return line[len(MARKER_PREFIX) :].strip() or None
    return None


def _description(marker: str) -> str:
    return (
        "Created by vmportal for the Network & Information Center. "
        "Keep the next line: it is how the portal recognises this VM.\n"
        f"{MARKER_PREFIX}{marker}"
    )


def _tags(config: Mapping[str, Any]) -> list[str]:
    return [t for t in re.split(r"[;, ]+", str(config.get("tags", ""))) if t]


def _parse_ref(ref: str) -> tuple[str, int]:
    node, sep, vmid = ref.partition("/")
    if not sep or not node or not vmid.isdigit():
        raise NotFound(f"{ref!r} is not a Proxmox VM reference (expected 'node/vmid')", detail={"ref": ref})
    return node, int(vmid)


def _upid_node(upid: str) -> str:
    # UPID:node:pid:pstart:starttime:type:id:user:  (nine fields, the last usually empty)
    parts = upid.split(":")
    if len(parts) < 9 or parts[0] != "UPID" or not parts[1]:
        raise NotFound(f"{upid!r} is not a Proxmox task id", detail={"task": upid})
    return parts[1]


# --------------------------------------------------------------------------------------------
# Reading one VM
# --------------------------------------------------------------------------------------------


@dataclass
class _Guest:
    node: str
    vmid: int
    config: dict[str, Any]
    status: Mapping[str, Any]  # /status/current, or the /cluster/resources entry

    @property
    def ref(self) -> str:
        return f"{self.node}/{self.vmid}"

    @property
    def power_state(self) -> PowerState:
        if self.config.get("template"):
            return PowerState.STOPPED
        if self.config.get("lock") == "suspended":  # hibernated to disk: QEMU is gone
            return PowerState.SUSPENDED
        status = str(self.status.get("status", ""))
        qmp = str(self.status.get("qmpstatus", status))
        if status == "running":
            return _POWER_STATES.get(qmp, PowerState.UNKNOWN)
        return _POWER_STATES.get(status, PowerState.UNKNOWN)


class ProxmoxAdapter:
    """:class:`~hypervisors.base.HypervisorAdapter` for one Proxmox VE cluster (or single node)."""

    kind = HypervisorKind.PROXMOX
    capabilities = Capabilities(
        guest_power=True,
        nic_disconnect=True,
        web_block=True,
        guest_credentials=True,
        disk_resize=True,
    )

    def __init__(self, config: ConnectionConfig) -> None:
        self.config = config
        self._api: Any = None
        self._host, self._port, self._path_prefix = self._endpoint(config.url)
        self._defaults = dict(config.defaults)
        if not config.verify_tls:
            # The operator chose an unverified connection (recorded in the connection settings);
            # urllib3 would otherwise warn on every request, and under warnings-as-errors fail it.
            warnings.filterwarnings("ignore", category=InsecureRequestWarning)
            log.info("TLS verification is off for Proxmox at %s", self._where)

    # -- connection ---------------------------------------------------------------------------

    @staticmethod
    def _endpoint(url: str) -> tuple[str, int, str | None]:
        split = urlsplit(url if "://" in url else f"https://{url}")
        if split.scheme != "https":
            # The Proxmox API is served over HTTPS only (pveproxy); proxmoxer speaks nothing else.
            raise InvalidSpec(
                f"Proxmox VE is reached over https, not {split.scheme}: {url}", detail={"url": url}
            )
        if not split.hostname:
            raise InvalidSpec(f"no host in Proxmox URL {url!r}", detail={"url": url})
        host = f"[{split.hostname}]" if ":" in split.hostname else split.hostname
        prefix = split.path.strip("/").removesuffix("api2/json").strip("/")
        return host, split.port or DEFAULT_PORT, prefix or None

    @property
    def _where(self) -> str:
        return f"https://{self._host}:{self._port}"

    @property
    def _verify(self) -> bool | str:
        if not self.config.verify_tls:
            return False
        return self.config.ca_file or True

    def _connect(self) -> Any:
        if self._api is not None:
            return self._api
        common: dict[str, Any] = {
            "port": self._port,
            "verify_ssl": self._verify,
            "timeout": self.config.timeout,
            "path_prefix": self._path_prefix,
            "service": "PVE",
        }
        with self._translate("log in"):
            if self.config.token_id:
                user, sep, token_name = self.config.token_id.partition("!")
                if not sep:  # a bare token name belongs to ``username``
                    user, token_name = self.config.username, self.config.token_id
                self._api = ProxmoxAPI(
                    self._host, user=user, token_name=token_name, token_value=self.config.secret, **common
                )
            elif self.config.username and self.config.secret:
                self._api = ProxmoxAPI(
                    self._host, user=self.config.username, password=self.config.secret, **common
                )
            else:
                raise AuthFailed("no Proxmox API token (token_id + secret) or username/password configured")
        return self._api

    @contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        """Turn requests/proxmoxer exceptions into the adapter's error tree."""
        try:
            yield
        except HypervisorError:
            raise
        # SSLError subclasses ConnectionError, so it has to be caught first.
        except requests.exceptions.SSLError as exc:
            trust = self.config.ca_file or "the system trust store"
            raise TLSFailed(
                f"{self._where}: TLS certificate not verified against {trust} ({what}): {exc}",
                detail={"url": self._where},
            ) from exc
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise Unreachable(
                f"{self._where} unreachable ({what}): {exc}", detail={"url": self._where}
            ) from exc
        except AuthenticationError as exc:
            raise AuthFailed(f"{self._where} refused the login ({what}): {exc}") from exc
        except ResourceException as exc:
            raise self._from_resource(exc, what) from exc
        except requests.exceptions.RequestException as exc:
            raise Unreachable(f"{self._where}: {exc} ({what})", detail={"url": self._where}) from exc

    def _from_resource(self, exc: ResourceException, what: str) -> HypervisorError:
        status = int(exc.status_code)
        text = str(exc.content or exc.status_message or "").strip()
        detail: dict[str, Any] = {"status": status, "operation": what}
        if status == 401:
            return AuthFailed(f"{self._where} refused the API token or login: {text}", detail=detail)
        if status == 403:
            return AuthFailed(f"the API token lacks a privilege ({what}): {text}", detail=detail)
        if status == 400:
            errors = exc.errors if isinstance(exc.errors, dict) else {}
            detail["errors"] = {str(k): str(v) for k, v in errors.items()}
            fields = ", ".join(f"{k} ({str(v).splitlines()[0]})" for k, v in errors.items()) or text
            return InvalidSpec(f"Proxmox refused the parameters of {what}: {fields}", detail=detail)
        lowered = text.lower()
        if (
            status == 404
            or "does not exist" in lowered
            or "hostname lookup" in lowered
            or "no such" in lowered
        ):
            return NotFound(f"{what}: {text}", detail=detail)
        if status == 501:
            return NotSupported(f"{what}: this Proxmox VE does not offer {text}", detail=detail)
        if status in (595, 596, 599):  # pveproxy could not reach the node that owns the VM
            return Unreachable(f"{what}: {text}", detail=detail)
        if status in (502, 503, 504) or any(t in lowered for t in _TRANSIENT):
            return Retriable(f"{what}: {text}", detail=detail)
        return HypervisorError(f"{what}: {status} {text}", detail=detail)

    def _get(self, path: str, what: str, **params: Any) -> Any:
        api = self._connect()
        with self._translate(what):
            return api(path).get(**params)

    def _post(self, path: str, what: str, **data: Any) -> Any:
        api = self._connect()
        with self._translate(what):
            return api(path).post(**data)

    def _put(self, path: str, what: str, **data: Any) -> Any:
        api = self._connect()
        with self._translate(what):
            return api(path).put(**data)

    def _delete(self, path: str, what: str, **params: Any) -> Any:
        api = self._connect()
        with self._translate(what):
            return api(path).delete(**params)

    def close(self) -> None:
        api, self._api = self._api, None
        if api is not None:
            # proxmoxer exposes no close(); its requests session sits in the resource store.
            session = getattr(api, "_store", {}).get("session")
            if session is not None:
                session.close()

    # -- tasks --------------------------------------------------------------------------------

    def wait_task(self, task_ref: str, timeout: float | None = None) -> TaskResult:
        node = _upid_node(task_ref)
        limit = self.config.task_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        interval = 0.05
        while True:
            status = self._get(f"nodes/{node}/tasks/{task_ref}/status", f"read task {task_ref}")
            if status.get("status") == "stopped":
                exitstatus = str(status.get("exitstatus", ""))
                # "WARNINGS: n" is how PVE reports a task that completed with warnings.
                ok = exitstatus == "OK" or exitstatus.startswith("WARNINGS")
                return TaskResult(
                    ok=ok,
                    task_ref=task_ref,
                    message=exitstatus,
                    extra={"type": status.get("type"), "id": status.get("id"), "node": node},
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Retriable(
                    f"Proxmox task {task_ref} still running after {limit:.0f}s",
                    defer=30.0,
                    detail={"task": task_ref},
                )
            time.sleep(min(interval, remaining))
            interval = min(interval * 1.5, 2.0)  # short tasks answer fast, long clones cost few polls

    def _finish(self, upid: Any, what: str) -> None:
        """Wait for a task a call started; a failed task becomes TaskFailed with PVE's text."""
        if not upid:  # some calls finish synchronously and return null
            return
        result = self.wait_task(str(upid))
        if not result.ok:
            raise TaskFailed(f"{what} failed: {result.message}", detail={"task": result.task_ref})

    # -- reading ------------------------------------------------------------------------------

    def _resources(self) -> list[Mapping[str, Any]]:
        listed = self._get("cluster/resources", "list VMs", type="vm")
        # type=vm also lists LXC containers; vmportal lends QEMU VMs only.
        return [r for r in listed if r.get("type") == "qemu"]

    def _config(self, node: str, vmid: int) -> dict[str, Any]:
        return dict(self._get(f"nodes/{node}/qemu/{vmid}/config", f"read VM {vmid}"))

    def _locate(self, ref: str) -> tuple[str, int, dict[str, Any]]:
        """Node, vmid and config of ``ref``, following the VM if it migrated to another node."""
        node, vmid = _parse_ref(ref)
        try:
            return node, vmid, self._config(node, vmid)
        except NotFound:
            current = next((r for r in self._resources() if int(r.get("vmid", 0)) == vmid), None)
            if current is None or current.get("node") == node:
                raise NotFound(f"VM {ref} does not exist", detail={"ref": ref}) from None
            node = str(current["node"])
            return node, vmid, self._config(node, vmid)

    def _read(self, ref: str) -> _Guest:
        node, vmid, config = self._locate(ref)
        status = self._get(f"nodes/{node}/qemu/{vmid}/status/current", f"read VM {vmid} status")
        return _Guest(node=node, vmid=vmid, config=config, status=status)

    def _web_rules(self, node: str, vmid: int) -> list[Mapping[str, Any]]:
        rules = self._get(f"nodes/{node}/qemu/{vmid}/firewall/rules", f"read VM {vmid} firewall rules")
        return [r for r in rules if str(r.get("comment", "")).startswith(WEB_BLOCK_COMMENT)]

    def _info(self, guest: _Guest, web_blocked: bool | None = None) -> VMInfo:
        config = guest.config
        disks = tuple(
            DiskInfo(key=k, capacity_gib=_size_gib(_prop_get(str(config[k]), "size")))
            for k in _disk_keys(config)
        )
        placement = {"node": guest.node}
        if config.get("pool") or guest.status.get("pool"):
            placement["pool"] = str(config.get("pool") or guest.status.get("pool"))
        extra = {
            "vmid": guest.vmid,
            "ostype": config.get("ostype"),
            "lock": config.get("lock"),
            "tags": config.get("tags"),
            "qmpstatus": guest.status.get("qmpstatus"),
        }
        return VMInfo(
            ref=guest.ref,
            name=str(config.get("name") or guest.status.get("name") or f"VM {guest.vmid}"),
            power_state=guest.power_state,
            vcpus=_vcpus(config),
            memory_mib=_memory_mib(config),
            disks=disks,
            nics=_nics(config),
            ips=_configured_ips(config),
            is_template=bool(config.get("template")),
            marker=_marker(config.get("description")),
            web_blocked=WEB_BLOCK_TAG in _tags(config) if web_blocked is None else web_blocked,
            placement=placement,
            extra={k: v for k, v in extra.items() if v is not None},
        )

    def _inventory(self) -> Iterator[_Guest]:
        """Every QEMU VM with its config: one cluster-wide listing plus one config read per VM,
        because NICs, disks and the marker live only in the config."""
        for entry in self._resources():
            node, vmid = str(entry["node"]), int(entry["vmid"])
            try:
                config = self._config(node, vmid)
            except NotFound:  # deleted between the listing and the read
                continue
            yield _Guest(node=node, vmid=vmid, config=config, status=entry)

    def check(self) -> ConnectionCheck:
        try:
            version = self._get("version", "read version")
            resources = self._resources()
        except HypervisorError as exc:
            return ConnectionCheck(ok=False, message=exc.message)
        except Exception as exc:  # check() promises never to raise; report whatever went wrong
            return ConnectionCheck(ok=False, message=f"{self._where}: {exc}")
        templates = sum(1 for r in resources if r.get("template"))
        return ConnectionCheck(
            ok=True,
            message=f"connected to Proxmox VE {version.get('version', '?')} at {self._where}",
            product="Proxmox VE",
            version=str(version.get("version", "")),
            vm_count=len(resources) - templates,
            template_count=templates,
        )

    def list_vms(self) -> list[VMInfo]:
        return [self._info(guest) for guest in self._inventory()]

    def list_templates(self) -> list[TemplateInfo]:
        templates = []
        for entry in self._resources():
            if not entry.get("template"):
                continue
            node, vmid = str(entry["node"]), int(entry["vmid"])
            try:
                config = self._config(node, vmid)
            except NotFound:
                continue
            disks = _disk_keys(config)
            templates.append(
                TemplateInfo(
                    ref=f"{node}/{vmid}",
                    name=str(config.get("name") or f"VM {vmid}"),
                    os=str(config.get("ostype", "")),
                    vcpus=_vcpus(config),
                    memory_mib=_memory_mib(config),
                    disk_gib=_size_gib(_prop_get(str(config[disks[0]]), "size")) if disks else 0,
                    extra={"vmid": vmid, "node": node, "description": config.get("description", "")},
                )
            )
        return templates

    def get_vm(self, ref: str) -> VMInfo:
        guest = self._read(ref)
        # The rules are the truth about web blocking; the tag is only the inventory's shortcut.
        web_blocked = bool(self._web_rules(guest.node, guest.vmid))
        return self._info(guest, web_blocked=web_blocked)

    def find_by_marker(self, marker: str) -> VMInfo | None:
        for guest in self._inventory():
            if _marker(guest.config.get("description")) == marker:
                return self.get_vm(guest.ref)
        return None

    # -- clone --------------------------------------------------------------------------------

    def _placement(self, spec: CloneSpec, key: str, *aliases: str) -> str | None:
        for source in (spec.placement, self._defaults):
            for name in (key, *aliases):
                if source.get(name):
                    return str(source[name])
        return None

    @staticmethod
    def _check_spec(spec: CloneSpec) -> None:
        """Refuse what Proxmox would refuse, before anything is created."""
        problems: dict[str, str] = {}
        if not _DNS_NAME.fullmatch(spec.name):
            problems["name"] = "Proxmox VM names must be DNS names (letters, digits, '-', '.')"
        if not spec.marker or "\n" in spec.marker:
            problems["marker"] = "a non-empty single line is required"
        if spec.vcpus < 1:
            problems["vcpus"] = "at least 1"
        if spec.memory_mib < 16:
            problems["memory_mib"] = "at least 16 MiB"
        if spec.disk_gib is not None and spec.disk_gib < 1:
            problems["disk_gib"] = "at least 1 GiB"
        if spec.ip is not None:
            try:
                ipaddress.ip_interface(f"{spec.ip.address}/{spec.ip.prefix_length}")
                if spec.ip.gateway:
                    ipaddress.ip_address(spec.ip.gateway)
                for server in spec.ip.dns:
                    ipaddress.ip_address(server)
            except ValueError as exc:
                problems["ip"] = str(exc)
        if problems:
            raise InvalidSpec(
                "invalid clone request: " + ", ".join(f"{k} ({v})" for k, v in problems.items()),
                detail={"errors": problems},
            )

    def clone(self, spec: CloneSpec) -> VMInfo:
        self._check_spec(spec)
        existing = self.find_by_marker(spec.marker)
        if existing is None:
            node, vmid, template = self._locate(spec.template_ref)
            self._check_disk(spec, template)
            # A worker that crashed mid-clone left PVE copying disks; the new VM gets its
            # description (and so the marker) only when that task ends. Wait for it, then look again.
            if self._await_running_clones(vmid):
                existing = self.find_by_marker(spec.marker)
            ref = existing.ref if existing else self._clone_new(spec, node, vmid)
        else:
            ref = existing.ref
        return self._complete(ref, spec)

    @staticmethod
    def _check_disk(spec: CloneSpec, template: Mapping[str, Any]) -> None:
        disks = _disk_keys(template)
        if spec.disk_gib is None or not disks:
            return
        current = _size_gib(_prop_get(str(template[disks[0]]), "size"))
        if spec.disk_gib < current:
            raise InvalidSpec(
                f"disk_gib {spec.disk_gib} is smaller than the template's {current:g} GiB "
                "(Proxmox cannot shrink disks)",
                detail={"errors": {"disk_gib": f"at least {current:g}"}},
            )

    def _await_running_clones(self, template_vmid: int) -> bool:
        user = (self.config.token_id or self.config.username).split("!")[0]
        tasks = self._get("cluster/tasks", "list tasks")
        running = [
            t
            for t in tasks
            if t.get("type") == "qmclone"
            and str(t.get("id")) == str(template_vmid)
            and "endtime" not in t
            and str(t.get("user", "")).split("!")[0] == user
        ]
        for task in running:
            self.wait_task(str(task["upid"]))
        return bool(running)

    def _clone_new(self, spec: CloneSpec, node: str, vmid: int) -> str:
        target = self._placement(spec, "node") or node
        params: dict[str, Any] = {
            "name": spec.name,
            "full": 1,  # a linked clone would tie the unit's VM to the template's disks for life
            "target": target,
            "description": _description(spec.marker),
        }
        storage = self._placement(spec, "storage", "datastore")
        if storage:
            params["storage"] = storage
        pool = self._placement(spec, "pool")
        if pool:
            params["pool"] = pool
        upid: Any = None
        newid = 0
        for attempt in range(3):
            newid = int(self._get("cluster/nextid", "reserve a VM id"))
            try:
                upid = self._post(
                    f"nodes/{node}/qemu/{vmid}/clone", f"clone {node}/{vmid}", newid=newid, **params
                )
                break
            except HypervisorError as exc:
                # Another client took the id between nextid and clone; ask again.
                if "already exists" not in exc.message or attempt == 2:
                    raise
        result = self.wait_task(str(upid))
        if not result.ok:
            self._discard(f"{target}/{newid}")
            raise TaskFailed(
                f"clone of {spec.template_ref} failed: {result.message}",
                detail={"task": result.task_ref, "template": spec.template_ref},
            )
        return f"{target}/{newid}"

    def _discard(self, ref: str) -> None:
        """Remove the remains of a failed clone; the clone's own failure is what gets reported."""
        try:
            self.delete(ref)
        except HypervisorError as exc:
            log.warning("could not remove partial VM %s after a failed clone: %s", ref, exc.message)

    def _complete(self, ref: str, spec: CloneSpec) -> VMInfo:
        """Bring a cloned VM to the spec; each step is skipped when already done, so a retry of a
        half-finished clone converges instead of failing."""
        node, vmid, config = self._wait_unlocked(ref)
        changes: dict[str, Any] = {}
        if _vcpus(config) != spec.vcpus or int(config.get("sockets", 1)) != 1:
            # One socket, so "vcpus" means what it says whatever the template's topology.
            changes.update(sockets=1, cores=spec.vcpus)
        if _memory_mib(config) != spec.memory_mib:
            changes["memory"] = str(spec.memory_mib)
        bridge = spec.network or self._placement(spec, "bridge", "network")
        if bridge and "net0" in config and _prop_get(str(config["net0"]), "bridge") != bridge:
            changes["net0"] = _prop_set(str(config["net0"]), "bridge", bridge)
        if spec.admin_user and config.get("ciuser") != spec.admin_user:
            changes["ciuser"] = spec.admin_user
        if spec.admin_password:
            # PVE never returns the password ("**********"), so it cannot be compared: always set.
            changes["cipassword"] = spec.admin_password
        if spec.ip is not None:
            address = ipaddress.ip_interface(f"{spec.ip.address}/{spec.ip.prefix_length}")
            family, gateway_key = ("ip", "gw") if address.version == 4 else ("ip6", "gw6")
            ipconfig = f"{family}={address.with_prefixlen}"
            if spec.ip.gateway:
                ipconfig += f",{gateway_key}={spec.ip.gateway}"
            if config.get("ipconfig0") != ipconfig:
                changes["ipconfig0"] = ipconfig
            nameserver = " ".join(spec.ip.dns)
            if nameserver and config.get("nameserver") != nameserver:
                changes["nameserver"] = nameserver
        if _marker(config.get("description")) != spec.marker:
            changes["description"] = _description(spec.marker)
        if changes:
            upid = self._post(
                f"nodes/{node}/qemu/{vmid}/config", f"configure VM {vmid}", digest=config["digest"], **changes
            )
            self._finish(upid, f"configure VM {vmid}")
        disks = _disk_keys(config)
        if spec.disk_gib is not None and disks:
            current = _size_gib(_prop_get(str(config[disks[0]]), "size"))
            if spec.disk_gib > current:
                upid = self._put(
                    f"nodes/{node}/qemu/{vmid}/resize",
                    f"grow disk {disks[0]} of VM {vmid}",
                    disk=disks[0],
                    size=f"{spec.disk_gib}G",
                )
                self._finish(upid, f"grow disk {disks[0]} of VM {vmid}")
        ref = f"{node}/{vmid}"
        if spec.power_on:
            return self.power(ref, PowerAction.START)
        return self.get_vm(ref)

    def _wait_unlocked(self, ref: str) -> tuple[str, int, dict[str, Any]]:
        deadline = time.monotonic() + self.config.task_timeout
        while True:
            node, vmid, config = self._locate(ref)
            if config.get("lock") not in ("clone", "create"):
                return node, vmid, config
            if time.monotonic() >= deadline:
                raise Retriable(
                    f"VM {ref} is still locked ({config['lock']})", defer=30.0, detail={"ref": ref}
                )
            time.sleep(0.5)

    # -- power --------------------------------------------------------------------------------

    def power(self, ref: str, action: PowerAction) -> VMInfo:
        action = PowerAction(action)
        guest = self._read(ref)
        state = guest.power_state
        if guest.config.get("template"):
            raise InvalidSpec(f"{ref} is a template and cannot be powered on or off")
        if (action is PowerAction.START and state is PowerState.RUNNING) or (
            action in (PowerAction.STOP, PowerAction.SHUTDOWN) and state is PowerState.STOPPED
        ):
            return self.get_vm(guest.ref)
        endpoint = _ACTION_ENDPOINT[action]
        if action is PowerAction.START and guest.status.get("qmpstatus") == "paused":
            endpoint = "resume"  # "start" refuses a paused VM as already running
        if action in (PowerAction.RESTART, PowerAction.REBOOT) and state is not PowerState.RUNNING:
            raise InvalidSpec(f"cannot {action} VM {ref}: it is {state}", detail={"power_state": str(state)})
        what = f"{action} VM {guest.ref}"
        upid = self._post(f"nodes/{guest.node}/qemu/{guest.vmid}/status/{endpoint}", what)
        self._finish(upid, what)
        return self.get_vm(guest.ref)

    # -- network ------------------------------------------------------------------------------

    def set_network(self, ref: str, connected: bool) -> VMInfo:
        node, vmid, config = self._locate(ref)
        changes = {}
        for key in (k for k in config if _NET_KEY.fullmatch(k)):
            value = str(config[key])
            # Only link_down changes; model, MAC, bridge, VLAN tag, firewall flag and rate stay.
            rewritten = _prop_set(value, "link_down", None if connected else "1")
            if rewritten != value:
                changes[key] = rewritten
        if changes:
            what = f"{'connect' if connected else 'disconnect'} NICs of VM {vmid}"
            # The digest makes PVE refuse the write if someone changed the config since our read.
            upid = self._post(f"nodes/{node}/qemu/{vmid}/config", what, digest=config["digest"], **changes)
            self._finish(upid, what)
        return self.get_vm(f"{node}/{vmid}")

    # -- web block ----------------------------------------------------------------------------

    def set_web_block(self, ref: str, blocked: bool) -> VMInfo:
        node, vmid, config = self._locate(ref)
        base = f"nodes/{node}/qemu/{vmid}/firewall"
        if blocked:
            self._block_web(node, vmid, config, base)
        else:
            self._unblock_web(node, vmid, config, base)
        return self.get_vm(f"{node}/{vmid}")

    def _block_web(self, node: str, vmid: int, config: Mapping[str, Any], base: str) -> None:
        cluster = self._get("cluster/firewall/options", "read datacenter firewall options")
        if not int(cluster.get("enable", 0)):
            # With the datacenter firewall off no VM rule is ever loaded: a "block" would be a lie.
            raise NotSupported(
                "the Proxmox datacenter firewall is disabled, so VM rules have no effect; "
                "cut the network instead"
            )
        options = self._get(f"{base}/options", f"read VM {vmid} firewall options")
        ours = self._web_rules(node, vmid)
        if ours:
            restore = self._restore_notes(ours)
        else:
            restore = {
                "enable": "1" if int(options.get("enable", 0)) else "0",
                "policy_in": str(options.get("policy_in", "-")),
                "nics": ";".join(
                    k
                    for k in sorted(config)
                    if _NET_KEY.fullmatch(k) and _prop_get(str(config[k]), "firewall") != "1"
                )
                or "-",
            }
        # What we changed is written into the rules' comment, so unblocking undoes exactly that.
        comment = f"{WEB_BLOCK_COMMENT} " + " ".join(f"{k}={v}" for k, v in restore.items())
        present = {str(r.get("dport")) for r in ours if int(r.get("enable", 0))}
        for port in WEB_PORTS:
            if port not in present:
                # Position 0: pve-firewall stops at the first match, so the drop must precede any
                # ACCEPT rule the unit's admins may have for their web server.
                self._post(
                    f"{base}/rules",
                    f"add web-block rule to VM {vmid}",
                    type="in",
                    action="DROP",
                    proto="tcp",
                    dport=port,
                    enable=1,
                    pos=0,
                    comment=comment,
                )
        if not int(options.get("enable", 0)):
            # A VM's default input policy is DROP: switching the firewall on for the first time
            # would cut everything, not just the web, unless inbound stays ACCEPT.
            self._put(f"{base}/options", f"enable firewall of VM {vmid}", enable=1, policy_in="ACCEPT")
        changes: dict[str, Any] = {}
        for key in (k for k in config if _NET_KEY.fullmatch(k)):
            if _prop_get(str(config[key]), "firewall") != "1":
                # pve-firewall filters a NIC only when its netN carries firewall=1.
                changes[key] = _prop_set(str(config[key]), "firewall", "1")
        tags = _tags(config)
        if WEB_BLOCK_TAG not in tags:
            changes["tags"] = ";".join([*tags, WEB_BLOCK_TAG])
        if changes:
            what = f"mark VM {vmid} web-blocked"
            upid = self._post(f"nodes/{node}/qemu/{vmid}/config", what, digest=config["digest"], **changes)
            self._finish(upid, what)

    @staticmethod
    def _restore_notes(rules: list[Mapping[str, Any]]) -> dict[str, str]:
        notes: dict[str, str] = {}
        for word in str(rules[0].get("comment", "")).split()[1:]:
            key, sep, value = word.partition("=")
            if sep:
                notes[key] = value
        return notes

    def _unblock_web(self, node: str, vmid: int, config: Mapping[str, Any], base: str) -> None:
        ours = self._web_rules(node, vmid)
        notes = self._restore_notes(ours) if ours else {}
        while ours:
            # Highest position first, each time against a fresh digest, so no index shifts under us
            # and a concurrent edit is refused rather than deleting someone else's rule.
            rule = max(ours, key=lambda r: int(r["pos"]))
            self._delete(
                f"{base}/rules/{int(rule['pos'])}",
                f"remove web-block rule from VM {vmid}",
                digest=rule.get("digest"),
            )
            ours = self._web_rules(node, vmid)
        if notes.get("enable") == "0":
            restore: dict[str, Any] = {"enable": 0}
            if notes.get("policy_in", "-") == "-":
                restore["delete"] = "policy_in"
            else:
                restore["policy_in"] = notes["policy_in"]
            self._put(f"{base}/options", f"restore firewall of VM {vmid}", **restore)
        changes: dict[str, Any] = {}
        for key in (n for n in notes.get("nics", "-").split(";") if n in config):
            changes[key] = _prop_set(str(config[key]), "firewall", None)
        tags = _tags(config)
        if WEB_BLOCK_TAG in tags:
            remaining = [t for t in tags if t != WEB_BLOCK_TAG]
            if remaining:
                changes["tags"] = ";".join(remaining)
            else:
                changes["delete"] = "tags"
        if changes:
            what = f"unmark VM {vmid} web-blocked"
            upid = self._post(f"nodes/{node}/qemu/{vmid}/config", what, digest=config["digest"], **changes)
            self._finish(upid, what)

    # -- delete -------------------------------------------------------------------------------

    def delete(self, ref: str) -> None:
        try:
            guest = self._read(ref)
            if guest.power_state is not PowerState.STOPPED and not guest.config.get("template"):
                what = f"stop VM {guest.ref} before deleting it"
                self._finish(self._post(f"nodes/{guest.node}/qemu/{guest.vmid}/status/stop", what), what)
            what = f"delete VM {guest.ref}"
            upid = self._delete(
                f"nodes/{guest.node}/qemu/{guest.vmid}",
                what,
                # purge: drop it from backup jobs, replication and HA too; the disks go with it.
                purge=1,
                **{"destroy-unreferenced-disks": 1},
            )
            self._finish(upid, what)
        except NotFound:
            return


register(HypervisorKind.PROXMOX)(ProxmoxAdapter)
