"""Verdicts and decisions shared by every rule.

A rule is a pure function over plain data that answers :class:`Allow` or :class:`Deny`. A
:class:`Decision` combines verdicts the way Cedar does: deny by default, any deny wins, and the
decision names the rules that determined it. This package imports nothing of the project.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rule:
    id: str
    clause: str  # where the rule comes from: "agreement §1; plan 二(二)4"
    summary_en: str
    summary_zh: str
    wording_zh: str = ""  # the clause's own words, quoted from the signed paper, for the policy page

    # Building verdicts through the rule keeps every verdict's id and clause the catalog's own,
    # and the keywords guard against Allow and Deny taking their two languages in opposite orders.
    def allow(self, *, reason_zh: str, reason_en: str) -> Allow:
        return Allow(self.id, reason_en=reason_en, reason_zh=reason_zh)

    def deny(self, *, message_zh: str, message_en: str, field: str | None = None) -> Deny:
        return Deny(self.id, self.clause, message_zh, message_en, field)


@dataclass(frozen=True)
class Allow:
    rule: str
    reason_en: str = ""
    reason_zh: str = ""

    allowed = True


@dataclass(frozen=True)
class Deny:
    rule: str
    clause: str
    message_zh: str
    message_en: str
    field: str | None = None  # the input field the denial is about, when there is one

    allowed = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "clause": self.clause,
            "message_zh": self.message_zh,
            "message_en": self.message_en,
            "field": self.field,
        }


Verdict = Allow | Deny


@dataclass(frozen=True)
class Decision:
    allowed: bool
    deciding: tuple[Verdict, ...]  # the denials when denied; the allows that permitted otherwise

    @property
    def denials(self) -> tuple[Deny, ...]:
        return tuple(v for v in self.deciding if isinstance(v, Deny))

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(v.rule for v in self.deciding)


def combine(*verdicts: Verdict) -> Decision:
    """Deny by default (no verdict at all is a denial), any deny wins."""
    if not verdicts:
        return Decision(
            False,
            (Deny("default", "—", "没有任何规则允许此操作。", "No rule allows this action."),),
        )
    denials = tuple(v for v in verdicts if isinstance(v, Deny))
    if denials:
        return Decision(False, denials)
    return Decision(True, tuple(verdicts))
