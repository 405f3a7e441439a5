"""Getting a fresh worker pool process ready before its first task.

A pool process starts cold: no database connection (PostgreSQL forks a backend for each, whose
catalog caches start empty), no hypervisor session, pyVmomi's types not yet built from their
descriptions. Whoever comes first pays for all of it: right after a worker (re)start that was the
first containments, each a few hundred milliseconds slower on a busy machine than the ones after.

:func:`start` does that work in a background thread as the process starts, so it overlaps with the
worker waiting for its first message. It only reads: one database transaction, and one
:meth:`~hypervisors.base.HypervisorAdapter.get_vm` per hypervisor connection (on an adapter of its
own, closed afterwards). It never delays the process itself (Celery kills a pool process that does
not report for duty within seconds), and a failure is only logged: an unreachable vCenter is the
tasks' business, with their retries.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading

from sqlmodel import SQLModel

from hypervisors import create
from vmportal.audit import service as audit
from vmportal.jobs import outbox
from vmportal.kit import db

log = logging.getLogger(__name__)

#: Database connections opened ahead: a task holds two (its outbox claim, its transaction).
CONNECTIONS = 2


def start() -> threading.Thread:
    thread = threading.Thread(target=warm_up, name="vmportal-warm-up", daemon=True)
    thread.start()
    return thread


def warm_up() -> None:
    try:
        _database()
        _hypervisors()
    except Exception as exc:  # only a head start: the first task does whatever is left
        log.info("warm-up of the pool process incomplete: %s", exc)


def _database() -> None:
    engine = db.engine()
    connections = [engine.connect() for _ in range(CONNECTIONS)]
    try:
        for conn in connections:
            # Every table once, so this backend has read their descriptions before a task needs them.
            db.read_descriptions(conn, SQLModel.metadata.sorted_tables)
            conn.rollback()
    finally:
        for conn in connections:
            conn.close()


def _hypervisors() -> None:
    from vmportal.connection.repository import connections_by_id
    from vmportal.connection.service import config_of
    from vmportal.vm import repository as vms

    with db.transaction() as s:
        targets = []
        for conn in connections_by_id(s, active=True):
            assert conn.id is not None
            ref = vms.an_active_ref(s, conn.id)
            if ref:
                targets.append((config_of(conn), ref))
    for config, ref in targets:
        adapter = create(config)
        try:
            adapter.get_vm(ref)  # logs in, and builds the types a VM's reading needs
        except Exception as exc:
            log.info("warm-up: %s not reached: %s", config.url, exc)
        finally:
            adapter.close()


# ---- the worker's rehearsal, before the pool forks ---------------------------------------------------

#: The simulator world the rehearsal's VM lives in (in memory, dropped afterwards).
_REHEARSAL_WORLD = "vmportal-rehearsal"


def rehearse() -> bool:
    """Run the alert path once in the worker's main process, before it forks the pool, on rows made
    for it, and roll all of it back. Whether it ran to the end.

    A pool process's first alert processing and first containment each cost about 0.1 s more CPU
    than the ones after (measured on the 20,000-VM bench: 115 and 110 ms against 10 and 40 ms), spent
    compiling statements and building the ORM's loaders; with eight pool processes, that landed on
    the first alerts after every start, eight times over. Done once here, the pool processes inherit
    it: the engine survives the fork (``db.after_fork``) with its compiled statements.

    What runs is the real code: an alert post (``ingest.receive_post``), its processing (matching,
    the incident, the decision) and the containment (``containment.contain_once``) of a VM on an
    in-memory simulator, inside one PostgreSQL transaction that is rolled back: sessions commit
    savepoints only (``db.joined``), no task is dispatched (``outbox.held``), no audit row is added
    to the chain (``audit.discarded``: its ids would leave a gap), the latency metric is not
    observed, and logging is quiet meanwhile. Left behind: a few ids of other tables' sequences,
    skipped. The rehearsal's address is a random one in 2001:db8::/32
    (documentation, never a campus VM's); should an alert match anything else the rehearsal stops
    before the containment, which then touches no real hypervisor. Any error only ends it early.
    """
    engine = db.engine()
    if engine.dialect.name != "postgresql":
        return False  # the production worker's database; SQLite runs tasks in-process
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with engine.connect() as conn:
            outer = conn.begin()
            try:
                with db.joined(conn), outbox.held(), audit.discarded():
                    return _rehearse()
            finally:
                outer.rollback()
    except Exception as exc:  # only a head start
        logging.disable(previous)
        log.info("rehearsal of the alert path incomplete: %s", exc)
        return False
    finally:
        logging.disable(previous)
        from hypervisors.simulator import SimulatorAdapter
        from vmportal.connection.service import close_adapters

        close_adapters()
        SimulatorAdapter.drop_memory_world(_REHEARSAL_WORLD)
        engine.dispose()  # no connection of this process crosses the fork


def rehearsal_address() -> str:
    """A random address in 2001:db8::/32, the documentation prefix: never a campus VM's."""
    return f"2001:db8:{secrets.randbelow(0xFFFF):x}::{secrets.randbelow(0xFFFF) + 1:x}"


def _rehearse() -> bool:

    from hypervisors import CloneSpec, ConnectionConfig, HypervisorKind
    from vmportal.alerts import ingest, sources
    from vmportal.alerts.model import SourceKind
    from vmportal.audit.service import Who
    from vmportal.connection.models import HypervisorConnection
    from vmportal.incidents import containment
    from vmportal.incidents.models import Incident, SecurityAlert
    from vmportal.unit.models import Unit
    from vmportal.vm.models import VM

    tag = secrets.token_hex(4)
    url = f"simulator://memory/{_REHEARSAL_WORLD}"
    adapter = create(ConnectionConfig(kind=HypervisorKind.SIMULATOR, url=url))
    try:
        template = adapter.list_templates()[0]
        info = adapter.clone(
            CloneSpec(
                name=f"rehearsal-{tag}", template_ref=template.ref, marker=tag, vcpus=1, memory_mib=1024
            )
        )
    finally:
        adapter.close()
    address = rehearsal_address()
    who = Who(actor="vmportal-worker-rehearsal", role="system")
    with db.transaction() as s:
        unit = Unit(code=f"~{tag}", name_zh="演练", name_en="rehearsal")
        conn_row = HypervisorConnection(
            name=f"~rehearsal-{tag}", kind=HypervisorKind.SIMULATOR.value, url=url
        )
        s.add(unit)
        s.add(conn_row)
        s.flush()
        assert unit.id is not None and conn_row.id is not None
        vm = VM(
            unit_id=unit.id,
            connection_id=conn_row.id,
            hypervisor_ref=info.ref,
            name=info.name,
            power_state=str(info.power_state),
            ip_address=address,
        )
        s.add(vm)
        source, credentials = sources.create_source(
            s,
            who,
            name=f"vmportal-rehearsal-{tag}",
            kind=SourceKind.SURICATA,
            auth=sources.AuthMethod.BEARER,
            allowed_cidrs=["127.0.0.1/32"],
        )
        s.flush()
        vm_id, source_name = vm.id, source.name
    body = json.dumps(
        {
            "timestamp": db.utcnow().isoformat(),
            "flow_id": secrets.randbelow(1 << 40),
            "event_type": "alert",
            "src_ip": address,
            "src_port": 49152,
            "dest_ip": "2001:db8::9",
            "dest_port": 443,
            "proto": "TCP",
            "alert": {
                "action": "allowed",
                "gid": 1,
                "signature_id": 1,
                "rev": 1,
                "signature": "vmportal worker rehearsal",
                "category": "A Network Trojan was detected",
                "severity": 1,
            },
        }
    ).encode()
    headers = {"Authorization": f"Bearer {credentials.token}", "Content-Type": "application/json"}
    posted = ingest.receive_post(source_name, body, headers, "127.0.0.1")
    alert_ids = [i for r in posted.body.get("results", []) for i in r.get("alert_ids", [])]
    if not alert_ids:
        return False
    ingest.process_alerts(alert_ids)
    with db.transaction() as s:
        alert = s.get(SecurityAlert, alert_ids[0])
        incident = s.get(Incident, alert.incident_id) if alert and alert.incident_id else None
        if incident is None or incident.id is None or incident.vm_id != vm_id:
            return False  # matched something else: never contain a real VM here
        outcome, _ = containment.contain_once(s, incident.id)
    return outcome == "contained"
