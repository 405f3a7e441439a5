"""Campus single sign-on through CAS 3.0 (python-cas): the log-in redirect, ticket validation at
``/p3/serviceValidate`` with the released attributes, the mapping of the CAS user to an account,
and single log-out.

The service URL is fixed by configuration (``base_url`` + :data:`CAS_CALLBACK_PATH`): nothing a
request sends can change where the CAS server sends its ticket. Whom a CAS user is:

- a configured center user (``cas_center_users``: CAS user -> center role): their center account
  (:func:`vmportal.identity.service.directory_account`);
- with an LDAP directory configured, a person in one of its mapped groups: their center account,
  vouched for by LDAP (the directory sync retires it when the group no longer lists them);
- anyone else: the unit account made from the contact-registry row with their staff number (工号,
  the released ``cas_staff_number_attribute``, or the CAS user name when none is released). No row
  with a live account: refused (``unknown_user``), never an account made on the fly.

Every failure is a :class:`~vmportal.identity.service.SignOnRefused` with a reason: the CAS
server's INVALID_TICKET / INVALID_SERVICE, a ticket this portal has already seen (``replayed``,
checked here before the server is asked, and by the unique ticket digest), a server that does not
answer in ``cas_timeout`` seconds or answers no CAS document (``unavailable``).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError

import requests
from cas import CASClientV3
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeXml
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from policies.roles import Role
from vmportal.audit.service import Who, record
from vmportal.identity import ldap, repository, service, throttle
from vmportal.identity.models import CasSession
from vmportal.identity.service import IssuedToken, SignOnRefused
from vmportal.kit import db
from vmportal.kit.settings import CAS_CALLBACK_PATH, Settings, get_settings

__all__ = ["CAS_CALLBACK_PATH", "CasIdentity", "login", "login_url", "logout_url", "single_logout"]

log = logging.getLogger(__name__)

_CAS = "{http://www.yale.edu/tp/cas}"
_SAMLP = "{urn:oasis:names:tc:SAML:2.0:protocol}"
#: CAS 3.0 §3.1: service tickets begin with ``ST-``; the spec asks clients to accept 256 characters.
_TICKET = re.compile(r"^ST-[A-Za-z0-9._~:-]{1,253}$")
_MAX_LOGOUT_REQUEST = 16 * 1024


class _TimedSession(requests.Session):
    """python-cas asks with a plain ``requests`` session and no timeout: this one has one."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.trust_env = False  # a proxy from the environment must not see tickets
        self._timeout = timeout

    def request(self, *args: object, **kwargs: object) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        kwargs["allow_redirects"] = False
        return super().request(*args, **kwargs)  # type: ignore[arg-type]


def _client(settings: Settings) -> CASClientV3:
    return CASClientV3(
        service_url=settings.cas_service_url,
        server_url=settings.cas_server_url,
        session=_TimedSession(settings.cas_timeout),
    )


def enabled(settings: Settings | None = None) -> bool:
    settings = settings or get_settings()
    return "cas" in settings.login_methods and bool(settings.cas_server_url)


def login_url(settings: Settings | None = None) -> str:
    """Where the browser goes to log in: the CAS login page with the fixed service URL."""
    return str(_client(settings or get_settings()).get_login_url())


def logout_url(settings: Settings | None = None) -> str:
    """The CAS server's log-out (ends the campus session too), coming back to the portal's log-in."""
    settings = settings or get_settings()
    return str(_client(settings).get_logout_url(redirect_url=settings.base_url.rstrip("/") + "/login"))


def ticket_digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


@dataclass(frozen=True)
class CasIdentity:
    """Who the CAS server says logged in, with the attributes it released (every value a list)."""

    user: str
    attributes: dict[str, list[str]]

    def first(self, name: str) -> str:
        values = self.attributes.get(name) or []
        return next((v.strip() for v in values if v and v.strip()), "")


