"""vSphere faults, socket and TLS errors as the adapter's typed errors (:mod:`hypervisors.base`).

:class:`Translator` is a context manager: ``with translate("power on web-01"):`` lets errors of the
:class:`~hypervisors.base.HypervisorError` tree through unchanged and turns everything pyVmomi,
``ssl`` or the socket layer raises into one of them, with a message an operator can act on (the
action, the endpoint, vCenter's own localized text and the fault's type name):

* ``InvalidLogin``, ``NoPermission``: :class:`AuthFailed`;
* ``NotAuthenticated`` (reaching here only when the one re-login did not hold): :class:`Retriable`;
* ``ManagedObjectNotFound``: :class:`NotFound`;
* ``ToolsUnavailable``, ``InvalidState`` (``InvalidPowerState``...): :class:`TaskFailed`;
* ``TaskInProgress``, ``ConcurrentAccess``: :class:`Retriable` (after 10 s);
* ``MethodNotFound``, ``NotImplemented``, ``NotSupported``: :class:`NotSupported`;
* ``InvalidArgument``, ``InvalidRequest``, ``InvalidName``, ``DuplicateName``, ``AlreadyExists``:
  :class:`InvalidSpec`;
* any other ``MethodFault``: :class:`HypervisorError`;
* certificate and TLS errors: :class:`TLSFailed`;
* DNS failure, refused connection, timeout, broken connection: :class:`Unreachable`.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
from collections.abc import Iterator

from pyVmomi import vim, vmodl

from hypervisors.base import (
    AuthFailed,
    HypervisorError,
    InvalidSpec,
    NotFound,
    NotSupported,
    Retriable,
    TaskFailed,
    TLSFailed,
    Unreachable,
)
from hypervisors.vsphere.endpoint import Endpoint


def fault_name(fault: object) -> str:
    """The WSDL type name of a fault or managed object (``InvalidPowerState``, ``Folder``)."""
    return getattr(type(fault), "_wsdlName", None) or type(fault).__name__


def fault_text(fault: BaseException) -> str:
    """A vSphere fault as an operator reads it: its localized message and its type."""
    parts: list[str] = []
    msg = getattr(fault, "msg", None)
    if msg:
        parts.append(str(msg))
    for message in getattr(fault, "faultMessage", None) or ():
        text = getattr(message, "message", None)
        if text and text not in parts:
            parts.append(str(text))
    name = fault_name(fault)
    text = "; ".join(parts)
    # vcsim's localized message is just the Go type ("*types.FileFault"): say the fault name.
    if not text or text.startswith("*types."):
        return name
    return f"{text} ({name})"


class Translator:
    """Turns pyVmomi faults and socket/TLS errors into the adapter error tree."""

    def __init__(self, endpoint: Endpoint, username: str) -> None:
        self.endpoint = endpoint
        self.username = username

    @contextlib.contextmanager
    def __call__(self, action: str) -> Iterator[None]:
        try:
            yield
        except HypervisorError:
            raise
        except vim.fault.InvalidLogin as exc:
            raise AuthFailed(
                f"vCenter {self.endpoint} refused the login of {self.username!r}: check the account "
                "and its password",
                detail={"fault": fault_name(exc)},
            ) from exc
        except vim.fault.NotAuthenticated as exc:
            # Only reached when logging in again did not help (the new session died at once).
            raise Retriable(
                f"{action}: vCenter {self.endpoint} ended the session and a new login did not hold",
                detail={"fault": fault_name(exc)},
            ) from exc
        except vim.fault.NoPermission as exc:
            raise AuthFailed(
                f"{action}: {self.username!r} lacks privilege {getattr(exc, 'privilegeId', '?')} "
                f"on vCenter {self.endpoint}",
                detail={"fault": fault_name(exc)},
            ) from exc
        except vmodl.fault.ManagedObjectNotFound as exc:
            raise NotFound(
                f"{action}: the object no longer exists", detail={"fault": fault_name(exc)}
            ) from exc
        except vim.fault.ToolsUnavailable as exc:
            raise TaskFailed(
                f"{action}: VMware Tools are not running in the guest, so the guest OS cannot be "
                "asked; use stop or restart instead",
                detail={"fault": fault_name(exc)},
            ) from exc
        except (vim.fault.TaskInProgress, vim.fault.ConcurrentAccess) as exc:
            raise Retriable(
                f"{action}: {fault_text(exc)}", defer=10.0, detail={"fault": fault_name(exc)}
            ) from exc
        except vim.fault.InvalidState as exc:  # InvalidPowerState and friends
            raise TaskFailed(f"{action}: {fault_text(exc)}", detail={"fault": fault_name(exc)}) from exc
        except (vmodl.fault.MethodNotFound, vmodl.fault.NotImplemented, vmodl.fault.NotSupported) as exc:
            raise NotSupported(
                f"{action}: vCenter {self.endpoint} does not support this ({fault_text(exc)})",
                detail={"fault": fault_name(exc)},
            ) from exc
        except (
            vmodl.fault.InvalidArgument,
            vmodl.fault.InvalidRequest,
            vim.fault.InvalidName,
            vim.fault.DuplicateName,
            vim.fault.AlreadyExists,
        ) as exc:
            raise InvalidSpec(f"{action}: {fault_text(exc)}", detail={"fault": fault_name(exc)}) from exc
        except vmodl.MethodFault as exc:
            raise HypervisorError(f"{action}: {fault_text(exc)}", detail={"fault": fault_name(exc)}) from exc
        except ssl.SSLCertVerificationError as exc:
            raise TLSFailed(
                f"the certificate of {self.endpoint} could not be verified ({exc.verify_message}); "
                "set ca_file to the vCenter's CA certificate (or, in a lab only, verify_tls=False)",
                detail={"reason": exc.verify_message},
            ) from exc
        except ssl.SSLError as exc:
            raise TLSFailed(f"TLS with {self.endpoint} failed: {exc.reason or exc}") from exc
        except socket.gaierror as exc:
            raise Unreachable(
                f"cannot resolve {self.endpoint.host}: {exc.strerror or exc}", defer=30.0
            ) from exc
        except ConnectionRefusedError as exc:
            raise Unreachable(f"{self.endpoint} refused the connection (is vCenter up?)") from exc
        except TimeoutError as exc:
            raise Unreachable(f"{action}: {self.endpoint} did not answer in time") from exc
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            raise Unreachable(
                f"{action}: connection to {self.endpoint} failed: {exc or type(exc).__name__}"
            ) from exc
