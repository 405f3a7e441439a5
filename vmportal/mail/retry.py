"""What the mails and the group-robot messages share about delivery: the wait between attempts (1 min,
2, 4 … at most 6 h apart) and the flag that has a commit send what it queued."""

from __future__ import annotations

from datetime import timedelta

BACKOFF_FIRST = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=6)
#: Set in ``session.info`` by whatever queued or re-queued a mail or robot message: the commit then
#: has them sent (``mail.service``'s after-commit listener).
KICK = "vmportal_mail_kick"


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: 1 min, 2, 4 … at most 6 h."""
    return min(BACKOFF_FIRST * (2 ** max(attempts - 1, 0)), BACKOFF_MAX)
