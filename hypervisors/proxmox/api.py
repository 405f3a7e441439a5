"""The Proxmox VE API session: endpoint, TLS, authentication, and errors as the adapter's errors.

:class:`Api` holds one proxmoxer client, made on first use: with an API token (``token_id``
``"user@realm!tokenname"`` + ``secret``) when one is configured, else ``username`` + ``secret``
for a ticket. :meth:`Api.get`, :meth:`~Api.post`, :meth:`~Api.put` and :meth:`~Api.delete` call
one API path and translate failures:

* TLS failures: :class:`~hypervisors.base.TLSFailed`; no connection, timeouts, PVE's 595/596/599
  (the proxy could not reach the node): :class:`~hypervisors.base.Unreachable`;
* 401, 403, a refused login: :class:`~hypervisors.base.AuthFailed`;
* 400 (PVE's parameter check, with its per-field errors in ``detail["errors"]``):
  :class:`~hypervisors.base.InvalidSpec`;
* 404 and "does not exist": :class:`~hypervisors.base.NotFound`; 501:
  :class:`~hypervisors.base.NotSupported`;
* 502-504 and the messages of a held lock or a concurrent edit (a stale ``digest``):
  :class:`~hypervisors.base.Retriable`; anything else :class:`~hypervisors.base.HypervisorError`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import requests
from proxmoxer import ProxmoxAPI
from proxmoxer.core import AuthenticationError, ResourceException
from urllib3.exceptions import InsecureRequestWarning

from hypervisors.base import (
    AuthFailed,
    ConnectionConfig,
    HypervisorError,
    InvalidSpec,
    NotFound,
    NotSupported,
    Retriable,
    TLSFailed,
    Unreachable,
)

log = logging.getLogger(__name__)

DEFAULT_PORT = 8006
# Messages of errors a retry can cure: a concurrent edit, a held lock, a busy node.
_TRANSIENT = ("detected modified configuration", "can't lock file", "got timeout", "is locked", "try again")


class Api:
    """The API client of one adapter. Building it checks the URL (:class:`InvalidSpec`) and
    contacts nothing; not thread-safe, like the adapter."""

    def __init__(self, config: ConnectionConfig) -> None:
        self.config = config
        self._api: Any = None
        self._host, self._port, self._path_prefix = self._endpoint(config.url)
        if not config.verify_tls:
            # The operator chose an unverified connection (recorded in the connection settings);
            # urllib3 would otherwise warn on every request, and under warnings-as-errors fail it.
            warnings.filterwarnings("ignore", category=InsecureRequestWarning)
            log.info("TLS verification is off for Proxmox at %s", self.where)

    @staticmethod
    def _endpoint(url: str) -> tuple[str, int, str | None]:
        split = urlsplit(url if "://" in url else f"https://{url}")
        if split.scheme != "https":
            # The Proxmox API is served over HTTPS only (pveproxy); proxmoxer speaks nothing else.
            raise InvalidSpec(
                f"Proxmox VE is reached over https, not {split.scheme}: {url}", detail={"url": url}
            )
        if not split.hostname:
            raise InvalidSpec(f"no host in Proxmox URL {url!r}", detail={"url": url})
        host = f"[{split.hostname}]" if ":" in split.hostname else split.hostname
        prefix = split.path.strip("/").removesuffix("api2/json").strip("/")
        return host, split.port or DEFAULT_PORT, prefix or None

    @property
    def where(self) -> str:
        """The base URL, for messages."""
        return f"https://{self._host}:{self._port}"

    @property
    def _verify(self) -> bool | str:
        if not self.config.verify_tls:
            return False
        return self.config.ca_file or True

    def _connect(self) -> Any:
        if self._api is not None:
            return self._api
        common: dict[str, Any] = {
            "port": self._port,
            "verify_ssl": self._verify,
            "timeout": self.config.timeout,
            "path_prefix": self._path_prefix,
            "service": "PVE",
        }
        with self._translate("log in"):
            if self.config.token_id:
                user, sep, token_name = self.config.token_id.partition("!")
                if not sep:  # a bare token name belongs to ``username``
                    user, token_name = self.config.username, self.config.token_id
                self._api = ProxmoxAPI(
                    self._host, user=user, token_name=token_name, token_value=self.config.secret, **common
                )
            elif self.config.username and self.config.secret:
                self._api = ProxmoxAPI(
                    self._host, user=self.config.username, password=self.config.secret, **common
                )
            else:
                raise AuthFailed("no Proxmox API token (token_id + secret) or username/password configured")
        return self._api

    @contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        """Turn requests/proxmoxer exceptions into the adapter's error tree."""
        try:
            yield
        except HypervisorError:
            raise
        # SSLError subclasses ConnectionError, so it has to be caught first.
        except requests.exceptions.SSLError as exc:
            trust = self.config.ca_file or "the system trust store"
            raise TLSFailed(
                f"{self.where}: TLS certificate not verified against {trust} ({what}): {exc}",
                detail={"url": self.where},
            ) from exc
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise Unreachable(
                f"{self.where} unreachable ({what}): {exc}", detail={"url": self.where}
            ) from exc
        except AuthenticationError as exc:
            raise AuthFailed(f"{self.where} refused the login ({what}): {exc}") from exc
        except ResourceException as exc:
            raise self._from_resource(exc, what) from exc
        except requests.exceptions.RequestException as exc:
            raise Unreachable(f"{self.where}: {exc} ({what})", detail={"url": self.where}) from exc

    def _from_resource(self, exc: ResourceException, what: str) -> HypervisorError:
        status = int(exc.status_code)
        text = str(exc.content or exc.status_message or "").strip()
        detail: dict[str, Any] = {"status": status, "operation": what}
        if status == 401:
            return AuthFailed(f"{self.where} refused the API token or login: {text}", detail=detail)
        if status == 403:
            return AuthFailed(f"the API token lacks a privilege ({what}): {text}", detail=detail)
        if status == 400:
            errors = exc.errors if isinstance(exc.errors, dict) else {}
            detail["errors"] = {str(k): str(v) for k, v in errors.items()}
            fields = ", ".join(f"{k} ({str(v).splitlines()[0]})" for k, v in errors.items()) or text
            return InvalidSpec(f"Proxmox refused the parameters of {what}: {fields}", detail=detail)
        lowered = text.lower()
        if (
            status == 404
            or "does not exist" in lowered
            or "hostname lookup" in lowered
            or "no such" in lowered
        ):
            return NotFound(f"{what}: {text}", detail=detail)
        if status == 501:
            return NotSupported(f"{what}: this Proxmox VE does not offer {text}", detail=detail)
        if status in (595, 596, 599):  # pveproxy could not reach the node that owns the VM
            return Unreachable(f"{what}: {text}", detail=detail)
        if status in (502, 503, 504) or any(t in lowered for t in _TRANSIENT):
            return Retriable(f"{what}: {text}", detail=detail)
        return HypervisorError(f"{what}: {status} {text}", detail=detail)

    def get(self, path: str, what: str, **params: Any) -> Any:
        """GET one API path (``nodes/pve1/qemu/100/config``); ``what`` names it in errors."""
        api = self._connect()
        with self._translate(what):
            return api(path).get(**params)

    def post(self, path: str, what: str, **data: Any) -> Any:
        """POST; for an asynchronous call PVE answers with the task's UPID."""
        api = self._connect()
        with self._translate(what):
            return api(path).post(**data)

    def put(self, path: str, what: str, **data: Any) -> Any:
        """PUT (options, resize)."""
        api = self._connect()
        with self._translate(what):
            return api(path).put(**data)

    def delete(self, path: str, what: str, **params: Any) -> Any:
        """DELETE (a VM, a firewall rule)."""
        api = self._connect()
        with self._translate(what):
            return api(path).delete(**params)

    def close(self) -> None:
        """Drop the HTTP session. Safe to call twice."""
        api, self._api = self._api, None
        if api is not None:
            # proxmoxer exposes no close(); its requests session sits in the resource store.
            session = getattr(api, "_store", {}).get("session")
            if session is not None:
                session.close()
