"""The PropertyCollector plumbing: paged retrieves, container views, and names of entities.

Everything the adapter reads from vCenter goes through :class:`Collector`: one
``RetrievePropertiesEx`` per request, continued with ``ContinueRetrievePropertiesEx`` while vCenter
hands out tokens (pages of at most ``page_size`` objects), so reading 5,000 VMs costs a handful of
round trips and never one per VM. Managed objects' lazy attributes (a round trip each) are not used.

Methods take the ``ServiceInstanceContent`` of the current step (see
:meth:`~hypervisors.vsphere.session.Session.call`) and raise pyVmomi faults, which that call
translates. A property read of an expired session is raised as ``NotAuthenticated`` so the session
logs in again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyVmomi import vim, vmodl

from hypervisors.vsphere.session import service

PC = vmodl.query.PropertyCollector

#: Objects per RetrievePropertiesEx page. vCenter may return fewer; the token loop copes.
DEFAULT_PAGE_SIZE = 500


def moid(obj: Any) -> str:
    """The managed object id (``vm-42``) of a pyVmomi managed object."""
    return str(obj._moId)


def props(content: PC.ObjectContent) -> dict[str, Any]:
    """The properties of one retrieved object, by path."""
    return {p.name: p.val for p in content.propSet}


def raise_if_unauthenticated(content: PC.ObjectContent) -> None:
    """Raise the ``NotAuthenticated`` fault a retrieved object carries instead of a property."""
    # vCenter (and vcsim) answer a property read of an expired session with a per-property
    # NotAuthenticated in missingSet rather than a fault; surface it so the caller logs in again.
    for missing in content.missingSet:
        if isinstance(missing.fault, vim.fault.NotAuthenticated):
            raise missing.fault


@dataclass
class Entity:
    """A managed entity as :meth:`Collector.names` found it."""

    obj: Any  # the pyVmomi managed object, of its real type (a cluster is not a ComputeResource)
    kind: str
    name: str
    parent: str | None


@dataclass
class Names:
    """Names and parents of the hosts, pools, folders and networks some VMs reference."""

    entities: dict[str, Entity] = field(default_factory=dict)
    portgroups: dict[str, str] = field(default_factory=dict)  # DVPG key -> name

    def name(self, entity_id: str | None) -> str | None:
        entity = self.entities.get(entity_id or "")
        return entity.name if entity else None

    def obj(self, entity_id: str | None) -> Any | None:
        entity = self.entities.get(entity_id or "")
        return entity.obj if entity else None

    def ancestor(self, entity_id: str | None, kind: str) -> str | None:
        seen = 0
        while entity_id and seen < 64:
            entity = self.entities.get(entity_id)
            if entity is None:
                return None
            if entity.kind == kind:
                return entity_id
            entity_id = entity.parent
            seen += 1
        return None

    def path(self, entity_id: str | None) -> str | None:
        """Inventory path (``/DC0/vm/Templates``) of an entity; the root folder is left out."""
        if not entity_id:
            return None
        names: list[str] = []
        seen = 0
        while entity_id and seen < 64:
            entity = self.entities.get(entity_id)
            if entity is None:
                return None
            if entity.parent is None:  # the root folder ("Datacenters")
                break
            names.append(entity.name.replace("/", "%2f"))
            entity_id = entity.parent
            seen += 1
        return "/" + "/".join(reversed(names))


class Collector:
    """Paged PropertyCollector reads; ``page_size`` objects per page at most."""

    def __init__(self, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        self.page_size = page_size

    def retrieve(
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
            raise_if_unauthenticated(item)
        return objects

    def read(self, content: vim.ServiceInstanceContent, obj: Any, paths: Iterable[str]) -> dict[str, Any]:
        """Some properties of one object in one round trip (ManagedObjectNotFound if gone)."""
        spec = PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=obj, skip=False)],
            propSet=[PC.PropertySpec(type=type(obj), pathSet=list(paths))],
        )
        found = self.retrieve(content, [spec])
        if not found:
            raise vmodl.fault.ManagedObjectNotFound(obj=obj)
        return props(found[0])

    def read_with_networks(
        self, content: vim.ServiceInstanceContent, vm: Any, paths: Iterable[str]
    ) -> tuple[dict[str, Any], Names]:
        """Some properties of a VM and the names of the networks it is on, in one round trip
        (ManagedObjectNotFound if the VM is gone): the retrieve follows the VM's ``network`` list,
        so a NIC on a distributed port group (named by key in its backing) is named without a
        second request."""
        networks = PC.TraversalSpec(name="vmNetworks", type=vim.VirtualMachine, path="network", skip=False)
        spec = PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=vm, skip=False, selectSet=[networks])],
            propSet=[
                PC.PropertySpec(type=vim.VirtualMachine, pathSet=list(paths)),
                PC.PropertySpec(type=vim.Network, pathSet=["name"]),
                PC.PropertySpec(type=vim.dvs.DistributedVirtualPortgroup, pathSet=["key"]),
            ],
        )
        values: dict[str, Any] | None = None
        names = Names()
        for item in self.retrieve(content, [spec]):
            found = props(item)
            if moid(item.obj) == moid(vm):
                values = found
                continue
            name = str(found.get("name", moid(item.obj)))
            kind = getattr(type(item.obj), "_wsdlName", type(item.obj).__name__)
            names.entities[moid(item.obj)] = Entity(obj=item.obj, kind=kind, name=name, parent=None)
            if "key" in found:
                names.portgroups[str(found["key"])] = name
        if values is None:
            raise vmodl.fault.ManagedObjectNotFound(obj=vm)
        return values, names

    @contextlib.contextmanager
    def view(self, content: vim.ServiceInstanceContent, types: list[type], root: Any = None) -> Iterator[Any]:
        """A ContainerView of every ``types`` object under ``root`` (the root folder), destroyed after."""
        view = service(content.viewManager, "ViewManager").CreateContainerView(
            root or content.rootFolder, types, True
        )
        try:
            yield view
        finally:
            # Views live as long as the session; a long-lived worker would pile them up.
            with contextlib.suppress(Exception):
                view.Destroy()

    @staticmethod
    def view_spec(view: Any, kind: type, paths: Sequence[str]) -> PC.FilterSpec:
        """The filter that reads ``paths`` of every ``kind`` object of a container view."""
        traverse = PC.TraversalSpec(name="viewContents", type=vim.view.ContainerView, path="view", skip=False)
        return PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=view, skip=True, selectSet=[traverse])],
            propSet=[PC.PropertySpec(type=kind, pathSet=list(paths))],
        )

    def all_of(
        self, content: vim.ServiceInstanceContent, kind: type, paths: Sequence[str], root: Any = None
    ) -> list[PC.ObjectContent]:
        """``paths`` of every ``kind`` object under ``root``, through a view made for the purpose."""
        with self.view(content, [kind], root) as view:
            return self.retrieve(content, [self.view_spec(view, kind, paths)])

    def names(self, content: vim.ServiceInstanceContent, objects: Iterable[Any]) -> Names:
        """Names of ``objects`` and of all their ancestors, in one bulk retrieve.

        The traversal follows ``parent`` from each object up to the root folder, so a host yields
        its cluster and datacenter, a pool its parents, a folder its path.
        """
        unique = {moid(o): o for o in objects if o is not None}
        names = Names()
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
                found = self.retrieve(content, [spec])
            except vmodl.fault.ManagedObjectNotFound as exc:
                # A host or pool went away since the VMs were read: resolve the others.
                gone = moid(exc.obj) if getattr(exc, "obj", None) is not None else None
                if gone not in unique:
                    raise
                del unique[gone]
                continue
            for item in found:
                values = props(item)
                parent = values.get("parent")
                entity = Entity(
                    obj=item.obj,
                    kind=getattr(type(item.obj), "_wsdlName", type(item.obj).__name__),
                    name=str(values.get("name", moid(item.obj))),
                    parent=moid(parent) if parent is not None else None,
                )
                names.entities[moid(item.obj)] = entity
                if "key" in values:
                    names.portgroups[str(values["key"])] = entity.name
            return names
        return names

    def path_of(self, content: vim.ServiceInstanceContent, obj: Any) -> str:
        """Inventory path of one entity (``/DC0``), or "" when it cannot be resolved."""
        return self.names(content, [obj]).path(moid(obj)) or ""
