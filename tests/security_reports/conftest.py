"""A real SMTP server (aiosmtpd) on a free loopback port for the e-mail tests, and a server that
accepts connections and never answers (a hung mail relay). The incident workflow's mails need no help
here: each step's timeline row calls ``incidents.mails.on_event`` itself."""

from __future__ import annotations

import email
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from vmportal.kit.settings import Settings

CENTER_MAILBOX = "nic-security@example.edu.cn"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        part = self.message.get_body(("plain",))
        assert part is not None
        return str(part.get_content())


@dataclass
class Collector:
    """aiosmtpd handler: keeps every message; ``refuse`` makes RCPT answer a permanent 550."""

    messages: list[Received] = field(default_factory=list)
    refuse: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        message = email.message_from_bytes(raw, policy=default_policy)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.messages.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Received]:
        return [m for m in self.messages if address in m.rcpt_tos]

    def about(self, text: str) -> list[Received]:
        return [m for m in self.messages if text in m.subject]


@dataclass
class MailServer:
    settings: Settings
    port: int
    collector: Collector = field(default_factory=Collector)
    controller: Controller | None = None

    @property
    def messages(self) -> list[Received]:
        return self.collector.messages

    def start(self) -> None:
        if self.controller is None:
            # decode_data=False keeps the raw bytes: the test reads the message as a client would.
            self.controller = Controller(self.collector, hostname="127.0.0.1", port=self.port)
            self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


def _configure(settings: Settings, port: int) -> None:
    settings.smtp_host = "127.0.0.1"
    settings.smtp_port = port
    settings.smtp_timeout = 5.0
    settings.mail_from = "vmportal@nic.example.edu.cn"
    settings.center_mailbox = CENTER_MAILBOX


@pytest.fixture
def mail_server(settings: Settings) -> Iterator[MailServer]:
    """A running aiosmtpd server the portal's settings point at."""
    server = MailServer(settings, free_port())
    _configure(settings, server.port)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mail_server_down(settings: Settings) -> Iterator[MailServer]:
    """The settings point at a free port with nothing listening; ``start()`` brings the server up there."""
    server = MailServer(settings, free_port())
    _configure(settings, server.port)
    yield server
    server.stop()


@dataclass
class HungServer:
    port: int
    timeout: float
    connected_at: list[float] = field(default_factory=list)  # time.time() of each accepted connection


@pytest.fixture
def hung_mail_server(settings: Settings) -> Iterator[HungServer]:
    """A relay that accepts the TCP connection and never says a word: every attempt runs into the timeout."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    server = HungServer(int(listener.getsockname()[1]), timeout=2.0)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            server.connected_at.append(time.time())
            accepted.append(conn)  # held open, silent

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    _configure(settings, server.port)
    settings.smtp_timeout = server.timeout
    yield server
    stop.set()
    thread.join(timeout=2)
    for conn in accepted:
        conn.close()
    listener.close()