def _refused(reason: str, message: str, message_zh: str, **extra: object) -> SignOnRefused:
    return SignOnRefused(reason, message, message_zh=message_zh, **extra)


def _unavailable(why: str) -> SignOnRefused:
    return _refused(
        "unavailable",
        f"the campus sign-on server could not check the log-in ({why}); try again later "
        "or log in another way",
        "统一身份认证服务器暂时无法验证本次登录，请稍后再试或使用其他方式登录",
    )


def _parse(document: bytes) -> Element:
    try:
        root = SafeXml.fromstring(document)
    except (ParseError, DefusedXmlException, ValueError):
        raise _unavailable("its answer is not a CAS document") from None
    if root.tag != f"{_CAS}serviceResponse":
        raise _unavailable("its answer is not a CAS service response")
    return root


def validate(ticket: str, settings: Settings | None = None) -> CasIdentity:
    """Ask the CAS server (``/p3/serviceValidate``) whom ``ticket`` was issued to, for our service."""
    settings = settings or get_settings()
    if not _TICKET.match(ticket):
        raise _refused(
            "invalid_ticket",
            "the sign-on ticket is missing or malformed; log in again",
            "登录票据缺失或格式错误，请重新登录",
        )
    try:
        document = _client(settings).get_verification_response(ticket)
    except requests.Timeout:
        raise _unavailable(f"no answer within {settings.cas_timeout:g} s") from None
    except requests.RequestException:
        raise _unavailable("it cannot be reached") from None
    root = _parse(document)
    failure = root.find(f"{_CAS}authenticationFailure")
    if failure is not None:
        code = (failure.get("code") or "").strip()
        if code == "INVALID_SERVICE":
            raise _refused(
                "invalid_service",
                "the sign-on ticket was issued for another service; log in again",
                "该登录票据不是签发给本系统的，请重新登录",
                cas_code=code,
            )
        raise _refused(
            "invalid_ticket",
            "the sign-on ticket is not valid (expired or already used); log in again",
            "登录票据无效（已过期或已被使用），请重新登录",
            cas_code=code or "UNKNOWN",
        )
    success = root.find(f"{_CAS}authenticationSuccess")
    user = (success.findtext(f"{_CAS}user") if success is not None else None) or ""
    if success is None or not user.strip():
        raise _unavailable("its answer names no user")
    attributes: dict[str, list[str]] = {}
    block = success.find(f"{_CAS}attributes")
    for element in block if block is not None else []:
        name = element.tag.rpartition("}")[2]
        attributes.setdefault(name, []).append((element.text or "").strip())
    return CasIdentity(user=user.strip(), attributes=attributes)


def _account_for(session: Session, settings: Settings, identity: CasIdentity) -> service.User:
    center_role = settings.cas_center_users.get(identity.user)
    if center_role:
        return service.directory_account(
            session,
            username=identity.user,
            role=Role(center_role),
            source="cas",
            display_name=identity.first("displayName") or identity.first("cn"),
            email=identity.first("mail"),
        )
    # Center staff by their directory group: asked of the directory itself (not the memberOf the CAS
    # server may release), when one is configured, so that the sync can take the role away again.
    directory_down: ldap.DirectoryUnavailable | None = None
    if settings.ldap_url and settings.ldap_group_roles:
        try:
            person = ldap.directory(settings).find(identity.user)
        except ldap.DirectoryUnavailable as exc:
            person, directory_down = None, exc
            log.warning("CAS log-in of %s: directory not asked (%s)", identity.user, exc.message)
        role = ldap.role_of(person, settings) if person is not None and not person.locked else None
        if person is not None and role is not None:
            return service.directory_account(
                session,
                username=person.username,
                role=role,
                source="ldap",
                display_name=person.display_name,
                email=person.email,
            )
    attribute = settings.cas_staff_number_attribute
    staff_no = (identity.first(attribute) if attribute else "") or identity.user
    user = service.unit_account_of_staff_number(session, staff_no)
    if user is None and directory_down is not None:
        raise _unavailable("the center directory cannot be asked") from None
    if user is None:
        raise _refused(
            "unknown_user",
            f"the campus account '{identity.user}' (staff number {staff_no}) is not registered in "
            "any unit's contact registry; ask your unit to update its 网络安全联络通讯录",
            f"统一身份认证账号“{identity.user}”（工号 {staff_no}）未在任何单位的网络安全联络通讯录中登记，"
            "请联系本单位更新《网络安全联络通讯录》",
            cas_user=identity.user,
            staff_no=staff_no,
        )
    return user


