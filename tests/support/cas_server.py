"""A real CAS 3.0 server (django-cas-server under waitress) for the campus single sign-on tests.

The server runs in its own process with the interpreter of ``.cache/cas-server-venv`` (made by
``scripts/cas-server-venv.sh``, which scripts/bootstrap.sh calls): its Django stays out of the
portal's ``.venv``. Each :class:`CasServer` copies the small Django project in
``tests/support/cas_project/`` into a temp dir with the run's settings (SQLite database, one
service pattern allowing any ``http://127.0.0.1:<port>/...`` or ``http://localhost:<port>/...``
service, single log-out on, the attributes released) and the people it authenticates
(``users.json``: the staff of ``tests/support/campus_people.py``, same passwords as in LDAP).

The endpoints are those of a campus CAS: ``<url>login``, ``<url>logout``,
``<url>p3/serviceValidate`` with ``url = http://127.0.0.1:<port>/cas/``.

Use::

    with start_cas_server() as cas:
        login = cas.login("zhangsan", password, service="http://127.0.0.1:8000/auth/cas")
        client = CASClient(version=3, service_url=login.service, server_url=cas.url)
        user, attributes, _ = client.verify_ticket(login.ticket)
        cas.logout(login.session)          # the server posts a SAML LogoutRequest to the service

A missing virtualenv is a hard error naming the script to run, never a skip.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

from tests.support.campus_people import STAFF, Staff
from tests.support.server_process import (
    LOOPBACK,
    ServerProcessError,
    die_with_parent,
    log_tail,
    stop_process,
    wait_until,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
CAS_VENV = REPO_ROOT / ".cache" / "cas-server-venv"
CAS_PYTHON = CAS_VENV / "bin" / "python"
PROJECT_SOURCE = Path(__file__).resolve().parent / "cas_project"
PROJECT_FILES = ("cas_settings.py", "cas_urls.py", "campus_auth.py", "campus_hashers.py", "serve.py")
REQUIREMENTS = REPO_ROOT / "scripts" / "cas-server-requirements.txt"
#: Migrated empty databases, so a session start skips the migrations (see serve.py).
MIGRATION_CACHE = REPO_ROOT / ".cache" / "cas-server"

#: Any port on loopback, any path: the portal under test picks a free port each run.
SERVICE_PATTERN = r"^http://(127\.0\.0\.1|localhost)(:[0-9]+)?/.*$"
#: What the server tells a service about a person. ``mobile`` is known but deliberately not here.
RELEASED_ATTRIBUTES = ("uid", "cn", "displayName", "mail", "employeeNumber", "ou", "memberOf")

# Django's pbkdf2_sha256 format, with fewer rounds than Django's default: every login checks one,
# and the cost of a production hash would only slow the suite down, not prove anything more. The
# server's hasher is told the same number (cas_project/campus_hashers.py).
_PBKDF2_ROUNDS = 20_000


class CasServerUnavailable(ServerProcessError):
    """The CAS server cannot start here; the message says what to run or look at."""


class CasLoginRefused(AssertionError):
    """The login form did not redirect to the service (wrong password, unknown service, ...)."""

    def __init__(self, message: str, response: requests.Response) -> None:
        super().__init__(message)
        self.response = response


def _migrated_template() -> Path:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes())
    for name in PROJECT_FILES:
        digest.update((PROJECT_SOURCE / name).read_bytes())
    template = MIGRATION_CACHE / f"migrated-{digest.hexdigest()[:16]}.sqlite3"
    if not template.exists():
        # A new key means the project or its requirements changed: older templates are dead weight.
        for stale in MIGRATION_CACHE.glob("migrated-*.sqlite3"):
            with contextlib.suppress(OSError):
                stale.unlink()
    return template


def django_password_hash(password: str) -> str:
    """A hash Django's ``check_password`` accepts (``pbkdf2_sha256$rounds$salt$b64``)."""
    salt = secrets.token_hex(12)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), _PBKDF2_ROUNDS)
    return f"pbkdf2_sha256${_PBKDF2_ROUNDS}${salt}${base64.b64encode(digest).decode()}"


@dataclass(frozen=True)
class CasLogin:
    """The outcome of a browser-like login: the redirect back to the service with its ticket."""

    session: requests.Session  # holds the CAS session cookie (the ticket-granting cookie)
    service: str
    redirect: str  # the Location the server sent the browser to
    ticket: str  # the ST-... service ticket in it


