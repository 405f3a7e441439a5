"""Imports every module that defines tasks, so a worker (or the in-process runner) knows them all."""

from vmportal.inventory import tasks as inventory_tasks  # noqa: F401
from vmportal.request import tasks as request_tasks  # noqa: F401
from vmportal.security import tasks as security_tasks  # noqa: F401
from vmportal.security import tasks_mail as security_mail_tasks  # noqa: F401
from vmportal.tasks import periodic  # noqa: F401
from vmportal.vm import tasks as vm_tasks  # noqa: F401
