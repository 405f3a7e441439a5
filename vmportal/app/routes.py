"""Every router of the API, mounted under /api/v1. Each domain package owns its ``api.py``."""

from __future__ import annotations

import importlib

from fastapi import APIRouter, FastAPI

# Domain modules that expose ``router``, in the order their tags appear in /docs. The VM router comes
# first: a request is matched against the routes in this order, and "list my VMs" / "get one VM"
# are the requests every page makes (no route of the others shadows or is shadowed by its paths).
ROUTER_MODULES = [
    "vmportal.vm.api",
    "vmportal.identity.api",
    "vmportal.unit.api",
    "vmportal.center.api",
    "vmportal.connection.api",
    "vmportal.network.api",
    "vmportal.request.api",
    "vmportal.vm.network",
    "vmportal.vm.credentials",
    "vmportal.quota.api",
    "vmportal.inventory.api",
    "vmportal.incidents.api",
    "vmportal.compliance.api",
    "vmportal.audit.api",
]


def include_all(app: FastAPI, prefix: str) -> None:
    for name in ROUTER_MODULES:
        module = importlib.import_module(name)
        router: APIRouter = module.router
        app.include_router(router, prefix=prefix)
