"""Field rules more than one domain's forms use: an e-mail address and a DNS name.

Here, below every domain, so that identity (accounts' e-mail) and unit (the registry, information
systems' domains) share one rule without identity importing unit."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, StringConstraints
from pydantic_core import PydanticCustomError

_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def normalise_email(value: str) -> str:
    value = value.strip()
    local, at, domain = value.rpartition("@")
    if not at or not _EMAIL_LOCAL.fullmatch(local) or ".." in local:
        raise PydanticCustomError("format", "must be an e-mail address (name@example.edu.cn)")
    try:
        domain = normalise_hostname(domain)
    except PydanticCustomError:
        raise PydanticCustomError("format", "must be an e-mail address (name@example.edu.cn)") from None
    return f"{local}@{domain}"


def normalise_hostname(value: str) -> str:
    """A DNS name, lower-cased, without the final dot; Chinese labels (计算机.example.cn) are stored
    in their ASCII (punycode) form, the one DNS, certificates and alerts carry."""
    name = value.strip().lower().removesuffix(".")
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            name = "\x00"  # fails the label check below with the usual message
    labels = name.split(".")
    if (
        len(name) > 253
        or len(labels) < 2
        or not all(_LABEL.fullmatch(label) for label in labels)
        or labels[-1].isdigit()  # an IP address is not a domain name
    ):
        raise PydanticCustomError(
            "hostname", "must be a domain name such as lab.example.edu.cn (letters, digits, hyphens, dots)"
        )
    return name


Email = Annotated[str, StringConstraints(max_length=254), AfterValidator(normalise_email)]