def login(ticket: str, *, address: str | None = None, previous_token: str | None = None) -> IssuedToken:
    """Validate ``ticket`` and open a session for the account it maps to (the local log-in's token
    rules and audit row: :func:`vmportal.identity.service.issue_token` with ``method="cas"``), and
    remember the ticket so the server's single log-out can end that session. ``previous_token``
    (the browser's earlier session, if any) is revoked: a new session id at every log-in.

    The CAS server sends the browser back with a GET, and a GET's unit of work only reads, so the
    log-in is a unit of work of its own here. A refusal is audited (``login.failed``, the CAS user
    as actor) in a transaction of its own and counted against the address like a wrong password."""
    settings = get_settings()
    if not enabled(settings):
        raise _refused("not_configured", "campus sign-on is not enabled here", "本系统未启用统一身份认证登录")
    if address:
        throttle.check(settings, address)
    digest = ticket_digest(ticket)
    who = Who(actor="cas")
    try:
        with db.transaction() as session:
            if repository.cas_ticket_used(session, digest):
                raise _replayed()
            identity = validate(ticket, settings)
            who = Who(actor=f"cas:{identity.user}"[:100])
            user = _account_for(session, settings, identity)
            if not user.active:
                raise _refused("disabled", "account disabled", "账号已停用")
            if previous_token:
                service.logout(session, previous_token)
            issued = service.issue_token(session, user, method="cas")
            row = repository.token_by_digest(session, service.token_digest(issued.token))
            assert row is not None and row.id is not None
            session.add(CasSession(ticket_sha256=digest, token_id=row.id, cas_user=identity.user[:128]))
            try:
                session.flush()
            except IntegrityError:  # the same ticket, presented twice at the same moment
                raise _replayed() from None
            session.expunge(user)  # the caller reads the account after this unit of work
            return issued
    except SignOnRefused as refused:
        if address and refused.reason not in ("unavailable", "not_configured"):
            throttle.failed(settings, address)
        with db.transaction() as session:
            record(
                session, who, "login.failed", "user", None, result="denied", detail=f"cas: {refused.reason}"
            )
        raise


def _replayed() -> SignOnRefused:
    return _refused(
        "replayed",
        "this sign-on ticket has already been used; log in again",
        "该登录票据已被使用，请重新登录",
    )


def single_logout(session: Session, logout_request: str) -> int:
    """The CAS server's SAML ``LogoutRequest`` (posted to the service URL): the session opened with the
    ticket its ``SessionIndex`` names ends. Returns how many sessions ended (0 or 1); anything
    unparsable or unknown ends nothing. The request carries no secret but the ticket itself, which
    only the CAS server, the browser and the portal ever saw."""
    if not logout_request or len(logout_request) > _MAX_LOGOUT_REQUEST:
        return 0
    try:
        root = SafeXml.fromstring(logout_request)
    except (ParseError, DefusedXmlException, ValueError):
        return 0
    if root.tag != f"{_SAMLP}LogoutRequest":
        return 0
    ticket = (root.findtext(f"{_SAMLP}SessionIndex") or "").strip()
    if not _TICKET.match(ticket):
        return 0
    row = repository.cas_session_token(session, ticket_digest(ticket))
    if row is None or row.revoked_at is not None:
        return 0
    row.revoked_at = service.utcnow()
    session.add(row)
    record(session, Who(actor="cas"), "logout", "user", row.user_id, detail="cas single log-out")
    return 1
