"""The read-only state of a VM's one-time credentials (vmportal.vm.service.credentials.credentials_state),
which the credentials page asks before offering the fetch: a VM without delivery credentials is
not delivered; a delivered one is available to its unit's admin and refused to everyone else with
rule credentials_once; asking writes nothing and never uses the fetch up; after the one fetch it
is fetched (with when), refused to the admin too; another unit's VM is a 404."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.test_delivery import deliver, fetch
from tests.api.test_requests import Portal, counts, make_portal
from tests.api.test_vm_reads import actor_for
from tests.factories import Factory
from vmportal.kit import db, errors
from vmportal.vm.models import VM, Lifecycle
from vmportal.vm.service.credentials import CredentialsState, CredentialsStatus, credentials_state


@pytest.fixture
def portal(client: TestClient, factory: Factory) -> Portal:
    return make_portal(client, factory, quota=(50, 200, 512, 10000))


def _state(portal: Portal, who: str, vm_id: int) -> CredentialsState:
    with db.transaction(read_only=True) as session:
        return credentials_state(session, actor_for(portal.heads[who]), vm_id)


def test_the_state_follows_the_one_fetch_and_writes_nothing(portal: Portal, factory: Factory) -> None:
    vm_id = int(deliver(portal)["vm_id"])
    before = counts()
    admin = _state(portal, "admin", vm_id)
    assert admin.status is CredentialsStatus.AVAILABLE and admin.can_fetch and admin.refusal is None
    for who in ("lead", "operator", "center_admin", "auditor"):
        state = _state(portal, who, vm_id)
        assert state.status is CredentialsStatus.AVAILABLE and not state.can_fetch
        assert state.refusal is not None and state.refusal.rule == "credentials_once"
    with pytest.raises(errors.NotFound):
        _state(portal, "other_admin", vm_id)
    with pytest.raises(errors.NotFound):
        _state(portal, "admin", 999_999)
    assert counts() == before  # asked eight times: nothing written, not even an audit row
    assert _state(portal, "admin", vm_id).can_fetch

    assert fetch(portal, vm_id).status_code == 200
    after = _state(portal, "admin", vm_id)
    assert after.status is CredentialsStatus.FETCHED and after.fetched_at is not None
    assert after.refusal is not None and after.refusal.rule == "credentials_once"
    assert "已经领取过" in after.refusal.message_zh and "already been collected" in after.refusal.message_en

    # A VM the portal did not deliver (no credentials) and a delivered one taken out of service.
    other = factory.vm(portal.unit)
    assert other.id is not None
    assert _state(portal, "admin", other.id).status is CredentialsStatus.NOT_DELIVERED
    second = int(deliver(portal, hostname="lab-db")["vm_id"])
    with db.transaction() as session:
        vm = session.get(VM, second)
        assert vm is not None
        vm.lifecycle = Lifecycle.DECOMMISSIONED
    inactive = _state(portal, "admin", second)
    assert inactive.status is CredentialsStatus.INACTIVE and not inactive.can_fetch
