"""The role pages added to the app in one place (vmportal/app/factory.py includes this router):
我的虚拟机 and a VM's page, 申请虚拟机, the incidents and rectification, the approval queue."""

from __future__ import annotations

from fastapi import APIRouter

from vmportal.web import (
    admin_pages,
    cleanup_pages,
    credentials_pages,
    incident_pages,
    inventory_pages,
    lead_pages,
    maintenance_pages,
    queue_pages,
    report_pages,
    request_form,
    robot_pages,
    settings_pages,
    unit_pages,
    vm_pages,
)

router = APIRouter(include_in_schema=False)
router.include_router(vm_pages.router)  # /vms, /vms/{id}, POST /vms/{id}/power
router.include_router(credentials_pages.router)  # /vms/{id}/credentials: the one-time hand-over
router.include_router(request_form.router)  # 申请虚拟机: /requests/new
router.include_router(incident_pages.router)  # 安全事件: /incidents, /incidents/{id}, rectification
router.include_router(lead_pages.router)  # 待确认: /endorsements, endorse / decline (unit_lead)
router.include_router(queue_pages.router)  # 待审批: /queue, approve / reject / retry
router.include_router(unit_pages.router)  # 单位信息: /unit, /unit/{id}
router.include_router(report_pages.router)  # 报表: /reports, /reports/download/{report}.{csv|xlsx}
router.include_router(inventory_pages.router)  # 未登记虚拟机: /inventory, POST /inventory/{vm_id}/assign
router.include_router(cleanup_pages.router)  # 清理工作: /cleanup, confirm / correct / retire
router.include_router(maintenance_pages.router)  # 计划停机: /maintenance (read only)
router.include_router(settings_pages.router)  # 中心设置: /settings, POST /settings
router.include_router(robot_pages.router)  # 群机器人: /admin/robots, configure, resend
router.include_router(admin_pages.router)  # 中心管理: /admin/… (units, users, pools, connections, …)
