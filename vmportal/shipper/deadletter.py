"""The dead-letter file: lines the shipper moved past without the portal storing them as alerts.

One JSON object per line, appended and fsync'd before the position moves past the line, so nothing
is dropped without a trace on the sensor: lines that are not JSON, lines too long to post, and
records the portal answered it could not read (422, or "rejected" inside a 202 — the portal keeps
those too, under ``GET /api/v1/alert-records?failed=true``). The file is for a human: after fixing
the cause, its ``line`` values can be posted again (they are the log's own bytes).

It is bounded (``max_bytes``): past that, entries are counted and logged but not written, so a sensor
that writes garbage for a week does not fill its disk.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from vmportal.shipper.delivery import utc_now_text

log = logging.getLogger("vmportal.shipper")

#: How much of a line an entry keeps (the portal keeps 64 KiB of a record, too).
MAX_LINE_CHARS = 64 * 1024


@dataclass(frozen=True)
class DeadLine:
    path: str
    start: int
    end: int
    data: bytes
    reason: str
    status: int | None = None  # the portal's answer, when it was the portal that refused it


class DeadLetters:
    def __init__(self, path: Path, *, source: str, max_bytes: int) -> None:
        self.path = path
        self.source = source
        self.max_bytes = max_bytes
        self.written = 0
        self.dropped = 0

    def write(self, lines: list[DeadLine]) -> None:
        if not lines:
            return
        chunk = b"".join(self._entry(line) for line in lines)
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size + len(chunk) > self.max_bytes:
            self.dropped += len(lines)
            log.error(
                "死信文件 %s 已满（%s 字节），%s 行未记录 / the dead-letter file %s is full (%s bytes): %s "
                "line(s) not recorded there; the first: %s",
                self.path,
                self.max_bytes,
                len(lines),
                self.path,
                self.max_bytes,
                len(lines),
                lines[0].reason,
            )
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.written += len(lines)
        for line in lines[:3]:
            log.warning(
                "已记入死信文件 / dead-lettered %s bytes %s-%s: %s",
                line.path,
                line.start,
                line.end,
                line.reason,
            )
        if len(lines) > 3:
            log.warning("… and %s more line(s) dead-lettered into %s", len(lines) - 3, self.path)

    def _entry(self, line: DeadLine) -> bytes:
        text = line.data.decode("utf-8", errors="replace")
        entry = {
            "time": utc_now_text(),
            "source": self.source,
            "path": line.path,
            "start": line.start,
            "end": line.end,
            "reason": line.reason,
            "status": line.status,
            "line": text[:MAX_LINE_CHARS],
            "line_truncated": len(text) > MAX_LINE_CHARS or None,
        }
        return json.dumps(entry, ensure_ascii=False).encode() + b"\n"
