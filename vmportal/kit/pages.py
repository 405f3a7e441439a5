"""The paths of the pages a person opens, for links that leave the portal (e-mail above all).

A mail is read by a unit's 网络安全管理员 in a mail client, not by an API client: its link must open
a page, on the portal's configured base URL (``Settings.base_url``), never a JSON URL. The domains
that write mail sit below the web package, so the paths are stated here, once, and the page routes
in :mod:`vmportal.web` are declared with the same templates (a test checks every one answers).
"""

from __future__ import annotations

REQUEST = "/requests/{id}"
INCIDENT = "/incidents/{id}"
VM = "/vms/{id}"
#: The one-time page where a unit's admin collects a delivered VM's initial password.
CREDENTIALS = "/vms/{id}/credentials"
FINDING = "/findings/{id}"
NOTICE = "/notices/{id}"
VIOLATIONS = "/violations"
VIOLATION = "/violations/{id}"
DASHBOARD = "/"
CLEANUP = "/cleanup"


def request(request_id: object) -> str:
    return REQUEST.format(id=request_id)


def incident(incident_id: object) -> str:
    return INCIDENT.format(id=incident_id)


def vm(vm_id: object) -> str:
    return VM.format(id=vm_id)


def credentials(vm_id: object) -> str:
    return CREDENTIALS.format(id=vm_id)


def finding(finding_id: object) -> str:
    return FINDING.format(id=finding_id)


def notice(notice_id: object) -> str:
    return NOTICE.format(id=notice_id)


def violation(violation_id: object) -> str:
    return VIOLATION.format(id=violation_id)
