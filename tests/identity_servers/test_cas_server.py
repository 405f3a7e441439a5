"""The test CAS server speaks CAS 3.0 as python-cas expects it: form login, service tickets
validated once and only for their service, released attributes, and SAML single log-out."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
from cas import CASClient, CASClientV3
from defusedxml import ElementTree

from tests.support.campus_people import ADMINS, OPERATORS, group_dn, staff
from tests.support.cas_server import CasLoginRefused, CasServer

pytestmark = pytest.mark.xdist_group("identity-servers")

CAS_NS = {"cas": "http://www.yale.edu/tp/cas"}
SAMLP_NS = {"samlp": "urn:oasis:names:tc:SAML:2.0:protocol", "saml": "urn:oasis:names:tc:SAML:2.0:assertion"}
PORTAL = "http://127.0.0.1:8123/auth/cas/callback"  # no one listens: validation needs no service
OTHER_SERVICE = "http://127.0.0.1:8124/other/app"


def _client(cas: CasServer, service: str) -> CASClientV3:
    client = CASClient(version=3, service_url=service, server_url=cas.url)
    assert isinstance(client, CASClientV3)
    return client


def _failure_code(response: bytes) -> str | None:
    failure = ElementTree.fromstring(response).find("cas:authenticationFailure", CAS_NS)
    return None if failure is None else failure.get("code")


def test_a_form_login_ticket_validates_with_the_released_attributes(cas_server: CasServer) -> None:
    person = staff("zhangsan")
    login = cas_server.login(person.uid, person.password, PORTAL)
    assert login.ticket.startswith("ST-")
    assert login.redirect.startswith(PORTAL + "?ticket=")
    user, attributes, pgt_iou = _client(cas_server, PORTAL).verify_ticket(login.ticket)
    assert user == "zhangsan"
    assert pgt_iou is None
    assert attributes["uid"] == "zhangsan"
    assert attributes["cn"] == "张三"
    assert attributes["mail"] == "zhangsan@nic.example.edu"
    assert attributes["employeeNumber"] == "20080117"
    assert attributes["ou"] == "网络与信息中心"
    assert set(attributes["memberOf"]) == {group_dn(ADMINS), group_dn(OPERATORS), group_dn("nic-staff")}
    assert attributes["isFromNewLogin"] == "true"
    assert "mobile" not in attributes  # known to the server, not in its release policy


def test_a_ticket_used_twice_is_an_invalid_ticket(cas_server: CasServer) -> None:
    person = staff("lisi")
    login = cas_server.login(person.uid, person.password, PORTAL)
    client = _client(cas_server, PORTAL)
    assert client.verify_ticket(login.ticket)[0] == "lisi"
    second = client.get_verification_response(login.ticket)
    assert _failure_code(second) == "INVALID_TICKET"
    assert client.verify_ticket(login.ticket)[0] is None


def test_a_ticket_for_another_service_is_an_invalid_service(cas_server: CasServer) -> None:
    person = staff("lisi")
    login = cas_server.login(person.uid, person.password, PORTAL)
    response = _client(cas_server, OTHER_SERVICE).get_verification_response(login.ticket)
    assert _failure_code(response) == "INVALID_SERVICE"
    # CAS 3.0: a failed validation still uses the ticket up; its own service cannot use it after.
    assert (
        _failure_code(_client(cas_server, PORTAL).get_verification_response(login.ticket)) == "INVALID_TICKET"
    )


def test_a_wrong_password_gets_the_form_again_and_no_ticket(cas_server: CasServer) -> None:
    with pytest.raises(CasLoginRefused) as refused:
        cas_server.login("zhangsan", "not-the-password", PORTAL)
    assert refused.value.response.status_code == 200
    assert 'name="password"' in refused.value.response.text


def test_a_service_outside_the_allowed_patterns_gets_no_ticket(cas_server: CasServer) -> None:
    person = staff("zhangsan")
    with pytest.raises(CasLoginRefused):
        cas_server.login(person.uid, person.password, "https://phishing.example.org/cas")


def test_a_second_service_gets_a_ticket_without_the_password(cas_server: CasServer) -> None:
    person = staff("wangwu")
    first = cas_server.login(person.uid, person.password, PORTAL)
    second = cas_server.login_again(first, OTHER_SERVICE)
    user, attributes, _ = _client(cas_server, OTHER_SERVICE).verify_ticket(second.ticket)
    assert user == "wangwu"
    assert attributes["isFromNewLogin"] == "false"


def test_people_and_attributes_changed_on_the_server_apply_to_the_next_login(cas: CasServer) -> None:
    cas.set_attributes("lisi", mail="li.si@nic.example.edu", memberOf=[group_dn(ADMINS)])
    login = cas.login("lisi", staff("lisi").password, PORTAL)
    _, attributes, _ = _client(cas, PORTAL).verify_ticket(login.ticket)
    assert attributes["mail"] == "li.si@nic.example.edu"
    assert attributes["memberOf"] == group_dn(ADMINS)  # one value: python-cas gives a string

    cas.add_user("sunba", "Sb-2024-nic!", {"uid": "sunba", "cn": "孙八", "employeeNumber": "20240901"})
    login = cas.login("sunba", "Sb-2024-nic!", PORTAL)
    assert _client(cas, PORTAL).verify_ticket(login.ticket)[1]["cn"] == "孙八"

    cas.set_password("sunba", "Sb-changed-2025!")
    with pytest.raises(CasLoginRefused):
        cas.login("sunba", "Sb-2024-nic!", PORTAL)
    cas.disable_user("sunba")
    with pytest.raises(CasLoginRefused):
        cas.login("sunba", "Sb-changed-2025!", PORTAL)
    cas.remove_user("lisi")
    with pytest.raises(CasLoginRefused):
        cas.login("lisi", staff("lisi").password, PORTAL)


# ---- single log-out ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    path: str
    content_type: str
    form: dict[str, list[str]]


class SloReceiver:
    """A service's callback URL on loopback that records what the CAS server posts to it."""

    def __init__(self) -> None:
        self.requests: queue.Queue[Received] = queue.Queue()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.put(
                    Received(self.path, self.headers.get("Content-Type", ""), parse_qs(body.decode()))
                )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass  # the test asserts on what arrived; stderr noise helps no one

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/auth/cas/callback"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def slo_receiver() -> Iterator[SloReceiver]:
    receiver = SloReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


def test_logging_out_posts_a_saml_logout_request_to_the_service(
    cas_server: CasServer, slo_receiver: SloReceiver
) -> None:
    person = staff("zhangsan")
    login = cas_server.login(person.uid, person.password, slo_receiver.url)
    assert _client(cas_server, slo_receiver.url).verify_ticket(login.ticket)[0] == "zhangsan"
    assert slo_receiver.requests.empty()

    cas_server.logout(login.session)

    received = slo_receiver.requests.get(timeout=10)
    assert received.path == "/auth/cas/callback"
    assert received.content_type.startswith("application/x-www-form-urlencoded")
    logout_request = received.form["logoutRequest"][0]
    assert CASClientV3.verify_logout_request(logout_request, login.ticket)
    root = ElementTree.fromstring(logout_request)
    assert root.tag == "{urn:oasis:names:tc:SAML:2.0:protocol}LogoutRequest"
    assert root.findtext("samlp:SessionIndex", namespaces=SAMLP_NS) == login.ticket
    assert slo_receiver.requests.empty()  # one request per service ticket
    # The CAS session is over: the same browser must type its password again.
    with pytest.raises(CasLoginRefused):
        cas_server.login_again(login, PORTAL)
