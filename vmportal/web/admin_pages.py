"""The center administrator's pages in one router (vmportal.web.portal includes it): 单位管理 (units,
their accounts from the registry, their quota), 用户管理 (accounts), IP 地址池, 虚拟化平台连接,
告警来源 and 处置策略 (the containment policy table)."""

from __future__ import annotations

from fastapi import APIRouter

from vmportal.web import admin_network, admin_security, admin_units, admin_users

router = APIRouter(include_in_schema=False)
router.include_router(admin_units.router)  # /admin/units, /admin/units/{id}, accounts, quota
router.include_router(admin_users.router)  # /admin/users, POST /admin/users/{id}/active
router.include_router(admin_network.router)  # /admin/pools (+ POST), /admin/connections, POST …/{id}/test
router.include_router(
    admin_security.router
)  # /admin/alert-sources (+ POST), /admin/containment-policy (+ POST)
