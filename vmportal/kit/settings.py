"""Typed settings. Every variable has the ``VMPORTAL_`` prefix; the README lists them all.

The defaults are the embedded mode: an SQLite file and the simulator under ``data_dir``, tasks run
inside the portal's own process. Setting ``VMPORTAL_DATABASE_URL`` and ``VMPORTAL_BROKER_URL``
switches to the production path (PostgreSQL, Redis, Celery workers) with no code change.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOGIN_METHODS = ("local", "cas", "ldap")
#: The roles a directory group or the CAS list may grant (policies.roles, center side).
CENTER_ROLE_NAMES = ("center_admin", "center_operator", "auditor")
#: Where the CAS server sends the browser back with its ticket (and posts its single log-out).
CAS_CALLBACK_PATH = "/auth/cas/callback"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VMPORTAL_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("var"), description="Where the embedded database, uploads and keys live.")
    database_url: str = Field("", description="SQLAlchemy URL; empty means SQLite in data_dir.")
    broker_url: str = Field("", description="Celery broker (redis://…); empty runs tasks in-process.")
    result_backend: str = Field("", description="Celery result backend; empty disables results.")
    encryption_key: SecretStr | None = Field(
        None,
        description="Fernet key for national ID, mobile and hypervisor secrets. Empty in embedded mode "
        "means a key generated once into data_dir/encryption.key.",
    )
    previous_encryption_keys: list[SecretStr] = Field(
        default_factory=list, description="Older keys still accepted for decryption during rotation."
    )
    base_url: str = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: int = 8000

    token_ttl_minutes: int = 8 * 60
    lockout_threshold: int = Field(5, description="Failed logins in a row before the account locks.")
    lockout_minutes: int = 15
    login_failure_rate: str = Field(
        "20/minute", description="Failed log-ins one address may make (limits notation) before 429."
    )
    rate_limit_storage: str = Field(
        "memory://", description="Where log-in rate limits are counted: memory:// or redis://host:port/db."
    )

    login_methods: list[str] = Field(
        default_factory=lambda: ["local"],
        description='How people may log in, as the login page offers them (JSON list of "local", '
        '"cas", "ldap"). Local accounts always work for the break-glass center admin through the API.',
    )
    cas_server_url: str = Field(
        "", description="The campus CAS server's URL (ends with /; login, p3/serviceValidate below it)."
    )
    cas_timeout: float = Field(10.0, description="Seconds to wait for the CAS server to validate a ticket.")
    cas_staff_number_attribute: str = Field(
        "employeeNumber",
        description="The released CAS attribute holding the staff number (工号); absent or empty: the CAS "
        "user name is the staff number.",
    )
    cas_center_users: dict[str, str] = Field(
        default_factory=dict,
        description='CAS users who are center staff, with their role (JSON, e.g. {"zhangsan": '
        '"center_admin"}); their account is made or updated at log-in.',
    )
    ldap_url: str = Field(
        "",
        description="The center directory: ldaps://host:636, or ldap://host:389 with StartTLS before any "
        "bind (always; a password never travels in clear).",
    )
    ldap_group_base: str = Field(
        "",
        description="Where groups are searched (groupOfNames with the person as member) when the directory "
        "shows no memberOf; empty: memberOf only.",
    )
    ldap_ca_file: str = Field(
        "",
        description="PEM file of the CA the directory's certificate must verify against; empty: system CAs.",
    )
    ldap_bind_dn: str = Field("", description="Service account the portal searches the directory with.")
    ldap_bind_password: SecretStr | None = Field(None, description="The service account's password.")
    ldap_user_base: str = Field(
        "", description="Where people are searched, e.g. ou=people,dc=example,dc=edu."
    )
    ldap_user_filter: str = Field(
        "(&(objectClass=inetOrgPerson)(uid={username}))",
        description="Filter finding one person; {username} is replaced by the escaped log-in name.",
    )
    ldap_group_roles: dict[str, str] = Field(
        default_factory=dict,
        description='Directory group DN -> center role (JSON, e.g. {"cn=vmportal-operators,ou=groups,...": '
        '"center_operator"}); a person in none of them cannot log in.',
    )
    ldap_timeout: float = Field(
        5.0, description="Seconds to connect to, and wait for an answer from, the directory."
    )
    ldap_pool_size: int = Field(
        4, ge=1, description="Service-account connections to the directory kept open and reused per process."
    )
    directory_sync_seconds: int = Field(
        900,
        ge=0,
        description="How often beat (or the embedded portal's thread) runs the directory sync, which "
        "retires the accounts LDAP or the CAS center list no longer vouch for; 0: never.",
    )
    endorsement_required: bool = Field(
        False, description="Initial value of the center setting: requests need the unit lead's endorsement."
    )
    upload_max_bytes: int = 10 * 1024 * 1024
    json_max_bytes: int = Field(
        1024 * 1024,
        description="Largest JSON (or form) request body; a larger one is answered 413 before it is read.",
    )
    multipart_max_bytes: int = Field(
        128 * 1024 * 1024,
        description="Largest multipart upload request, all files together (each route also limits its "
        "files: upload_max_bytes per file, 32 MiB per scan report); larger is answered 413 unread.",
    )
    upload_types: list[str] = Field(
        default_factory=lambda: ["application/pdf", "image/png", "image/jpeg"],
        description="Content types accepted for signed documents and rectification attachments.",
    )
    alert_max_bytes: int = Field(
        1024 * 1024, description="Largest alert post accepted (bytes); a larger body is answered 413."
    )
    simulator_url: str = Field("", description="Simulator state URL; empty means data_dir/simulator.json.")
    demo: bool = Field(False, description="Seed demo data on start (the embedded run command sets it).")
    task_mode: str = Field(
        "",
        description="celery | thread | inline. Empty: celery when a broker is set, else thread "
        "(in-process pool). inline runs each task right after its transaction commits (tests).",
    )
    task_time_limit: int = Field(900, description="Hard limit in seconds for one task run.")
    task_max_retries: int = Field(8, description="Retries of a retriable hypervisor error before failing.")
    outbox_redrive_seconds: int = Field(
        60, description="An outbox task not completed this long after dispatch is sent again."
    )
    retention_days: int = Field(
        14,
        ge=0,
        description="Completed outbox tasks and sent e-mails are deleted this many days after they completed "
        "or were sent (beat, hourly); pending and failed ones are kept. 0: never delete.",
    )
    maintenance_reminder_hours: int = Field(
        24,
        ge=0,
        le=720,
        description="A planned outage's affected units are mailed a reminder this many hours before it "
        "starts (beat, every 15 minutes; once per outage, start time and unit). 0: no reminders.",
    )
    task_workers: int = Field(4, description="Threads for in-process tasks in embedded mode.")
    watch_inventory: bool = Field(
        True,
        description="The embedded portal follows each hypervisor connection's change stream in-process "
        "(vSphere WaitForUpdatesEx, Proxmox polled); production runs `vmportal watch` instead.",
    )
    startup_prepared: bool = Field(
        False, description="Set by `serve --workers N`: the parent migrated and seeded, workers skip it."
    )
    smtp_host: str = Field("", description="SMTP server for notification e-mails; empty: mails wait unsent.")
    smtp_port: int = Field(25, description="SMTP port (587 for submission with STARTTLS).")
    smtp_starttls: bool = Field(False, description="Upgrade the SMTP connection with STARTTLS.")
    smtp_username: str = Field("", description="SMTP login; empty: no authentication.")
    smtp_password: SecretStr | None = Field(None, description="SMTP password.")
    smtp_timeout: float = Field(10.0, description="Seconds to wait for the SMTP server at each step.")
    smtp_max_attempts: int = Field(10, description="Delivery attempts of one e-mail before it is failed.")
    mail_from: str = Field("vmportal@localhost", description="Sender address of notification e-mails.")
    center_mailbox: str = Field("", description="The center's mailbox, copied on every notification.")
    robot_allowed_hosts: list[str] = Field(
        default_factory=lambda: ["oapi.dingtalk.com", "qyapi.weixin.qq.com"],
        description="Hosts a group robot's webhook may point at (DingTalk's and WeCom's by default); any "
        "other URL is refused. A loopback address listed here may be plain http (a local relay, tests).",
    )
    robot_timeout: float = Field(10.0, description="Seconds to wait for a group robot's webhook answer.")
    robot_max_attempts: int = Field(
        10, description="Delivery attempts of one group-robot message before it is failed."
    )
    db_pool_size: int = Field(
        20, description="Database connections each process keeps open (API: at least its worker threads)."
    )
    db_pool_overflow: int = Field(20, description="Connections opened beyond db_pool_size under load.")
    db_pool_timeout: float = Field(
        10.0, description="Seconds a request waits for a free connection before answering 503 (Retry-After)."
    )
    request_slots: int = Field(
        0,
        description="Requests inside the application at once per API process (each holds a database "
        "connection); 0: the database pool's size and overflow less what background work needs.",
    )
    request_queue_seconds: float = Field(
        30.0, description="Seconds a request waits for its turn when all slots are taken; then 503."
    )
    db_lock_timeout: float = Field(
        15.0,
        description="SQLite: seconds a writer waits for another writer to finish before answering 503; "
        "tasks retry instead.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses (or CIDR ranges) of reverse proxies whose X-Forwarded-For/-Proto are "
        "believed; empty: none, the peer address is the client (alert source ranges, rate limits and "
        "the audit log use it).",
    )
    sql_reads: bool = Field(
        True,
        description='On PostgreSQL, answer "list VMs" and "get one VM" with one SQL statement that '
        "concatenates the JSON documents PostgreSQL keeps per VM (vmportal/vm/reads.py); "
        "false: through the ORM.",
    )
    sql_reads_pool_size: int = Field(
        4, description="Connections per API process for that read path (each statement takes ~0.1 ms)."
    )
    log_json: bool = False
    log_level: str = "INFO"
    metrics_port: int = Field(
        0,
        description="Port on which a Celery worker serves its Prometheus metrics (task counts and latency, "
        "containment latency) for all its pool processes; 0: not served. The API serves /metrics itself.",
    )
    metrics_host: str = Field("127.0.0.1", description="Address the worker's metrics port listens on.")

    @field_validator("login_methods")
    @classmethod
    def _known_methods(cls, value: list[str]) -> list[str]:
        unknown = [m for m in value if m not in LOGIN_METHODS]
        if unknown or not value:
            raise ValueError(f"login_methods must be a non-empty list of {', '.join(LOGIN_METHODS)}")
        return list(dict.fromkeys(value))

    @field_validator("cas_center_users", "ldap_group_roles")
    @classmethod
    def _center_roles(cls, value: dict[str, str]) -> dict[str, str]:
        wrong = {k: v for k, v in value.items() if v not in CENTER_ROLE_NAMES}
        if wrong:
            raise ValueError(f"roles must be one of {', '.join(CENTER_ROLE_NAMES)}: {wrong}")
        return value

    @property
    def cas_service_url(self) -> str:
        """The one service URL the portal gives the CAS server: fixed by configuration, so no request
        can make the server send its ticket (or the browser) anywhere else."""
        return self.base_url.rstrip("/") + CAS_CALLBACK_PATH

    @property
    def embedded(self) -> bool:
        return not self.broker_url

    @property
    def effective_task_mode(self) -> str:
        if self.task_mode:
            return self.task_mode
        return "celery" if self.broker_url else "thread"

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'vmportal.sqlite3').resolve()}"

    @property
    def simulator_state_url(self) -> str:
        if self.simulator_url:
            return self.simulator_url
        return f"simulator://{(self.data_dir / 'simulator.json').resolve()}"

    @property
    def upload_dir(self) -> Path:
        return self.data_dir / "uploads"

    def fernet_keys(self) -> list[str]:
        """Current key first. In embedded mode a missing key is generated once and kept on disk."""
        if self.encryption_key is not None:
            current = self.encryption_key.get_secret_value()
        else:
            if not self.embedded:
                raise RuntimeError("VMPORTAL_ENCRYPTION_KEY must be set when a broker is configured")
            current = _embedded_key(self.data_dir)
        return [current, *(k.get_secret_value() for k in self.previous_encryption_keys)]


def _embedded_key(data_dir: Path) -> str:
    from cryptography.fernet import Fernet

    path = data_dir / "encryption.key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key().decode()
    tmp = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
    tmp.write_text(key)
    tmp.chmod(0o600)
    try:
        # link() refuses to overwrite: when two processes start at once, the first key wins
        os.link(tmp, path)
    except FileExistsError:
        key = path.read_text().strip()
    finally:
        tmp.unlink()
    return key


_override: Settings | None = None


@lru_cache(maxsize=1)
def _from_environment() -> Settings:
    return Settings()


def get_settings() -> Settings:
    return _override if _override is not None else _from_environment()


def use_settings(settings: Settings | None) -> None:
    """Make ``settings`` the process's settings (tests, and commands given explicit options)."""
    global _override
    _override = settings
