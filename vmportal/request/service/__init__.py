"""The request domain's use cases, one module per part of a request's life:

* :mod:`.submission`: a unit admin files a request (policies purpose, paperwork, quota);
* :mod:`.decisions`: reading requests, and the lead's endorsement and the center's approval,
  rejection, retry (and the unit's withdrawal);
* :mod:`.provisioning`: the task's three transactions around the hypervisor's clone.

The names callers use are re-exported here.
"""

from vmportal.request.service.decisions import (
    PROVISION_TASK,
    Part,
    actions_for,
    approve,
    cancel,
    deadline_of,
    decline,
    endorse,
    get_request,
    list_requests,
    lists_with_units,
    reject,
    retry,
)
from vmportal.request.service.provisioning import (
    ProvisioningFailed,
    ProvisionPlan,
    admin_account_for,
    fail_provisioning,
    finish_provisioning,
    generate_initial_password,
    marker_of,
    prepare_provisioning,
)
from vmportal.request.service.submission import submit

__all__ = [
    "PROVISION_TASK",
    "Part",
    "ProvisionPlan",
    "ProvisioningFailed",
    "actions_for",
    "admin_account_for",
    "approve",
    "cancel",
    "deadline_of",
    "decline",
    "endorse",
    "fail_provisioning",
    "finish_provisioning",
    "generate_initial_password",
    "get_request",
    "list_requests",
    "lists_with_units",
    "marker_of",
    "prepare_provisioning",
    "reject",
    "retry",
    "submit",
]
