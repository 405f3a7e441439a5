"""What the center administrator's pages share (units, users, IP pools, connections): who may act,
the refusal naming the rule, a service refusal shown beside its field, and a list sorted, filtered
and paged the way the other center lists are (?sort=…&order=asc|desc&page=N, the filters kept in
the links).

The lists these pages show are the center's own records (tens of units, pools, connections), which
the services answer whole; they are sorted and paged here over the service's answer, never by a
query of the page's own. The accounts, which grow with the units, are paged by the identity
service itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from fastapi import Request
from fastapi.responses import Response

from policies.roles import ROLE_NAMES_EN, ROLE_NAMES_ZH, Role
from vmportal.identity.models import User
from vmportal.kit import errors
from vmportal.web import common, templating
from vmportal.web.i18n import gettext as _

T = TypeVar("T")

templates = templating.templates(Path(__file__).parent / "templates" / "admin")

#: Who changes the center's records (the APIs' require(Role.CENTER_ADMIN)).
ADMINS = frozenset({Role.CENTER_ADMIN.value})
#: Who reads them (kit.scope.CENTER_READ, as the list APIs).
READERS = frozenset({Role.CENTER_ADMIN.value, Role.CENTER_OPERATOR.value, Role.AUDITOR.value})
PAGE_SIZE = 25
MAX_PAGE = 10_000
MAX_ID = 2**31 - 1


def with_rule(message: str, rule: str) -> str:
    return _("%(message)s (rule %(rule)s)") % {"message": message, "rule": rule}


def rule_reason(rule: str, reason: str) -> str:
    return _("Rule %(rule)s: %(reason)s") % {"rule": rule, "reason": reason}


def refused(request: Request, token: str, user: User, active: str, rule: str, reason: str) -> Response:
    """The 403 page naming the rule and its reason in the user's language."""
    return common.refused(templates, request, token, user, active, rule_reason(rule, reason))


def role_name(role: str) -> str:
    """A role's name in the user's language (policies.roles' names)."""
    try:
        chosen = Role(role)
    except ValueError:
        return role
    return common.say(ROLE_NAMES_EN[chosen], ROLE_NAMES_ZH[chosen])


def typed_id(text: str) -> int | None:
    return int(text) if text.isdigit() and 1 <= int(text) <= MAX_ID else None


def shown(exc: errors.PortalError, default_field: str = "") -> dict[str, str]:
    """A service's refusal as {field: message with its rule}; "" is the form as a whole."""
    fields = exc.extra.get("fields") or []
    if fields:
        first = fields[0]
        message = common.say(str(first.get("message", exc.message)), exc.message_zh.split("：", 1)[-1])
        return {str(first.get("field", default_field)): with_rule(message, str(first.get("rule", "")))}
    field = str(exc.extra.get("field", default_field))
    rule = str(exc.extra.get("rule", exc.code))
    return {field: with_rule(common.error_message(exc), rule)}


@dataclass(frozen=True)
class Listing(Generic[T]):
    rows: list[T]
    total: int
    page: int
    pages: int
    sort: str
    order: str


def pages_of(total: int, size: int = PAGE_SIZE) -> int:
    return max((total + size - 1) // size, 1)


def clean_sort(sort: str, order: str, allowed: Sequence[str], default: str) -> tuple[str, str]:
    """A pasted URL with an unknown sort or order shows the default, not an error page."""
    return (sort if sort in allowed else default), (order if order in ("asc", "desc") else "asc")


def clean_page(page: int) -> int:
    return min(max(page, 1), MAX_PAGE)


def listing(
    items: Sequence[T],
    keys: Mapping[str, Callable[[T], Any]],
    *,
    sort: str,
    order: str,
    page: int,
    default: str,
    keep: Callable[[T], bool] = lambda _item: True,
    ident: Callable[[T], Any] = lambda item: getattr(item, "id", 0),
) -> Listing[T]:
    """``items`` filtered by ``keep``, sorted by ``keys[sort]`` (then the id, so equal values keep
    one order across pages) and cut to page ``page``."""
    sort, order = clean_sort(sort, order, list(keys), default)
    page = clean_page(page)
    kept = [item for item in items if keep(item)]
    key = keys[sort]
    kept.sort(key=lambda item: (key(item), ident(item)), reverse=order == "desc")
    total = len(kept)
    start = (page - 1) * PAGE_SIZE
    return Listing(kept[start : start + PAGE_SIZE], total, page, pages_of(total), sort, order)
