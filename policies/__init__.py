"""The agreement's rules as pure functions. Imports nothing of ``vmportal`` or ``hypervisors``."""

from policies.base import Allow, Decision, Deny, Rule, Verdict, combine

__all__ = ["Allow", "Decision", "Deny", "Rule", "Verdict", "combine"]
