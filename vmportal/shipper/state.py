"""What the shipper keeps on disk: its position in the log, and the batch it is delivering.

Two small files beside each other, both replaced atomically (written to a temporary file, fsync'd,
renamed over the old one, the directory fsync'd), so a crash leaves either the old or the new one,
never half of one:

``<state>``
    JSON: the file being read (device and inode, and a fingerprint of its first bytes) and the byte
    offset up to which every line has been delivered or deliberately skipped. Written only after the
    portal acknowledged the batch that ends there.

``<state>.pending``
    The batch being delivered, written *before* it is posted: its webhook-id, the byte range it
    covers and its exact body. After a crash the shipper posts this file again, with the same
    webhook-id, before reading anything else. A post the portal had already stored is then answered
    "duplicate" and nothing is stored twice; one it never saw is stored now. The body is kept (not
    re-read from the log) because the log may have been rotated or truncated meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STATE_VERSION = 1


@dataclass(frozen=True)
class FileId:
    """A file as the kernel knows it: the same (device, inode) whatever name it has now."""

    dev: int
    ino: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileId:
        return cls(st.st_dev, st.st_ino)


@dataclass(frozen=True)
class Fingerprint:
    """A digest of a file's first ``length`` bytes: it tells a file that was truncated and written
    again past the old position (copytruncate), or a new file that reused an old inode, from the
    file the position belongs to."""

    length: int
    sha256: str


@dataclass(frozen=True)
class Position:
    """Where reading resumes: every line before ``offset`` of file ``file`` is done."""

    file: FileId
    fingerprint: Fingerprint
    offset: int
    path: str  # the name the file had when this was written (for the log; the inode is what counts)


@dataclass(frozen=True)
class PendingBatch:
    """A batch journalled before its post (see the module docstring)."""

    webhook_id: str
    file: FileId
    fingerprint: Fingerprint
    path: str
    start: int
    end: int
    spans: tuple[tuple[int, int], ...]  # each record's line in the file (start, end), in body order
    body: bytes

    @property
    def records(self) -> list[bytes]:
        return self.body.split(b"\n") if self.body else []


class StateError(Exception):
    """The state file exists but cannot be read: refusing to guess a position (which could double
    or lose alerts) until an operator looks."""


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash at any moment leaves the old or the new file."""
    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def remove_durably(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    _fsync_dir(path.parent)


def _file_dict(file: FileId, fingerprint: Fingerprint) -> dict[str, Any]:
    return {
        "dev": file.dev,
        "ino": file.ino,
        "head_bytes": fingerprint.length,
        "head_sha256": fingerprint.sha256,
    }


def _file_from(data: dict[str, Any]) -> tuple[FileId, Fingerprint]:
    return (
        FileId(int(data["dev"]), int(data["ino"])),
        Fingerprint(int(data["head_bytes"]), str(data["head_sha256"])),
    )


class StateStore:
    """The state file and its pending-batch journal."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pending_path = path.with_name(path.name + ".pending")

    def check_writable(self) -> None:
        """Fail at start, not after the first delivered batch, when the state cannot be kept."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(self.path.parent, os.W_OK):
            raise PermissionError(f"cannot write in {self.path.parent}")

    # ---- position ------------------------------------------------------------------------------

    def load(self) -> Position | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(raw)
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"version {data.get('version')!r}, expected {STATE_VERSION}")
            file, fingerprint = _file_from(data)
            return Position(file, fingerprint, int(data["offset"]), str(data.get("path", "")))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StateError(
                f"状态文件 {self.path} 无法读取（{exc}）：请检查或删除后重新开始 / "
                f"the state file {self.path} cannot be read ({exc}): inspect it, or remove it to start over"
            ) from None

    def save(self, position: Position) -> None:
        data = {
            "version": STATE_VERSION,
            **_file_dict(position.file, position.fingerprint),
            "offset": position.offset,
            "path": position.path,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_atomically(self.path, json.dumps(data, indent=1).encode() + b"\n")

    # ---- the pending batch -----------------------------------------------------------------------

    def journal(self, batch: PendingBatch) -> None:
        header = {
            "version": STATE_VERSION,
            "webhook_id": batch.webhook_id,
            **_file_dict(batch.file, batch.fingerprint),
            "path": batch.path,
            "start": batch.start,
            "end": batch.end,
            "spans": [list(span) for span in batch.spans],
        }
        write_atomically(self.pending_path, json.dumps(header).encode() + b"\n" + batch.body)

    def pending(self) -> PendingBatch | None:
        try:
            raw = self.pending_path.read_bytes()
        except FileNotFoundError:
            return None
        head, sep, body = raw.partition(b"\n")
        try:
            if not sep:
                raise ValueError("no header line")
            data = json.loads(head)
            file, fingerprint = _file_from(data)
            spans = tuple((int(a), int(b)) for a, b in data["spans"])
            batch = PendingBatch(
                webhook_id=str(data["webhook_id"]),
                file=file,
                fingerprint=fingerprint,
                path=str(data["path"]),
                start=int(data["start"]),
                end=int(data["end"]),
                spans=spans,
                body=body,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StateError(
                f"待发送批次文件 {self.pending_path} 无法读取（{exc}）/ "
                f"the pending batch {self.pending_path} cannot be read ({exc}): inspect it; "
                "removing it may lose the alerts it holds"
            ) from None
        if len(batch.records) != len(spans):
            raise StateError(
                f"the pending batch {self.pending_path} holds {len(batch.records)} records for "
                f"{len(spans)} line offsets: inspect it; removing it may lose the alerts it holds"
            )
        return batch

    def clear_pending(self) -> None:
        remove_durably(self.pending_path)
