"""A live portal (``vmportal serve --demo`` on a free loopback port), as the hardening tests start it."""

from tests.hardening.conftest import Live, live

__all__ = ["Live", "live"]