class _FormParser(HTMLParser):
    """Collects every form of a page: its action and the values a browser would submit."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self._current: dict[str, str] | None = None
        self._skipping = 0  # inside <script> or <style>: not text a person reads
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag in {"script", "style"}:
            self._skipping += 1
        elif tag == "form":
            self._current = {}
            self.forms.append((values.get("action", ""), self._current))
        elif tag == "input" and self._current is not None and values.get("name"):
            kind = values.get("type", "text").lower()
            if kind in {"checkbox", "radio"} and "checked" not in values:
                return
            if kind in {"submit", "button", "image"}:
                return
            self._current[values["name"]] = values.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style"}:
            self._skipping = max(0, self._skipping - 1)
        elif tag == "form":
            self._current = None

    def handle_data(self, data: str) -> None:
        if data.strip() and not self._skipping:
            self.text.append(data.strip())


def _login_form(page: str) -> tuple[str, dict[str, str], str]:
    parser = _FormParser()
    parser.feed(page)
    text = " ".join(parser.text)
    for action, fields in parser.forms:
        if "lt" in fields and "csrfmiddlewaretoken" in fields:
            return action, fields, text
    raise LookupError(f"no CAS login form on the page: {text[:500]}")


@dataclass
class CasServer:
    """One django-cas-server process. ``start()`` / ``stop()``; helpers manage its people."""

    startup_timeout: float = 90.0
    released_attributes: tuple[str, ...] = RELEASED_ATTRIBUTES
    service_pattern: str = SERVICE_PATTERN
    ticket_validity: int = 60
    host: str = LOOPBACK
    port: int = 0
    workdir: Path | None = None
    log_file: Path | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _people: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def url(self) -> str:
        """The CAS server URL as clients are configured with it (ends with a slash)."""
        return f"http://{self.host}:{self.port}/cas/"

    @property
    def login_url(self) -> str:
        return urljoin(self.url, "login")

    @property
    def logout_url(self) -> str:
        return urljoin(self.url, "logout")

    def log_tail(self, chars: int = 4000) -> str:
        return log_tail(self.log_file, chars)

    # ---- lifecycle --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> CasServer:
        if self.running:
            return self
        if not CAS_PYTHON.is_file():
            raise CasServerUnavailable(
                f"{CAS_PYTHON} is missing: run scripts/cas-server-venv.sh (scripts/bootstrap.sh does)"
            )
        self.workdir = Path(tempfile.mkdtemp(prefix="vmportal-cas-"))
        for name in PROJECT_FILES:
            shutil.copy2(PROJECT_SOURCE / name, self.workdir / name)
        run = {
            "secret_key": secrets.token_urlsafe(40),
            "service_pattern": self.service_pattern,
            "released_attributes": list(self.released_attributes),
            "ticket_validity": self.ticket_validity,
            "migrated_template": str(_migrated_template()),
            "password_rounds": _PBKDF2_ROUNDS,
        }
        (self.workdir / "run.json").write_text(json.dumps(run), encoding="utf-8")
        self.reset_people()
        self.log_file = self.workdir / "cas-server.log"
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.upper().endswith("_PROXY") and not key.startswith(("DJANGO_", "PYTHON"))
        }
        env.update(
            {
                "VMPORTAL_CAS_RUN_DIR": str(self.workdir),
                "DJANGO_SETTINGS_MODULE": "cas_settings",
                "PYTHONDONTWRITEBYTECODE": "1",
                # The single log-out requests go to loopback services: never through a proxy.
                "NO_PROXY": "127.0.0.1,localhost",
            }
        )
        try:
            with open(self.log_file, "ab") as log:
                self._process = subprocess.Popen(
                    [str(CAS_PYTHON), "serve.py"],
                    cwd=self.workdir,
                    env=env,
                    stdin=subprocess.PIPE,  # closed by stop(): the server exits on EOF
                    stdout=subprocess.PIPE,
                    stderr=log,
                    preexec_fn=die_with_parent,  # the child must die with pytest, even on SIGKILL
                )
            self._await_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _await_ready(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        deadline = time.monotonic() + self.startup_timeout
        line = b""
        while time.monotonic() < deadline and self._process.poll() is None:
            ready, _, _ = select.select([self._process.stdout], [], [], 0.2)
            if ready:
                line = self._process.stdout.readline().strip()
                break
        if not line:
            raise CasServerUnavailable(f"the CAS server did not start:\n{self.log_tail()}")
        self.port = int(json.loads(line)["port"])

        def login_page_served() -> bool:
            with contextlib.suppress(requests.RequestException):
                return requests.get(self.login_url, timeout=2).status_code == 200
            return False

        if not wait_until(login_page_served, self._process, timeout=max(1.0, deadline - time.monotonic())):
            raise CasServerUnavailable(f"the CAS server does not serve {self.login_url}:\n{self.log_tail()}")
        # One refused login loads what the first real login would (forms, hashers, translations),
        # so that cost lands on the session start, not on whichever test happens to run first.
        with contextlib.suppress(CasLoginRefused):
            self.login("warm-up", secrets.token_urlsafe(8), "http://127.0.0.1/warm-up")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        stop_process(process)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> CasServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- people -----------------------------------------------------------------------------

    def _write_people(self) -> None:
        assert self.workdir is not None, "the CAS server is not started"
        path = self.workdir / "users.json"
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(self._people, ensure_ascii=False), encoding="utf-8")
        # Atomic: a login running at this moment reads the old file or the new, never half of one.
        os.replace(partial, path)

    def reset_people(self) -> None:
        """Back to the campus staff of ``campus_people`` (cheap: one small file written)."""
        self._people = {
            person.uid: {
                "password": django_password_hash(person.password),
                "attributes": person.cas_attributes(),
            }
            for person in STAFF
        }
        self._write_people()

    def add_user(self, username: str, password: str, attributes: dict[str, str | list[str]]) -> None:
        self._people[username] = {"password": django_password_hash(password), "attributes": dict(attributes)}
        self._write_people()

    def add_staff(self, person: Staff) -> None:
        self.add_user(person.uid, person.password, person.cas_attributes())

    def set_attributes(self, username: str, **values: str | list[str]) -> None:
        """Change what the server knows about someone; released on their next ticket."""
        self._people[username]["attributes"].update(values)
        self._write_people()

    def set_password(self, username: str, password: str) -> None:
        self._people[username]["password"] = django_password_hash(password)
        self._write_people()

    def disable_user(self, username: str) -> None:
        """Further logins are refused (tickets already issued stay valid until used or expired)."""
        self._people[username]["disabled"] = True
        self._write_people()

    def remove_user(self, username: str) -> None:
        del self._people[username]
        self._write_people()

    # ---- what a browser does ----------------------------------------------------------------

    def login(
        self,
        username: str,
        password: str,
        service: str,
        *,
        session: requests.Session | None = None,
    ) -> CasLogin:
        """Log in through the login form as a browser does and return the redirect to ``service``.

        GET the login page (session and CSRF cookies, the hidden login ticket), POST the form back
        with the credentials, and stop at the 302 to the service. Raises :class:`CasLoginRefused`
        when the server answers anything else (its page text is in the message).
        """
        browser = session or requests.Session()
        page = browser.get(self.login_url, params={"service": service}, timeout=10)
        page.raise_for_status()
        action, fields, _ = _login_form(page.text)
        fields.update({"username": username, "password": password})
        answer = browser.post(
            urljoin(page.url, action or page.url),
            data=fields,
            headers={"Referer": page.url},
            allow_redirects=False,
            timeout=10,
        )
        location = answer.headers.get("Location", "")
        tickets = parse_qs(urlsplit(location).query).get("ticket", [])
        if answer.status_code != 302 or not tickets:
            text = _page_text(answer.text)
            raise CasLoginRefused(
                f"CAS login of {username!r} for {service} gave HTTP {answer.status_code}: {text[:600]}",
                answer,
            )
        return CasLogin(session=browser, service=service, redirect=location, ticket=tickets[0])

    def login_again(self, login: CasLogin, service: str) -> CasLogin:
        """Single sign-on: the same browser asks for another service and gets a ticket without a form."""
        answer = login.session.get(
            self.login_url, params={"service": service}, allow_redirects=False, timeout=10
        )
        location = answer.headers.get("Location", "")
        tickets = parse_qs(urlsplit(location).query).get("ticket", [])
        if answer.status_code != 302 or not tickets:
            raise CasLoginRefused(f"no single sign-on for {service}: HTTP {answer.status_code}", answer)
        return CasLogin(session=login.session, service=service, redirect=location, ticket=tickets[0])

    def logout(self, session: requests.Session) -> requests.Response:
        """Log the browser out. The server has sent its single log-out requests when this returns."""
        return session.get(self.logout_url, timeout=30)


def _page_text(page: str) -> str:
    parser = _FormParser()
    parser.feed(page)
    return " ".join(parser.text)


@contextlib.contextmanager
def start_cas_server(**kwargs: Any) -> Iterator[CasServer]:
    """Start a CAS server with the campus staff; stopped and removed on exit."""
    server = CasServer(**kwargs)
    with server:
        yield server
