"""Every router of the JSON API, mounted under /api/v1, named here one by one so the application's
dependencies on its domains read as plain imports. Each domain package owns its ``api.py``."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from vmportal.alerts import api as alerts_api
from vmportal.center import api as center_api
from vmportal.cleanup import api as cleanup_api
from vmportal.compliance import api as compliance_api
from vmportal.connection import api as connection_api
from vmportal.identity import api as identity_api
from vmportal.incidents import api as incidents_api
from vmportal.inventory import api as inventory_api
from vmportal.maintenance import api as maintenance_api
from vmportal.network import api as network_api
from vmportal.paperwork import api as paperwork_api
from vmportal.reports import audit_api, quota_api
from vmportal.reports import paperwork_api as paperwork_report_api
from vmportal.reports import period_api as period_report_api
from vmportal.request import api as request_api
from vmportal.unit import api as unit_api
from vmportal.vm import api as vm_api

# In the order their tags appear in /docs. The VM router comes first: a request is matched against the
# routes in this order, and "list my VMs" / "get one VM" are the requests every page makes (no route of
# the others shadows or is shadowed by its paths).
ROUTERS: list[APIRouter] = [
    vm_api.router,
    identity_api.router,
    unit_api.router,
    center_api.router,
    connection_api.router,
    network_api.router,
    request_api.router,
    quota_api.router,
    inventory_api.router,
    alerts_api.router,
    incidents_api.router,
    compliance_api.router,
    audit_api.router,
    paperwork_api.router,
    cleanup_api.router,
    maintenance_api.router,
    paperwork_report_api.router,
    period_report_api.router,
]


def include_all(app: FastAPI, prefix: str) -> None:
    for router in ROUTERS:
        app.include_router(router, prefix=prefix)
