"""The inventory watch tests use the e-mail tests' real SMTP server (aiosmtpd on loopback)."""

from tests.security_reports.conftest import mail_server  # noqa: F401  (the "mail_server" fixture)
