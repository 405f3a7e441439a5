"""Where a vCenter is and how its certificate is checked.

:func:`parse_url` turns ``ConnectionConfig.url`` into an :class:`Endpoint` (https, port 443 and path
``/sdk`` by default) and refuses, as :class:`~hypervisors.base.InvalidSpec`, a URL that names no host,
has no http(s) scheme, or asks for plain http to anything but a loopback simulator.
:func:`ssl_context` builds the verifying TLS context from ``verify_tls`` and ``ca_file``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from hypervisors.base import ConnectionConfig, InvalidSpec


@dataclass(frozen=True)
class Endpoint:
    """Scheme, host, port and SDK path of one vCenter."""

    scheme: str
    host: str
    port: int
    path: str

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_url(url: str) -> Endpoint:
    """The endpoint ``url`` names; raises :class:`InvalidSpec` (``detail["field"] == "url"``)."""
    expected = "expected https://vcenter.example.edu.cn/sdk"
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise InvalidSpec(f"vSphere URL {url!r} has no https:// scheme; {expected}", detail={"field": "url"})
    if not parts.hostname:
        raise InvalidSpec(f"vSphere URL {url!r} names no host; {expected}", detail={"field": "url"})
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise InvalidSpec(f"vSphere URL {url!r} has an invalid port", detail={"field": "url"}) from exc
    if scheme == "http" and not is_loopback(parts.hostname):
        # Credentials and customization passwords travel in the SOAP body: only a simulator on
        # this machine may be spoken to in clear text.
        raise InvalidSpec(
            f"vSphere URL {url!r}: plain http is accepted only for a simulator on a loopback "
            "address; use https for a real vCenter",
            detail={"field": "url"},
        )
    path = parts.path.rstrip("/") or "/sdk"
    return Endpoint(scheme, parts.hostname, port, path)


def ssl_context(config: ConnectionConfig) -> ssl.SSLContext | None:
    """The verifying context for https (None when verification is switched off).

    Raises :class:`InvalidSpec` (``detail["field"] == "ca_file"``) when ``ca_file`` is unreadable.
    """
    if not config.verify_tls:
        return None
    if config.ca_file:
        try:
            return ssl.create_default_context(cafile=config.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidSpec(
                f"ca_file {config.ca_file!r} cannot be read as PEM certificates: {exc}",
                detail={"field": "ca_file"},
            ) from exc
    context = ssl.create_default_context()
    # Slim containers ship without a system store; certifi is installed with requests.
    with contextlib.suppress(ImportError, OSError, ssl.SSLError):
        import certifi

        context.load_verify_locations(cafile=certifi.where())
    return context
