"""Planned outages announced by the center (agreement §9): scope, affected units, mails, warnings."""
