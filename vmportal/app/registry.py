"""Imports every module that defines tasks, so a worker (or the in-process runner) knows them all."""

from vmportal.alerts import tasks as alert_tasks  # noqa: F401
from vmportal.app import beat as periodic  # noqa: F401
from vmportal.cleanup import tasks as cleanup_tasks  # noqa: F401
from vmportal.compliance import tasks as compliance_tasks  # noqa: F401
from vmportal.incidents import tasks as security_tasks  # noqa: F401
from vmportal.inventory import tasks as inventory_tasks  # noqa: F401
from vmportal.mail import tasks as security_mail_tasks  # noqa: F401
from vmportal.maintenance import tasks as maintenance_tasks  # noqa: F401
from vmportal.request import tasks as request_tasks  # noqa: F401
from vmportal.vm import tasks as vm_tasks  # noqa: F401
