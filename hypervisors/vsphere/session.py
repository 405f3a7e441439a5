"""One vCenter login, shared by every part of the adapter.

:meth:`Session.call` is the only way the adapter talks to vCenter: it logs in on first use (TLS
verified as :func:`~hypervisors.vsphere.endpoint.ssl_context` says), runs one small step against
the ``ServiceInstanceContent``, logs in once more when vCenter says the session expired, and
translates whatever goes wrong (:class:`~hypervisors.vsphere.faults.Translator`).
"""

from __future__ import annotations

import contextlib
import http.client
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from pyVim.connect import SmartConnect
from pyVmomi import vim, vmodl

from hypervisors.base import ConnectionConfig, NotSupported, Unreachable
from hypervisors.vsphere.endpoint import Endpoint, ssl_context
from hypervisors.vsphere.faults import Translator

log = logging.getLogger(__name__)

T = TypeVar("T")


def service(value: T | None, what: str) -> T:
    """A ServiceContent manager that a vCenter always has (the stubs type them Optional)."""
    if value is None:
        raise NotSupported(f"the endpoint offers no {what}: is it a vCenter or ESXi SDK URL?")
    return value


class Session:
    """The SOAP session of one adapter. Not thread-safe, like the adapter that owns it."""

    def __init__(self, config: ConnectionConfig, endpoint: Endpoint) -> None:
        self.config = config
        self.endpoint = endpoint
        self.translate = Translator(endpoint, config.username)
        self._si: vim.ServiceInstance | None = None
        self._content: vim.ServiceInstanceContent | None = None

    def login(self) -> vim.ServiceInstanceContent:
        """The logged-in service content; logs in when there is none yet."""
        if self._content is not None:
            return self._content
        kwargs: dict[str, Any] = {}
        if self.endpoint.scheme == "https":
            context = ssl_context(self.config)
            if context is None:
                log.warning("TLS verification is OFF for %s (verify_tls=False)", self.endpoint)
                kwargs["disableSslCertValidation"] = True
            else:
                kwargs["sslContext"] = context
        with self.translate("log in"):
            try:
                si = SmartConnect(
                    protocol=self.endpoint.scheme,
                    host=self.endpoint.host,
                    port=self.endpoint.port,
                    path=self.endpoint.path,
                    user=self.config.username,
                    pwd=self.config.secret,
                    httpConnectionTimeout=self.config.timeout,
                    **kwargs,
                )
            except (vmodl.MethodFault, OSError, http.client.HTTPException):
                raise  # translated below
            except Exception as exc:
                # pyVim raises a bare Exception when the URL answers but is no vSphere SDK (or is
                # down during version negotiation): say which URL to look at.
                raise Unreachable(
                    f"{self.endpoint} is down or is not a vSphere SDK endpoint ({exc}); "
                    "check the URL (https://<vcenter>/sdk)",
                    defer=60.0,
                ) from exc
            content = si.RetrieveContent()
        self._si, self._content = si, content
        log.info("logged in to %s as %s", self.endpoint, self.config.username)
        return content

    def _relogin(self, content: vim.ServiceInstanceContent) -> None:
        # A new session on the same stub: the stub takes the new cookie, so every managed object
        # already obtained stays usable.
        log.info("vSphere session at %s expired; logging in again", self.endpoint)
        service(content.sessionManager, "SessionManager").Login(
            self.config.username, self.config.secret, None
        )

    def call(self, action: str, op: Callable[[vim.ServiceInstanceContent], T]) -> T:
        """Run one step against vCenter: log in if needed, and once more if the session expired.

        Steps are kept small (a read, a task submission, a wait) so that re-running one after a
        re-login never repeats a side effect. ``action`` names the step in error messages.
        """
        with self.translate(action):
            content = self.login()
            try:
                return op(content)
            except vim.fault.NotAuthenticated:
                self._relogin(content)
                return op(content)

    def close(self) -> None:
        """Log out and drop the connections. Safe to call twice; never raises."""
        si, self._si, self._content = self._si, None, None
        if si is None:
            return
        with contextlib.suppress(Exception):
            service(si.RetrieveContent().sessionManager, "SessionManager").Logout()
        with contextlib.suppress(Exception):
            si._stub.DropConnections()
