"""What every rule owes its caller: the right rule id and clause, and real sentences in both languages."""

from __future__ import annotations

import re
from collections.abc import Iterable

from policies.base import Allow, Deny, Verdict
from policies.catalog import RULES

_CJK = re.compile(r"[\u4e00-\u9fff]")


def assert_denied(
    verdict: Verdict,
    rule: str,
    *,
    field: str | None = None,
    zh: Iterable[str] = (),
    en: Iterable[str] = (),
) -> Deny:
    """A denial by ``rule`` about ``field``, whose messages mention each of ``zh`` and ``en``."""
    assert isinstance(verdict, Deny), f"expected a denial by {rule}, got {verdict}"
    assert not verdict.allowed
    assert verdict.rule == rule
    assert verdict.clause == RULES[rule].clause
    assert verdict.field == field
    assert _CJK.search(verdict.message_zh), verdict.message_zh
    assert re.search(r"[A-Za-z]{3}", verdict.message_en), verdict.message_en
    assert verdict.message_en.rstrip().endswith((".", ")")), verdict.message_en
    assert verdict.message_zh.rstrip().endswith(("。", "）")), verdict.message_zh
    for text in zh:
        assert text in verdict.message_zh, f"{text!r} not in {verdict.message_zh!r}"
    for text in en:
        assert text in verdict.message_en, f"{text!r} not in {verdict.message_en!r}"
    return verdict


def assert_allowed(verdict: Verdict, rule: str, *, zh: Iterable[str] = (), en: Iterable[str] = ()) -> Allow:
    """An allow by ``rule`` that says why in both languages."""
    assert isinstance(verdict, Allow), f"expected {rule} to allow, got {verdict}"
    assert verdict.allowed
    assert verdict.rule == rule
    assert _CJK.search(verdict.reason_zh), verdict.reason_zh
    assert re.search(r"[A-Za-z]{3}", verdict.reason_en), verdict.reason_en
    for text in zh:
        assert text in verdict.reason_zh, f"{text!r} not in {verdict.reason_zh!r}"
    for text in en:
        assert text in verdict.reason_en, f"{text!r} not in {verdict.reason_en!r}"
    return verdict
