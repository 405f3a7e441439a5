"""The vSphere adapter: vCenter (or govmomi's vcsim) through pyVmomi's SOAP API.

Connection (:class:`~hypervisors.base.ConnectionConfig`)
    ``url``
        ``https://vcenter.example.edu.cn/sdk`` (port 443 and path ``/sdk`` are the defaults).
        Plain ``http://`` is accepted only for a loopback host (``127.0.0.0/8``, ``::1``,
        ``localhost``): that is govmomi's vcsim in tests and benchmarks. A real vCenter is never
        spoken to without TLS, so an ``http://`` URL naming any other host is refused as
        :class:`InvalidSpec` when the adapter is built.
    ``verify_tls`` / ``ca_file``
        Certificates are verified by default, against ``ca_file`` when given (a campus vCenter
        usually presents a VMCA-signed certificate: download its CA from
        ``https://<vcenter>/certs/download.zip``), else against the system trust store plus
        certifi's. ``verify_tls=False`` is the explicit insecure lab switch; it is logged.
    ``username`` / ``secret``
        A vCenter SSO account (``svc-vmportal@vsphere.local``); the secret is never logged.
    ``timeout`` / ``task_timeout``
        Socket timeout of each SOAP call; how long a task (clone, power, reconfigure) may run.
    ``defaults`` (all optional; ``CloneSpec.placement`` overrides them per clone)
        ``datacenter``  name; default: the template's datacenter.
        ``folder``      VM folder: inventory path (``/DC0/vm/units``) or a path under the
                        datacenter's VM folder (``units/cs``); default: the datacenter's VM folder.
        ``pool``        resource pool or cluster: inventory path or name; default: ``cluster``'s root
                        pool, else the root pool of the template's cluster or host.
        ``cluster``     cluster name whose root pool receives new VMs (when ``pool`` is not set).
        ``host``        host name to pin new VMs to (normally left to DRS).
        ``datastore``   datastore name; default: the template's.
        ``network``     port group (standard or distributed) for the first NIC; default: the
                        template's.
        ``domain``, ``dns`` (comma-separated), ``timezone`` (Olson, default Asia/Shanghai),
        ``windows_timezone`` (index, default 210 = China Standard Time), ``workgroup``,
        ``organization``: guest customization.

What the adapter relies on
    * Refs are VM **instance UUIDs** (``config.instanceUuid``), stable across renames and moves;
      found with ``SearchIndex.FindByUuid``.
    * The idempotency marker is a line ``vmportal-marker: <marker>`` in the VM's annotation
      (Notes), plus ``config.extraConfig["vmportal.marker"]``, both written by the clone itself.
      A retried clone finds the earlier VM by the annotation, or by its name in the target folder
      carrying the marker in extraConfig (vcsim ignores a clone's annotation).
    * The inventory is one paged ``RetrievePropertiesEx`` over a ContainerView of every VM, then
      one bulk retrieve of the hosts, pools, folders and networks those VMs reference (walking
      ``parent`` upwards); never a round trip per VM. Managed objects' lazy attributes (one
      round trip each) are not used anywhere.
    * Guest customization: Windows templates (guest id ``win*``) get Sysprep (Administrator
      password, computer name, IP); Linux templates get cloud-init (``CloudinitPrep``, vSphere
      7.0U3+, the template must carry cloud-init) when a password is to be set, else LinuxPrep
      (host name and IP only: LinuxPrep cannot set a password).
    * Web blocking is not something vSphere offers per VM without NSX: ``capabilities.web_block``
      is False and :meth:`VSphereAdapter.set_web_block` raises :class:`NotSupported`; the caller
      falls back to network isolation.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import ipaddress
import json
import logging
import re
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pyVim.connect import SmartConnect
from pyVmomi import vim, vmodl
from pyVmomi.VmomiSupport import ManagedObject

from hypervisors.base import (
    POWER_ACTION_ALLOWED_FROM,
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

T = TypeVar("T")
PC = vmodl.query.PropertyCollector

MARKER_PREFIX = "vmportal-marker:"
MARKER_EXTRA_CONFIG_KEY = "vmportal.marker"
_MARKER_LINE = re.compile(r"^vmportal-marker:[ \t]*(\S+)[ \t]*$", re.MULTILINE)

#: Objects per RetrievePropertiesEx page. vCenter may return fewer; the token loop copes.
DEFAULT_PAGE_SIZE = 500

_POWER_STATES: Mapping[str, PowerState] = {
    "poweredOn": PowerState.RUNNING,
    "poweredOff": PowerState.STOPPED,
    "suspended": PowerState.SUSPENDED,
}

#: What the inventory reads of every VM. Kept in one place: the benchmark retrieves exactly these.
VM_PROPERTIES: tuple[str, ...] = (
    "name",
    "config.instanceUuid",
    "config.template",
    "config.annotation",
    "config.guestId",
    "config.guestFullName",
    "config.hardware.numCPU",
    "config.hardware.memoryMB",
    "config.hardware.device",
    "runtime.powerState",
    "runtime.host",
    "resourcePool",
    "parent",
    "network",
    "guest.net",
    "guest.ipAddress",
    "guest.hostName",
    "guest.toolsRunningStatus",
)

_LINK_LOCAL_V4 = ipaddress.ip_network("169.254.0.0/16")


# --------------------------------------------------------------------------------------------
# Endpoint and TLS
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Endpoint:
    scheme: str
    host: str
    port: int
    path: str

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_url(url: str) -> _Endpoint:
    expected = "expected https://vcenter.example.edu.cn/sdk"
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise InvalidSpec(f"vSphere URL {url!r} has no https:// scheme; {expected}", detail={"field": "url"})
    if not parts.hostname:
        raise InvalidSpec(f"vSphere URL {url!r} names no host; {expected}", detail={"field": "url"})
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise InvalidSpec(f"vSphere URL {url!r} has an invalid port", detail={"field": "url"}) from exc
    if scheme == "http" and not _is_loopback(parts.hostname):
        # Credentials and customization passwords travel in the SOAP body: only a simulator on
        # this machine may be spoken to in clear text.
        raise InvalidSpec(
            f"vSphere URL {url!r}: plain http is accepted only for a simulator on a loopback "
            "address; use https for a real vCenter",
            detail={"field": "url"},
        )
    path = parts.path.rstrip("/") or "/sdk"
    return _Endpoint(scheme, parts.hostname, port, path)


def _ssl_context(config: ConnectionConfig) -> ssl.SSLContext | None:
    """The verifying context for https (None when verification is switched off)."""
    if not config.verify_tls:
        return None
    if config.ca_file:
        try:
            return ssl.create_default_context(cafile=config.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidSpec(
                f"ca_file {config.ca_file!r} cannot be read as PEM certificates: {exc}",
                detail={"field": "ca_file"},
            ) from exc
    context = ssl.create_default_context()
    # Slim containers ship without a system store; certifi is installed with requests.
    with contextlib.suppress(ImportError, OSError, ssl.SSLError):
        import certifi

        context.load_verify_locations(cafile=certifi.where())
    return context


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def _fault_name(fault: object) -> str:
    return getattr(type(fault), "_wsdlName", None) or type(fault).__name__


def _fault_text(fault: BaseException) -> str:
    """A vSphere fault as an operator reads it: its localized message and its type."""
    parts: list[str] = []
    msg = getattr(fault, "msg", None)
    if msg:
        parts.append(str(msg))
    for message in getattr(fault, "faultMessage", None) or ():
        text = getattr(message, "message", None)
        if text and text not in parts:
            parts.append(str(text))
    name = _fault_name(fault)
    text = "; ".join(parts)
    # vcsim's localized message is just the Go type ("*types.FileFault"): say the fault name.
    if not text or text.startswith("*types."):
        return name
    return f"{text} ({name})"


class _Translator:
    """Turns pyVmomi faults and socket/TLS errors into the adapter error tree."""

    def __init__(self, endpoint: _Endpoint, username: str) -> None:
        self.endpoint = endpoint
        self.username = username

    @contextlib.contextmanager
    def __call__(self, action: str) -> Iterator[None]:
        try:
            yield
        except HypervisorError:
            raise
        except vim.fault.InvalidLogin as exc:
            raise AuthFailed(
                f"vCenter {self.endpoint} refused the login of {self.username!r}: check the account "
                "and its password",
                detail={"fault": _fault_name(exc)},
            ) from exc
        except vim.fault.NotAuthenticated as exc:
            # Only reached when logging in again did not help (the new session died at once).
            raise Retriable(
                f"{action}: vCenter {self.endpoint} ended the session and a new login did not hold",
                detail={"fault": _fault_name(exc)},
            ) from exc
        except vim.fault.NoPermission as exc:
            raise AuthFailed(
                f"{action}: {self.username!r} lacks privilege {getattr(exc, 'privilegeId', '?')} "
                f"on vCenter {self.endpoint}",
                detail={"fault": _fault_name(exc)},
            ) from exc
        except vmodl.fault.ManagedObjectNotFound as exc:
            raise NotFound(
                f"{action}: the object no longer exists", detail={"fault": _fault_name(exc)}
            ) from exc
        except vim.fault.ToolsUnavailable as exc:
            raise TaskFailed(
                f"{action}: VMware Tools are not running in the guest, so the guest OS cannot be "
                "asked; use stop or restart instead",
                detail={"fault": _fault_name(exc)},
            ) from exc
        except (vim.fault.TaskInProgress, vim.fault.ConcurrentAccess) as exc:
            raise Retriable(
                f"{action}: {_fault_text(exc)}", defer=10.0, detail={"fault": _fault_name(exc)}
            ) from exc
        except vim.fault.InvalidState as exc:  # InvalidPowerState and friends
            raise TaskFailed(f"{action}: {_fault_text(exc)}", detail={"fault": _fault_name(exc)}) from exc
        except (vmodl.fault.MethodNotFound, vmodl.fault.NotImplemented, vmodl.fault.NotSupported) as exc:
            raise NotSupported(
                f"{action}: vCenter {self.endpoint} does not support this ({_fault_text(exc)})",
                detail={"fault": _fault_name(exc)},
            ) from exc
        except (
            vmodl.fault.InvalidArgument,
            vmodl.fault.InvalidRequest,
            vim.fault.InvalidName,
            vim.fault.DuplicateName,
            vim.fault.AlreadyExists,
        ) as exc:
            raise InvalidSpec(f"{action}: {_fault_text(exc)}", detail={"fault": _fault_name(exc)}) from exc
        except vmodl.MethodFault as exc:
            raise HypervisorError(
                f"{action}: {_fault_text(exc)}", detail={"fault": _fault_name(exc)}
            ) from exc
        except ssl.SSLCertVerificationError as exc:
            raise TLSFailed(
                f"the certificate of {self.endpoint} could not be verified ({exc.verify_message}); "
                "set ca_file to the vCenter's CA certificate (or, in a lab only, verify_tls=False)",
                detail={"reason": exc.verify_message},
            ) from exc
        except ssl.SSLError as exc:
            raise TLSFailed(f"TLS with {self.endpoint} failed: {exc.reason or exc}") from exc
        except socket.gaierror as exc:
            raise Unreachable(
                f"cannot resolve {self.endpoint.host}: {exc.strerror or exc}", defer=30.0
            ) from exc
        except ConnectionRefusedError as exc:
            raise Unreachable(f"{self.endpoint} refused the connection (is vCenter up?)") from exc
        except TimeoutError as exc:
            raise Unreachable(f"{action}: {self.endpoint} did not answer in time") from exc
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            raise Unreachable(
                f"{action}: connection to {self.endpoint} failed: {exc or type(exc).__name__}"
            ) from exc


# --------------------------------------------------------------------------------------------
# Inventory helpers
# --------------------------------------------------------------------------------------------


def _service(value: T | None, what: str) -> T:
    """A ServiceContent manager that a vCenter always has (the stubs type them Optional)."""
    if value is None:
        raise NotSupported(f"the endpoint offers no {what}: is it a vCenter or ESXi SDK URL?")
    return value


def _moid(obj: Any) -> str:
    return str(obj._moId)


def _props(content: PC.ObjectContent) -> dict[str, Any]:
    return {p.name: p.val for p in content.propSet}


def _raise_if_unauthenticated(content: PC.ObjectContent) -> None:
    # vCenter (and vcsim) answer a property read of an expired session with a per-property
    # NotAuthenticated in missingSet rather than a fault; surface it so the caller logs in again.
    for missing in content.missingSet:
        if isinstance(missing.fault, vim.fault.NotAuthenticated):
            raise missing.fault


def marker_of(annotation: str | None) -> str | None:
    """The portal marker recorded in a VM annotation, if any."""
    if not annotation:
        return None
    found = _MARKER_LINE.search(annotation)
    return found.group(1) if found else None


def _with_marker(annotation: str | None, marker: str) -> str:
    """The annotation with its marker line set to ``marker``, other notes kept."""
    kept = [line for line in (annotation or "").splitlines() if not _MARKER_LINE.match(line)]
    return "\n".join([f"{MARKER_PREFIX} {marker}", *kept]).strip()


@dataclass
class _Entity:
    obj: Any  # the pyVmomi managed object, of its real type (a cluster is not a ComputeResource)
    kind: str
    name: str
    parent: str | None


@dataclass
class _Names:
    """Names and parents of the hosts, pools, folders and networks some VMs reference."""

    entities: dict[str, _Entity] = field(default_factory=dict)
    portgroups: dict[str, str] = field(default_factory=dict)  # DVPG key -> name

    def name(self, moid: str | None) -> str | None:
        entity = self.entities.get(moid or "")
        return entity.name if entity else None

    def obj(self, moid: str | None) -> Any | None:
        entity = self.entities.get(moid or "")
        return entity.obj if entity else None

    def ancestor(self, moid: str | None, kind: str) -> str | None:
        seen = 0
        while moid and seen < 64:
            entity = self.entities.get(moid)
            if entity is None:
                return None
            if entity.kind == kind:
                return moid
            moid = entity.parent
            seen += 1
        return None

    def path(self, moid: str | None) -> str | None:
        """Inventory path (``/DC0/vm/Templates``) of an entity; the root folder is left out."""
        if not moid:
            return None
        names: list[str] = []
        seen = 0
        while moid and seen < 64:
            entity = self.entities.get(moid)
            if entity is None:
                return None
            if entity.parent is None:  # the root folder ("Datacenters")
                break
            names.append(entity.name.replace("/", "%2f"))
            moid = entity.parent
            seen += 1
        return "/" + "/".join(reversed(names))


def _disk_gib(device: Any) -> float:
    size = getattr(device, "capacityInBytes", None) or (device.capacityInKB or 0) * 1024
    return round(size / 2**30, 3)


def _nic_network(device: Any, names: _Names) -> str | None:
    backing = device.backing
    if isinstance(backing, vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo):
        key = backing.port.portgroupKey if backing.port else None
        return names.portgroups.get(key or "") or key
    if isinstance(backing, vim.vm.device.VirtualEthernetCard.NetworkBackingInfo):
        return backing.deviceName or names.name(_moid(backing.network) if backing.network else None)
    if isinstance(backing, vim.vm.device.VirtualEthernetCard.OpaqueNetworkBackingInfo):
        return str(backing.opaqueNetworkId)
    return None


def _usable_ip(text: str) -> bool:
    try:
        address = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return False
    if address.version == 4:
        return address not in _LINK_LOCAL_V4
    return not address.is_link_local


def _first_disk(devices: Sequence[Any]) -> Any | None:
    disks = sorted((d for d in devices if isinstance(d, vim.vm.device.VirtualDisk)), key=lambda d: d.key)
    return disks[0] if disks else None


def _nics(devices: Sequence[Any]) -> list[Any]:
    return sorted(
        (d for d in devices if isinstance(d, vim.vm.device.VirtualEthernetCard)), key=lambda d: d.key
    )


def _hostname(text: str, *, windows: bool) -> str:
    """A valid host name (RFC 1123 label; NetBIOS-sized for Windows) derived from ``text``."""
    label = re.sub(r"[^A-Za-z0-9-]+", "-", text).strip("-") or "vm"
    label = label[:15] if windows else label[:63]
    return label.strip("-") or "vm"


# --------------------------------------------------------------------------------------------
# The adapter
# --------------------------------------------------------------------------------------------


@dataclass
class _ClonePlan:
    template: vim.VirtualMachine
    template_name: str
    folder: vim.Folder
    clone_spec: vim.vm.CloneSpec
    network: Any | None = None  # the resolved port group for completion checks


class VSphereAdapter:
    """:class:`~hypervisors.base.HypervisorAdapter` for vCenter. See the module docstring."""

    kind = HypervisorKind.VSPHERE
    capabilities = Capabilities(
        guest_power=True,
        nic_disconnect=True,
        web_block=False,
        guest_credentials=True,
        disk_resize=True,
    )

    def __init__(self, config: ConnectionConfig, *, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        self.config = config
        self.endpoint = _parse_url(config.url)
        self.page_size = page_size
        self._translate = _Translator(self.endpoint, config.username)
        self._si: vim.ServiceInstance | None = None
        self._content: vim.ServiceInstanceContent | None = None

    def __repr__(self) -> str:
        return f"VSphereAdapter({self.endpoint}, user={self.config.username!r})"

    # ---- session ----------------------------------------------------------------------------

    def _login(self) -> vim.ServiceInstanceContent:
        if self._content is not None:
            return self._content
        kwargs: dict[str, Any] = {}
        if self.endpoint.scheme == "https":
            context = _ssl_context(self.config)
            if context is None:
                log.warning("TLS verification is OFF for %s (verify_tls=False)", self.endpoint)
                kwargs["disableSslCertValidation"] = True
            else:
                kwargs["sslContext"] = context
        with self._translate("log in"):
            try:
                si = SmartConnect(
                    protocol=self.endpoint.scheme,
                    host=self.endpoint.host,
                    port=self.endpoint.port,
                    path=self.endpoint.path,
                    user=self.config.username,
                    pwd=self.config.secret,
                    httpConnectionTimeout=self.config.timeout,
                    **kwargs,
                )
            except (vmodl.MethodFault, OSError, http.client.HTTPException):
                raise  # translated below
            except Exception as exc:
                # pyVim raises a bare Exception when the URL answers but is no vSphere SDK (or is
                # down during version negotiation): say which URL to look at.
                raise Unreachable(
                    f"{self.endpoint} is down or is not a vSphere SDK endpoint ({exc}); "
                    "check the URL (https://<vcenter>/sdk)",
                    defer=60.0,
                ) from exc
            content = si.RetrieveContent()
        self._si, self._content = si, content
        log.info("logged in to %s as %s", self.endpoint, self.config.username)
        return content

    def _relogin(self, content: vim.ServiceInstanceContent) -> None:
        # A new session on the same stub: the stub takes the new cookie, so every managed object
        # already obtained stays usable.
        log.info("vSphere session at %s expired; logging in again", self.endpoint)
        _service(content.sessionManager, "SessionManager").Login(
            self.config.username, self.config.secret, None
        )

    def _call(self, action: str, op: Callable[[vim.ServiceInstanceContent], T]) -> T:
        """Run one step against vCenter: log in if needed, and once more if the session expired.

        Steps are kept small (a read, a task submission, a wait) so that re-running one after a
        re-login never repeats a side effect.
        """
        with self._translate(action):
            content = self._login()
            try:
                return op(content)
            except vim.fault.NotAuthenticated:
                self._relogin(content)
                return op(content)

    def close(self) -> None:
        si, self._si, self._content = self._si, None, None
        if si is None:
            return
        with contextlib.suppress(Exception):
            _service(si.RetrieveContent().sessionManager, "SessionManager").Logout()
        with contextlib.suppress(Exception):
            si._stub.DropConnections()

    def __enter__(self) -> VSphereAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- property collector -----------------------------------------------------------------

    def _retrieve(
        self, content: vim.ServiceInstanceContent, specs: list[PC.FilterSpec]
    ) -> list[PC.ObjectContent]:
        """Every object the filter specs select, following ContinueRetrievePropertiesEx tokens."""
        collector = content.propertyCollector
        result = collector.RetrievePropertiesEx(
            specSet=specs, options=PC.RetrieveOptions(maxObjects=self.page_size)
        )
        objects: list[PC.ObjectContent] = []
        while result is not None:
            objects.extend(result.objects)
            if not result.token:
                break
            result = collector.ContinueRetrievePropertiesEx(token=result.token)
        for item in objects:
            _raise_if_unauthenticated(item)
        return objects

    def _read(self, content: vim.ServiceInstanceContent, obj: Any, paths: Iterable[str]) -> dict[str, Any]:
        """Some properties of one object in one round trip (ManagedObjectNotFound if gone)."""
        spec = PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=obj, skip=False)],
            propSet=[PC.PropertySpec(type=type(obj), pathSet=list(paths))],
        )
        found = self._retrieve(content, [spec])
        if not found:
            raise vmodl.fault.ManagedObjectNotFound(obj=obj)
        return _props(found[0])

    @contextlib.contextmanager
    def _view(
        self, content: vim.ServiceInstanceContent, types: list[type], root: Any = None
    ) -> Iterator[Any]:
        view = _service(content.viewManager, "ViewManager").CreateContainerView(
            root or content.rootFolder, types, True
        )
        try:
            yield view
        finally:
            # Views live as long as the session; a long-lived worker would pile them up.
            with contextlib.suppress(Exception):
                view.Destroy()

    @staticmethod
    def _view_spec(view: Any, kind: type, paths: Sequence[str]) -> PC.FilterSpec:
        traverse = PC.TraversalSpec(name="viewContents", type=vim.view.ContainerView, path="view", skip=False)
        return PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=view, skip=True, selectSet=[traverse])],
            propSet=[PC.PropertySpec(type=kind, pathSet=list(paths))],
        )

    def _all(
        self, content: vim.ServiceInstanceContent, kind: type, paths: Sequence[str], root: Any = None
    ) -> list[PC.ObjectContent]:
        with self._view(content, [kind], root) as view:
            return self._retrieve(content, [self._view_spec(view, kind, paths)])

    def _names(self, content: vim.ServiceInstanceContent, objects: Iterable[Any]) -> _Names:
        """Names of ``objects`` and of all their ancestors, in one bulk retrieve.

        The traversal follows ``parent`` from each object up to the root folder, so a host yields
        its cluster and datacenter, a pool its parents, a folder its path.
        """
        unique = {_moid(o): o for o in objects if o is not None}
        names = _Names()
        for _attempt in range(5):
            if not unique:
                return names
            up = PC.TraversalSpec(
                name="up",
                type=vim.ManagedEntity,
                path="parent",
                skip=False,
                selectSet=[PC.SelectionSpec(name="up")],
            )
            spec = PC.FilterSpec(
                objectSet=[PC.ObjectSpec(obj=o, skip=False, selectSet=[up]) for o in unique.values()],
                propSet=[
                    PC.PropertySpec(type=vim.ManagedEntity, pathSet=["name", "parent"]),
                    PC.PropertySpec(type=vim.dvs.DistributedVirtualPortgroup, pathSet=["key"]),
                ],
            )
            try:
                found = self._retrieve(content, [spec])
            except vmodl.fault.ManagedObjectNotFound as exc:
                # A host or pool went away since the VMs were read: resolve the others.
                gone = _moid(exc.obj) if getattr(exc, "obj", None) is not None else None
                if gone not in unique:
                    raise
                del unique[gone]
                continue
            for item in found:
                values = _props(item)
                parent = values.get("parent")
                entity = _Entity(
                    obj=item.obj,
                    kind=getattr(type(item.obj), "_wsdlName", type(item.obj).__name__),
                    name=str(values.get("name", _moid(item.obj))),
                    parent=_moid(parent) if parent is not None else None,
                )
                names.entities[_moid(item.obj)] = entity
                if "key" in values:
                    names.portgroups[str(values["key"])] = entity.name
            return names
        return names

    # ---- VM records -------------------------------------------------------------------------

    def _vm_info(self, obj: Any, values: Mapping[str, Any], names: _Names) -> VMInfo | None:
        ref = values.get("config.instanceUuid")
        if not ref:
            # An inaccessible or orphaned VM has no config: nothing the portal could manage.
            log.debug("skipping VM %s without config (inaccessible?)", _moid(obj))
            return None
        power = _POWER_STATES.get(str(values.get("runtime.powerState")), PowerState.UNKNOWN)
        devices = values.get("config.hardware.device") or []
        disks = tuple(
            DiskInfo(key=str(d.key), capacity_gib=_disk_gib(d))
            for d in devices
            if isinstance(d, vim.vm.device.VirtualDisk)
        )
        nic_list: list[NICInfo] = []
        for device in _nics(devices):
            connect = device.connectable
            connected = bool(connect and connect.connected)
            start_connected = bool(connect and connect.startConnected)
            # vCenter reports every NIC of a powered-off VM as disconnected; what decides whether
            # such a VM is isolated is whether its NICs connect at power on.
            nic_list.append(
                NICInfo(
                    key=str(device.key),
                    mac=device.macAddress,
                    network=_nic_network(device, names),
                    connected=connected if power is PowerState.RUNNING else start_connected,
                    start_connected=start_connected,
                )
            )
        ips: list[str] = []
        primary = values.get("guest.ipAddress")
        if primary and _usable_ip(primary):
            ips.append(primary)
        for guest_nic in values.get("guest.net") or []:
            for address in guest_nic.ipAddress or []:
                if _usable_ip(address) and address not in ips:
                    ips.append(address)

        host = values.get("runtime.host")
        host_id = _moid(host) if host is not None else None
        folder_id = _moid(values["parent"]) if values.get("parent") is not None else None
        pool = values.get("resourcePool")
        placement: dict[str, str] = {}
        datacenter = names.ancestor(folder_id, "Datacenter") or names.ancestor(host_id, "Datacenter")
        pool_id = _moid(pool) if pool is not None else None
        # The pool decides the cluster (vcsim leaves a clone on its template's host); a template
        # has no pool, so its host does.
        cluster = names.ancestor(pool_id, "ClusterComputeResource") or names.ancestor(
            host_id, "ClusterComputeResource"
        )
        for key, value in (
            ("datacenter", names.name(datacenter)),
            ("cluster", names.name(cluster)),
            ("host", names.name(host_id)),
            ("folder", names.path(folder_id)),
            ("pool", names.path(pool_id)),
        ):
            if value:
                placement[key] = value
        return VMInfo(
            ref=str(ref),
            name=str(values.get("name", "")),
            power_state=power,
            vcpus=int(values.get("config.hardware.numCPU") or 0),
            memory_mib=int(values.get("config.hardware.memoryMB") or 0),
            disks=disks,
            nics=tuple(nic_list),
            ips=tuple(ips),
            is_template=bool(values.get("config.template")),
            marker=marker_of(values.get("config.annotation")),
            web_blocked=False,
            placement=placement,
            extra={
                "moref": _moid(obj),
                "guest_id": values.get("config.guestId") or "",
                "guest_os": values.get("config.guestFullName") or "",
                "guest_tools": values.get("guest.toolsRunningStatus") or "",
                "guest_hostname": values.get("guest.hostName") or "",
            },
        )

    @staticmethod
    def _referenced(values: Mapping[str, Any]) -> list[Any]:
        refs: list[Any] = [values.get("runtime.host"), values.get("resourcePool"), values.get("parent")]
        refs.extend(values.get("network") or [])
        return refs

    def _inventory(self, content: vim.ServiceInstanceContent) -> list[VMInfo]:
        with self._view(content, [vim.VirtualMachine]) as view:
            rows = self._retrieve(content, [self._view_spec(view, vim.VirtualMachine, VM_PROPERTIES)])
        values = [(row.obj, _props(row)) for row in rows]
        names = self._names(content, (ref for _obj, v in values for ref in self._referenced(v)))
        infos = (self._vm_info(obj, v, names) for obj, v in values)
        return [info for info in infos if info is not None]

    def _info_of(self, content: vim.ServiceInstanceContent, vm: Any) -> VMInfo:
        values = self._read(content, vm, VM_PROPERTIES)
        info = self._vm_info(vm, values, self._names(content, self._referenced(values)))
        if info is None:
            raise NotFound(f"VM {_moid(vm)} is inaccessible (no configuration)")
        return info

    def _lookup(self, content: vim.ServiceInstanceContent, ref: str) -> vim.VirtualMachine | None:
        try:
            uuid.UUID(ref)
        except (ValueError, TypeError, AttributeError):
            return None  # not a ref this adapter ever issued
        found = _service(content.searchIndex, "SearchIndex").FindByUuid(None, ref, True, True)
        return found if isinstance(found, vim.VirtualMachine) else None

    def _find(self, ref: str, *, what: str = "VM") -> vim.VirtualMachine:
        vm = self._call(f"find {what} {ref}", lambda c: self._lookup(c, ref))
        if vm is None:
            raise NotFound(f"{what} {ref} does not exist on {self.endpoint}", detail={"ref": ref})
        return vm

    # ---- tasks ------------------------------------------------------------------------------

    def _result_ref(self, content: vim.ServiceInstanceContent, result: Any) -> str | None:
        if isinstance(result, vim.VirtualMachine):
            with contextlib.suppress(vmodl.fault.ManagedObjectNotFound):
                return str(self._read(content, result, ["config.instanceUuid"]).get("config.instanceUuid"))
        if isinstance(result, ManagedObject):
            return _moid(result)
        return None

    def _wait(
        self, task: vim.Task, timeout: float | None = None, *, action: str = "task"
    ) -> tuple[TaskResult, Any]:
        """Poll a task until it ends; returns its outcome and raw result. A timeout is Retriable."""
        limit = self.config.task_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        delay = 0.05
        task_ref = _moid(task)
        while True:
            info = self._call(
                f"{action} (waiting for {task_ref})", lambda c: self._read(c, task, ["info"])["info"]
            )
            state = str(info.state)
            if state in ("success", "error"):
                break
            if time.monotonic() >= deadline:
                raise Retriable(
                    f"{action}: task {task_ref} still {state} after {limit:g} s",
                    defer=30.0,
                    detail={"task_ref": task_ref},
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)
        extra = {"description": str(info.descriptionId or ""), "entity": str(info.entityName or "")}
        if state == "error":
            fault = info.error
            message = _fault_text(fault) if fault is not None else "the task failed without a fault"
            extra["fault"] = _fault_name(fault) if fault is not None else ""
            return TaskResult(ok=False, task_ref=task_ref, message=message, extra=extra), None
        result_ref = self._call(action, lambda c: self._result_ref(c, info.result))
        return TaskResult(
            ok=True, task_ref=task_ref, message="success", result_ref=result_ref, extra=extra
        ), info.result

    def _run(self, action: str, submit: Callable[[vim.ServiceInstanceContent], vim.Task]) -> Any:
        """Submit a task and wait for it; a failed task is TaskFailed with vCenter's own text."""
        task = self._call(action, submit)
        outcome, result = self._wait(task, action=action)
        if not outcome.ok:
            raise TaskFailed(
                f"{action} failed: {outcome.message}", detail={"task_ref": outcome.task_ref, **outcome.extra}
            )
        return result

    def wait_task(self, task_ref: str, timeout: float | None = None) -> TaskResult:
        content = self._call("wait for task", lambda c: c)
        task = vim.Task(task_ref, content.propertyCollector._stub)
        return self._wait(task, timeout, action=f"task {task_ref}")[0]

    # ---- the contract: reads ----------------------------------------------------------------

    def check(self) -> ConnectionCheck:
        try:
            content = self._call("log in", lambda c: c)
            about = content.about
            rows = self._call("count VMs", lambda c: self._all(c, vim.VirtualMachine, ["config.template"]))
            templates = sum(1 for row in rows if _props(row).get("config.template"))
            vms = len(rows) - templates
            return ConnectionCheck(
                ok=True,
                message=(
                    f"connected to {about.fullName} at {self.endpoint} as {self.config.username}: "
                    f"{vms} VMs, {templates} templates"
                ),
                product=str(about.name or about.fullName),
                version=f"{about.version} (build {about.build}, API {about.apiVersion})",
                vm_count=vms,
                template_count=templates,
            )
        except HypervisorError as exc:
            return ConnectionCheck(ok=False, message=exc.message)
        except Exception as exc:  # check() never raises: an operator reads this message
            log.exception("unexpected failure checking %s", self.endpoint)
            return ConnectionCheck(ok=False, message=f"unexpected error talking to {self.endpoint}: {exc!r}")

    def list_vms(self) -> list[VMInfo]:
        return self._call("list VMs", self._inventory)

    def list_templates(self) -> list[TemplateInfo]:
        return [
            TemplateInfo(
                ref=vm.ref,
                name=vm.name,
                os=str(vm.extra.get("guest_os") or vm.extra.get("guest_id") or ""),
                vcpus=vm.vcpus,
                memory_mib=vm.memory_mib,
                disk_gib=vm.disk_gib,
                extra={"guest_id": vm.extra.get("guest_id", ""), **vm.placement},
            )
            for vm in self.list_vms()
            if vm.is_template
        ]

    def get_vm(self, ref: str) -> VMInfo:
        vm = self._find(ref)
        return self._call(f"read VM {ref}", lambda c: self._info_of(c, vm))

    def _marked(self, content: vim.ServiceInstanceContent, marker: str) -> Any | None:
        rows = self._all(content, vim.VirtualMachine, ["config.annotation", "config.template"])
        matches = [row.obj for row in rows if marker_of(_props(row).get("config.annotation")) == marker]
        if len(matches) > 1:
            log.warning("%d VMs carry marker %s: %s", len(matches), marker, [_moid(m) for m in matches])
        return matches[0] if matches else None

    def find_by_marker(self, marker: str) -> VMInfo | None:
        if not marker:
            return None

        def find(content: vim.ServiceInstanceContent) -> VMInfo | None:
            vm = self._marked(content, marker)
            return None if vm is None else self._info_of(content, vm)

        return self._call(f"find VM with marker {marker}", find)

    # ---- clone ------------------------------------------------------------------------------

    def clone(self, spec: CloneSpec) -> VMInfo:
        if not spec.marker or not spec.marker.strip() or any(ch.isspace() for ch in spec.marker):
            raise InvalidSpec(
                "CloneSpec.marker is required (no spaces): it is what makes a retried clone safe"
            )
        if not spec.name.strip() or len(spec.name) > 80:
            raise InvalidSpec("CloneSpec.name must be 1 to 80 characters", detail={"field": "name"})
        if spec.vcpus < 1 or spec.memory_mib < 4 or spec.memory_mib % 4:
            raise InvalidSpec(
                f"vcpus ({spec.vcpus}) must be positive and memory_mib ({spec.memory_mib}) a positive "
                "multiple of 4 (a vSphere rule)",
                detail={"field": "memory_mib"},
            )

        existing = self._call(f"find VM with marker {spec.marker}", lambda c: self._marked(c, spec.marker))
        if existing is not None:
            return self._complete(existing, spec)

        template = self._find(spec.template_ref, what="template")
        plan = self._call(f"plan clone of {spec.template_ref}", lambda c: self._plan(c, template, spec))
        adopted = self._call(f"look for {spec.name}", lambda c: self._named(c, plan.folder, spec))
        if adopted is not None:
            return self._complete(adopted, spec)

        action = f"clone {plan.template_name} as {spec.name}"
        task = self._call(
            action, lambda c: plan.template.Clone(folder=plan.folder, name=spec.name, spec=plan.clone_spec)
        )
        outcome, created = self._wait(task, action=action)
        if not outcome.ok:
            self._remove_partial(plan.folder, spec)
            raise TaskFailed(
                f"{action} failed: {outcome.message}", detail={"task_ref": outcome.task_ref, **outcome.extra}
            )
        return self._complete(created, spec)

    def _plan(self, content: vim.ServiceInstanceContent, template: Any, spec: CloneSpec) -> _ClonePlan:
        tvalues = self._read(
            content,
            template,
            [
                "name",
                "config.template",
                "config.guestId",
                "config.hardware.device",
                "config.hardware.numCoresPerSocket",
                "runtime.host",
                "parent",
            ],
        )
        name = str(tvalues.get("name", spec.template_ref))
        if not tvalues.get("config.template"):
            raise InvalidSpec(
                f"{spec.template_ref} ({name}) is a VM, not a template", detail={"field": "template_ref"}
            )
        settings = {**self.config.defaults, **spec.placement}
        host = tvalues.get("runtime.host")
        names = self._names(content, [tvalues.get("parent"), host])
        dc = self._datacenter(content, settings.get("datacenter"), names, tvalues.get("parent"))
        dc_values = self._read(content, dc, ["name", "vmFolder", "hostFolder"])
        dc_path = names.path(_moid(dc)) or self._path_of(content, dc)

        folder = self._placement_folder(content, settings.get("folder"), dc_path, dc_values["vmFolder"])
        pool = self._placement_pool(content, settings, dc, dc_path, host, names)
        relocate = vim.vm.RelocateSpec(pool=pool)
        if settings.get("datastore"):
            relocate.datastore = self._by_name(content, vim.Datastore, settings["datastore"], dc, "datastore")
        if settings.get("host"):
            relocate.host = self._by_name(content, vim.HostSystem, settings["host"], dc, "host")

        devices = list(tvalues.get("config.hardware.device") or [])
        changes: list[vim.vm.device.VirtualDeviceSpec] = []
        disk = _first_disk(devices)
        if spec.disk_gib is not None:
            if disk is None:
                raise InvalidSpec(f"template {name} has no disk to grow", detail={"field": "disk_gib"})
            current = _disk_gib(disk)
            if spec.disk_gib < current:
                raise InvalidSpec(
                    f"disk_gib {spec.disk_gib} is smaller than template {name}'s {current:g} GiB disk; "
                    "disks can only grow",
                    detail={"field": "disk_gib"},
                )
            # The disk is grown by _complete, on the clone's own disk, before the first power-on:
            # an edit inside the clone spec would have to name the template's disk file.
        network_name = spec.network or self.config.defaults.get("network")
        network = None
        nics = _nics(devices)
        if network_name:
            network = self._by_name(content, vim.Network, network_name, dc, "network")
            if nics:
                changes.append(self._rewire(content, nics[0], network))

        config = vim.vm.ConfigSpec(
            numCPUs=spec.vcpus,
            memoryMB=spec.memory_mib,
            annotation=_with_marker(None, spec.marker),
            extraConfig=[vim.option.OptionValue(key=MARKER_EXTRA_CONFIG_KEY, value=spec.marker)],
            deviceChange=changes,
        )
        cores = int(tvalues.get("config.hardware.numCoresPerSocket") or 1)
        if spec.vcpus % cores:
            config.numCoresPerSocket = 1
        clone_spec = vim.vm.CloneSpec(
            location=relocate,
            template=False,
            # Powered on only after completion, so the first boot already has the final size.
            powerOn=False,
            config=config,
            customization=self._customization(spec, str(tvalues.get("config.guestId") or ""), len(nics)),
        )
        return _ClonePlan(
            template=template, template_name=name, folder=folder, clone_spec=clone_spec, network=network
        )

    def _path_of(self, content: vim.ServiceInstanceContent, obj: Any) -> str:
        return self._names(content, [obj]).path(_moid(obj)) or ""

    def _datacenter(
        self, content: vim.ServiceInstanceContent, wanted: str | None, names: _Names, folder: Any
    ) -> Any:
        if wanted:
            named = [
                row.obj
                for row in self._all(content, vim.Datacenter, ["name"])
                if _props(row).get("name") == wanted
            ]
            if not named:
                raise NotFound(f"datacenter {wanted!r} does not exist", detail={"field": "datacenter"})
            return named[0]
        found = names.obj(names.ancestor(_moid(folder) if folder is not None else None, "Datacenter"))
        if found is None:
            raise NotFound("cannot tell the template's datacenter; set defaults['datacenter']")
        return found

    def _at_path(self, content: vim.ServiceInstanceContent, path: str) -> Any | None:
        return _service(content.searchIndex, "SearchIndex").FindByInventoryPath(path.strip("/"))

    def _placement_folder(
        self, content: vim.ServiceInstanceContent, wanted: str | None, dc_path: str, vm_folder: Any
    ) -> Any:
        if not wanted:
            return vm_folder
        path = wanted if wanted.startswith("/") else f"{dc_path}/vm/{wanted}"
        found = self._at_path(content, path)
        if not isinstance(found, vim.Folder):
            raise NotFound(f"VM folder {wanted!r} does not exist ({path})", detail={"field": "folder"})
        return found

    def _placement_pool(
        self,
        content: vim.ServiceInstanceContent,
        settings: Mapping[str, str],
        dc: Any,
        dc_path: str,
        host: Any,
        names: _Names,
    ) -> Any:
        wanted = settings.get("pool") or settings.get("cluster")
        key = "pool" if settings.get("pool") else "cluster"
        found: Any = None
        if wanted:
            if "/" in wanted:
                found = self._at_path(
                    content, wanted if wanted.startswith("/") else f"{dc_path}/host/{wanted}"
                )
            else:
                kind = vim.ResourcePool if key == "pool" else vim.ClusterComputeResource
                found = self._by_name(content, kind, wanted, dc, key, missing_ok=key == "pool")
                if found is None:  # a pool given by its cluster's name
                    found = self._by_name(content, vim.ComputeResource, wanted, dc, key)
            if found is None:
                raise NotFound(f"{key} {wanted!r} does not exist", detail={"field": key})
        else:
            # The template's own cluster (or standalone host): its root pool.
            host_id = _moid(host) if host is not None else None
            found = names.obj(
                names.ancestor(host_id, "ClusterComputeResource")
                or names.ancestor(host_id, "ComputeResource")
            )
            if found is None:
                raise NotFound("cannot tell where to place the clone; set defaults['pool'] or ['cluster']")
        if isinstance(found, vim.ComputeResource):
            found = self._read(content, found, ["resourcePool"])["resourcePool"]
        if not isinstance(found, vim.ResourcePool):
            raise InvalidSpec(f"{key} {wanted!r} is not a resource pool or cluster", detail={"field": key})
        return found

    def _by_name(
        self,
        content: vim.ServiceInstanceContent,
        kind: type,
        name: str,
        within: Any,
        what: str,
        *,
        missing_ok: bool = False,
    ) -> Any:
        matches = [
            row.obj for row in self._all(content, kind, ["name"], within) if _props(row).get("name") == name
        ]
        if not matches:
            if missing_ok:
                return None
            raise NotFound(f"{what} {name!r} does not exist in this datacenter", detail={"field": what})
        if len(matches) > 1:
            raise InvalidSpec(
                f"{what} name {name!r} is ambiguous ({len(matches)} objects); give an inventory path",
                detail={"field": what},
            )
        return matches[0]

    @staticmethod
    def _grow(disk: Any, gib: int) -> vim.vm.device.VirtualDeviceSpec:
        disk.capacityInKB = gib * 1024 * 1024
        disk.capacityInBytes = gib * 2**30
        return vim.vm.device.VirtualDeviceSpec(
            operation=vim.vm.device.VirtualDeviceSpec.Operation.edit, device=disk
        )

    def _rewire(
        self, content: vim.ServiceInstanceContent, nic: Any, network: Any
    ) -> vim.vm.device.VirtualDeviceSpec:
        if isinstance(network, vim.dvs.DistributedVirtualPortgroup):
            values = self._read(content, network, ["key", "config.distributedVirtualSwitch"])
            switch = self._read(content, values["config.distributedVirtualSwitch"], ["uuid"])
            nic.backing = vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(
                port=vim.dvs.PortConnection(portgroupKey=values["key"], switchUuid=switch["uuid"])
            )
        elif isinstance(network, vim.OpaqueNetwork):
            summary = self._read(content, network, ["summary"])["summary"]
            nic.backing = vim.vm.device.VirtualEthernetCard.OpaqueNetworkBackingInfo(
                opaqueNetworkId=summary.opaqueNetworkId, opaqueNetworkType=summary.opaqueNetworkType
            )
        else:
            name = self._read(content, network, ["name"])["name"]
            nic.backing = vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(
                deviceName=name, network=network
            )
        nic.connectable = vim.vm.device.VirtualDevice.ConnectInfo(
            connected=True, startConnected=True, allowGuestControl=True
        )
        return vim.vm.device.VirtualDeviceSpec(
            operation=vim.vm.device.VirtualDeviceSpec.Operation.edit, device=nic
        )

    def _customization(
        self, spec: CloneSpec, guest_id: str, nic_count: int
    ) -> vim.vm.customization.Specification | None:
        """Guest customization for the admin password, host name and address; None if none asked.

        The password travels in the clone request only (vCenter passes it to the guest's
        customization package and does not keep it on the VM), and is never logged.
        """
        if not (spec.ip or spec.hostname or spec.admin_password):
            return None
        defaults = self.config.defaults
        windows = guest_id.lower().startswith("win")
        hostname = _hostname(spec.hostname or spec.name, windows=windows)
        dns = (
            list(spec.ip.dns)
            if spec.ip and spec.ip.dns
            else [d.strip() for d in defaults.get("dns", "").split(",") if d.strip()]
        )
        domain = defaults.get("domain", "localdomain")

        interface: ipaddress.IPv4Interface | ipaddress.IPv6Interface | None = None
        if spec.ip:
            try:
                interface = ipaddress.ip_interface(f"{spec.ip.address}/{spec.ip.prefix_length}")
                gateway = ipaddress.ip_address(spec.ip.gateway)
            except ValueError as exc:
                raise InvalidSpec(f"invalid IP settings: {exc}", detail={"field": "ip"}) from exc
            if gateway not in interface.network:
                raise InvalidSpec(
                    f"gateway {gateway} is outside {interface.network}", detail={"field": "ip.gateway"}
                )

        if spec.ip and not nic_count:
            raise InvalidSpec(
                "the template has no network adapter to give an address", detail={"field": "ip"}
            )
        custom = vim.vm.customization
        identity: Any
        nic_settings: list[Any] = []
        if windows:
            if spec.admin_user and spec.admin_user.lower() != "administrator":
                raise InvalidSpec(
                    "Sysprep sets the Administrator password only; admin_user must be Administrator "
                    "(or empty) for a Windows template",
                    detail={"field": "admin_user"},
                )
            identity = custom.Sysprep(
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
        elif spec.admin_password:
            identity = custom.CloudinitPrep(
                metadata=self._cloud_init_metadata(spec, hostname, interface, dns),
                userdata=self._cloud_init_userdata(spec),
            )
        else:
            identity = custom.LinuxPrep(
                hostName=custom.FixedName(name=hostname),
                domain=domain,
                timeZone=defaults.get("timezone", "Asia/Shanghai"),
                hwClockUTC=True,
            )
        if not isinstance(identity, custom.CloudinitPrep):
            # One mapping per NIC, in device order (vCenter rejects a count mismatch): the first
            # NIC gets the requested address, any others DHCP.
            first = custom.IPSettings(ip=custom.DhcpIpGenerator(), dnsServerList=dns)
            if interface is not None and spec.ip is not None:
                if interface.version == 4:
                    first.ip = custom.FixedIp(ipAddress=str(interface.ip))
                    first.subnetMask = str(interface.netmask)
                    first.gateway = [spec.ip.gateway]
                else:
                    first.ipV6Spec = custom.IPSettings.IpV6AddressSpec(
                        ip=[
                            custom.FixedIpV6(
                                ipAddress=str(interface.ip), subnetMask=interface.network.prefixlen
                            )
                        ],
                        gateway=[spec.ip.gateway],
                    )
            if nic_count:
                nic_settings = [custom.AdapterMapping(adapter=first)]
                nic_settings += [
                    custom.AdapterMapping(adapter=custom.IPSettings(ip=custom.DhcpIpGenerator()))
                    for _ in range(nic_count - 1)
                ]
        return custom.Specification(
            identity=identity,
            globalIPSettings=custom.GlobalIPSettings(
                dnsServerList=dns, dnsSuffixList=[domain] if domain else []
            ),
            nicSettingMap=nic_settings,
        )

    def _cloud_init_metadata(
        self,
        spec: CloneSpec,
        hostname: str,
        interface: ipaddress.IPv4Interface | ipaddress.IPv6Interface | None,
        dns: list[str],
    ) -> str:
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

    def _cloud_init_userdata(self, spec: CloneSpec) -> str:
        user = spec.admin_user or "root"
        config: dict[str, Any] = {
            "timezone": self.config.defaults.get("timezone", "Asia/Shanghai"),
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

    def _named(self, content: vim.ServiceInstanceContent, folder: Any, spec: CloneSpec) -> Any | None:
        """A VM already named ``spec.name`` in the target folder: ours (a retry) or a conflict."""
        found = _service(content.searchIndex, "SearchIndex").FindChild(folder, spec.name)
        if found is None:
            return None
        if not isinstance(found, vim.VirtualMachine):
            raise InvalidSpec(f"{spec.name!r} already names a {_fault_name(found)} in the target folder")
        values = self._read(content, found, ["config.annotation", "config.extraConfig"])
        markers = {marker_of(values.get("config.annotation"))}
        markers.update(
            str(option.value)
            for option in values.get("config.extraConfig") or []
            if option.key == MARKER_EXTRA_CONFIG_KEY
        )
        if spec.marker in markers:
            log.info("clone retry: adopting %s (%s), created by an earlier attempt", spec.name, _moid(found))
            return found
        raise InvalidSpec(
            f"a VM named {spec.name!r} already exists in the target folder and was not created for "
            f"{spec.marker}",
            detail={"field": "name"},
        )

    def _remove_partial(self, folder: Any, spec: CloneSpec) -> None:
        """After a failed clone task, destroy whatever VM it may have left behind."""
        leftovers: list[Any] = []
        with contextlib.suppress(HypervisorError):
            marked = self._call("look for a partial clone", lambda c: self._marked(c, spec.marker))
            if marked is not None:
                leftovers.append(marked)
        with contextlib.suppress(HypervisorError):
            named = self._call("look for a partial clone", lambda c: self._named(c, folder, spec))
            if named is not None and all(_moid(named) != _moid(v) for v in leftovers):
                leftovers.append(named)
        for vm in leftovers:
            log.warning("removing partial clone %s (%s) after a failed clone task", spec.name, _moid(vm))
            with contextlib.suppress(HypervisorError):
                self._destroy(vm, spec.name)

    def _complete(self, vm: Any, spec: CloneSpec) -> VMInfo:
        """Bring a cloned (or earlier cloned) VM to the spec: size, marker, disk, network, power."""
        values = self._call(
            f"read {spec.name}",
            lambda c: self._read(
                c,
                vm,
                [
                    "config.template",
                    "config.annotation",
                    "config.hardware.numCPU",
                    "config.hardware.memoryMB",
                    "config.hardware.numCoresPerSocket",
                    "config.hardware.device",
                    "runtime.powerState",
                    "network",
                    "parent",
                ],
            ),
        )
        if values.get("config.template"):
            raise InvalidSpec(f"marker {spec.marker} is on a template, not a VM", detail={"field": "marker"})
        # Built as keyword arguments: pyVmomi types some of these fields in ways mypy cannot follow.
        update: dict[str, Any] = {}
        if values.get("config.hardware.numCPU") != spec.vcpus:
            update["numCPUs"] = spec.vcpus
            if spec.vcpus % int(values.get("config.hardware.numCoresPerSocket") or 1):
                update["numCoresPerSocket"] = 1
        if values.get("config.hardware.memoryMB") != spec.memory_mib:
            update["memoryMB"] = spec.memory_mib
        annotation = values.get("config.annotation")
        if marker_of(annotation) != spec.marker:
            update["annotation"] = _with_marker(annotation, spec.marker)
        devices = list(values.get("config.hardware.device") or [])
        disk = _first_disk(devices)
        changes: list[vim.vm.device.VirtualDeviceSpec] = []
        if spec.disk_gib is not None and disk is not None:
            current = _disk_gib(disk)
            if spec.disk_gib < current:
                raise InvalidSpec(
                    f"disk_gib {spec.disk_gib} is smaller than {spec.name}'s {current:g} GiB disk; "
                    "disks can only grow",
                    detail={"field": "disk_gib"},
                )
            if spec.disk_gib > current:
                changes.append(self._grow(disk, spec.disk_gib))
        network_name = spec.network or self.config.defaults.get("network")
        nics = _nics(devices)
        if network_name and nics:
            names = self._call(
                "read networks",
                lambda c: self._names(c, [values.get("parent"), *(values.get("network") or [])]),
            )
            if _nic_network(nics[0], names) != network_name:
                folder = values.get("parent")
                within = names.obj(
                    names.ancestor(_moid(folder) if folder is not None else None, "Datacenter")
                )

                def rewire(c: vim.ServiceInstanceContent) -> vim.vm.device.VirtualDeviceSpec:
                    return self._rewire(
                        c, nics[0], self._by_name(c, vim.Network, network_name, within, "network")
                    )

                changes.append(self._call("resolve network", rewire))
        if changes:
            update["deviceChange"] = changes
        if update:
            config = vim.vm.ConfigSpec(**update)
            self._run(f"reconfigure {spec.name}", lambda c: vm.Reconfigure(spec=config))
        if spec.power_on and values.get("runtime.powerState") != "poweredOn":
            self._run(f"power on {spec.name}", lambda c: vm.PowerOn(host=None))
        return self._call(f"read {spec.name}", lambda c: self._info_of(c, vm))

    # ---- power, network, delete -------------------------------------------------------------

    def _state(self, vm: Any, ref: str) -> tuple[PowerState, dict[str, Any]]:
        values = self._call(
            f"read VM {ref}",
            lambda c: self._read(
                c, vm, ["name", "config.template", "runtime.powerState", "config.hardware.device"]
            ),
        )
        if values.get("config.template"):
            raise InvalidSpec(f"{ref} ({values.get('name')}) is a template, not a VM", detail={"ref": ref})
        return _POWER_STATES.get(str(values.get("runtime.powerState")), PowerState.UNKNOWN), values

    def power(self, ref: str, action: PowerAction) -> VMInfo:
        action = PowerAction(action)
        vm = self._find(ref)
        current, values = self._state(vm, ref)
        name = values.get("name", ref)
        allowed = POWER_ACTION_ALLOWED_FROM[action]
        if current not in allowed:
            needs = " or ".join(sorted(s.value for s in allowed))
            raise TaskFailed(
                f"cannot {action.value} VM {name} ({ref}): it is {current.value}, "
                f"{action.value} needs it {needs}",
                detail={"ref": ref, "power_state": current.value},
            )
        label = f"{action.value} {name}"
        if action is PowerAction.START and current is not PowerState.RUNNING:
            self._run(label, lambda c: vm.PowerOn(host=None))
        elif action is PowerAction.STOP and current is not PowerState.STOPPED:
            self._run(label, lambda c: vm.PowerOff())
        elif action is PowerAction.RESTART:
            self._run(label, lambda c: vm.Reset())
        elif action is PowerAction.SHUTDOWN and current is not PowerState.STOPPED:
            self._call(label, lambda c: vm.ShutdownGuest())
            self._await_power(vm, "poweredOff", label)
        elif action is PowerAction.REBOOT:
            # The VM stays powered on through a guest reboot; there is no state change to await.
            self._call(label, lambda c: vm.RebootGuest())
        return self._call(f"read VM {ref}", lambda c: self._info_of(c, vm))

    def _await_power(self, vm: Any, target: str, action: str) -> None:
        """Guest shutdown is a request, not a task: poll until vCenter reports the state."""
        deadline = time.monotonic() + self.config.task_timeout
        delay = 0.1
        while True:
            state = self._call(
                action, lambda c: self._read(c, vm, ["runtime.powerState"]).get("runtime.powerState")
            )
            if str(state) == target:
                return
            if time.monotonic() >= deadline:
                raise Retriable(
                    f"{action}: the guest is still {state} after {self.config.task_timeout:g} s; "
                    "retry, or stop it hard",
                    defer=30.0,
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 3.0)

    def set_network(self, ref: str, connected: bool) -> VMInfo:
        vm = self._find(ref)
        current, values = self._state(vm, ref)
        changes = []
        for nic in _nics(values.get("config.hardware.device") or []):
            connect = nic.connectable or vim.vm.device.VirtualDevice.ConnectInfo(allowGuestControl=True)
            # A powered-off VM always reads as disconnected: judge it by startConnected alone.
            live_ok = current is not PowerState.RUNNING or bool(connect.connected) == connected
            guest_ok = connected or not connect.allowGuestControl
            if live_ok and bool(connect.startConnected) == connected and guest_ok:
                continue
            nic.connectable = vim.vm.device.VirtualDevice.ConnectInfo(
                connected=connected,
                startConnected=connected,
                # An isolated guest must not be able to reconnect its own NIC through VMware
                # Tools; restoring leaves that switch off, it is not needed for normal use.
                allowGuestControl=bool(connect.allowGuestControl) and connected,
            )
            changes.append(
                vim.vm.device.VirtualDeviceSpec(
                    operation=vim.vm.device.VirtualDeviceSpec.Operation.edit, device=nic
                )
            )
        if changes:
            verb = "connect" if connected else "disconnect"
            spec = vim.vm.ConfigSpec(deviceChange=changes)
            self._run(f"{verb} NICs of {values.get('name', ref)}", lambda c: vm.Reconfigure(spec=spec))
        return self._call(f"read VM {ref}", lambda c: self._info_of(c, vm))

    def set_web_block(self, ref: str, blocked: bool) -> VMInfo:
        raise NotSupported(
            "vSphere has no per-VM firewall for inbound 80/443 without NSX; isolate the VM's network instead",
            detail={"ref": ref},
        )

    def _destroy(self, vm: Any, label: str) -> None:
        try:
            state = self._call(
                f"read {label}", lambda c: self._read(c, vm, ["runtime.powerState"]).get("runtime.powerState")
            )
            if str(state) in ("poweredOn", "suspended"):
                with contextlib.suppress(TaskFailed):  # it may have stopped meanwhile
                    self._run(f"power off {label}", lambda c: vm.PowerOff())
            self._run(f"destroy {label}", lambda c: vm.Destroy())
        except NotFound:
            return  # gone already: that is what was asked

    def delete(self, ref: str) -> None:
        vm = self._call(f"find VM {ref}", lambda c: self._lookup(c, ref))
        if vm is None:
            return
        try:
            _state, values = self._state(vm, ref)
        except NotFound:
            return
        self._destroy(vm, str(values.get("name", ref)))


@register(HypervisorKind.VSPHERE)
def _factory(config: ConnectionConfig) -> VSphereAdapter:
    return VSphereAdapter(config)
