"""Following one log path across rotations, line by complete line.

The follower holds the file open and reads it by offset (``os.pread``), so what it reads is the file it
opened whatever happens to the name. At the end of the data it looks at the path again:

* **rotation by rename** (logrotate's default, Suricata/Wazuh/Zeek's own): the path now names another
  file. The old one is read to its end first — its writer keeps appending until it reopens, and
  logrotate's ``create`` puts the new empty file in place before that — and only once it has not
  grown for ``rotate_wait`` seconds does the follower move to the new file, from its start. A last
  line the old file never finished is then taken as it is (its writer is gone).
* **copytruncate**: the file is shorter than the position → read again from 0. A file that was
  truncated and has already grown past the old position is caught by its fingerprint (a digest of
  its first bytes, checked before each read): its head changed, so it is read from 0 too. Lines
  written between logrotate's copy and its truncate are lost by copytruncate itself, not here.
* a **partial last line** (no newline yet) is left where it is, and read whole once its newline comes.
* a line longer than ``max_line_bytes`` is not kept in memory: it is skipped to its newline and
  reported (``Line.too_long``) so the caller can record it.

After a restart, :meth:`Follower.open` finds the file of the saved position by its inode, under the
path or, when it was rotated meanwhile, under another name in the same directory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vmportal.shipper.state import FileId, Fingerprint, Position

log = logging.getLogger("vmportal.shipper")

#: How many of a file's first bytes identify its content (the fingerprint).
HEAD_BYTES = 1024
_NO_HEAD = Fingerprint(0, hashlib.sha256(b"").hexdigest())


@dataclass(frozen=True)
class Line:
    start: int
    end: int  # just past the newline
    data: bytes  # without the newline; empty when too_long
    too_long: bool = False


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Follower:
    def __init__(
        self,
        path: Path,
        *,
        max_line_bytes: int,
        rotate_wait: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.max_line_bytes = max_line_bytes
        self.rotate_wait = rotate_wait
        self._clock = clock
        self._chunk = max(256 * 1024, max_line_bytes + 1)  # a line that fits always fits in one read
        self.fd: int | None = None
        self.file: FileId | None = None
        self.fingerprint = _NO_HEAD
        self.offset = 0  # the start of the first line not yet returned
        self.opened_name = str(path)
        self._size_seen = -1
        self._last_growth = 0.0
        self._finishing = False  # the old file of a rotation: take its unfinished last line as it is
        self._rotation_seen: float | None = None
        self._disturbed: str | None = None  # truncated/replaced: reset at the next poll
        self._long_from: int | None = None  # a too-long line being skipped: its start
        self._long_scan = 0

    # ---- opening -------------------------------------------------------------------------------

    def open(self, position: Position | None, *, start_at_end: bool = False) -> None:
        """Open the file the position belongs to, or the path's file when there is no position."""
        st = self._stat_path()
        if position is None:
            if st is None:
                log.info("等待日志文件出现 / waiting for %s to appear", self.path)
                return
            self._open_path(at_end=start_at_end)
            return
        if st is not None and FileId.of(st) == position.file:
            self._open(str(self.path), position)
            return
        rotated = self._find_rotated(position.file)
        if rotated is not None:
            log.info(
                "上次读取的文件已轮转为 %s，先读完它 / "
                "the file read last was rotated to %s: finishing it first",
                rotated,
                rotated,
            )
            self._open(str(rotated), position)
            return
        log.warning(
            "上次读取的文件（inode %s，位置 %s）已不在 %s 所在目录：其剩余内容无法发送 / the file read last "
            "(inode %s, offset %s) is no longer in the directory of %s: whatever it held past that offset "
            "cannot be shipped",
            position.file.ino,
            position.offset,
            self.path,
            position.file.ino,
            position.offset,
            self.path,
        )
        if st is not None:
            self._open_path(at_end=False)

    def _stat_path(self) -> os.stat_result | None:
        try:
            return os.stat(self.path)
        except FileNotFoundError:
            return None

    def _find_rotated(self, file: FileId) -> Path | None:
        try:
            entries = list(os.scandir(self.path.parent))
        except FileNotFoundError:
            return None
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if FileId.of(st) == file:
                return Path(entry.path)
        return None

    def _open_path(self, *, at_end: bool) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        self._adopt(fd, str(self.path))
        if at_end:
            self.offset = self._last_newline_end(os.fstat(fd).st_size)

    def _open(self, name: str, position: Position) -> None:
        try:
            fd = os.open(name, os.O_RDONLY)
        except FileNotFoundError:
            self.open(None)
            return
        self._adopt(fd, name)
        st = os.fstat(fd)
        if FileId.of(st) != position.file:  # replaced between the stat and the open
            log.warning("%s was replaced while opening it: reading the new file from its start", name)
            return
        head = os.pread(fd, position.fingerprint.length, 0)
        same_head = len(head) == position.fingerprint.length and _digest(head) == position.fingerprint.sha256
        if same_head and st.st_size >= position.offset:
            self.fingerprint = position.fingerprint
            self.offset = position.offset
            return
        log.warning(
            "%s 已被截断或替换（位置 %s 处的内容已变），从头读取 / "
            "%s was truncated or replaced since offset %s was saved: reading it from its start",
            name,
            position.offset,
            name,
            position.offset,
        )

    def _adopt(self, fd: int, name: str) -> None:
        self.close()
        self.fd = fd
        st = os.fstat(fd)
        self.file = FileId.of(st)
        self.opened_name = name
        self.offset = 0
        self.fingerprint = _NO_HEAD
        self._size_seen = -1
        self._last_growth = self._clock()
        self._finishing = False
        self._rotation_seen = None
        self._disturbed = None
        self._long_from = None

    def _last_newline_end(self, size: int) -> int:
        """The offset just past the last newline before ``size``: starting "at the end" must not start
        in the middle of a line being written."""
        assert self.fd is not None
        pos = size
        while pos > 0:
            start = max(0, pos - 64 * 1024)
            data = os.pread(self.fd, pos - start, start)
            found = data.rfind(b"\n")
            if found >= 0:
                return start + found + 1
            pos = start
        return 0

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
        self.fd = None

    # ---- where we are --------------------------------------------------------------------------

    def position(self, offset: int | None = None) -> Position | None:
        if self.fd is None or self.file is None:
            return None
        return Position(
            self.file, self.fingerprint, self.offset if offset is None else offset, self.opened_name
        )

    def rotation_pending(self) -> bool:
        """Whether the path names another file than the one being read (it is being finished)."""
        st = self._stat_path()
        return st is not None and self.file is not None and FileId.of(st) != self.file

    def rewind(self, offset: int) -> None:
        """Give back lines read but not taken (a batch was full): they are read again next time."""
        assert offset <= self.offset
        self.offset = offset

    # ---- reading -------------------------------------------------------------------------------

    def _check(self) -> int | None:
        """The file's size, after making sure the position still belongs to its content; None (and
        the follower marked for a reset) when it was truncated or replaced."""
        assert self.fd is not None
        size = os.fstat(self.fd).st_size
        if size < self.offset:
            self._disturbed = f"truncated to {size} bytes (the position was {self.offset})"
            return None
        if size != self._size_seen:
            if size > self._size_seen:
                self._last_growth = self._clock()
            self._size_seen = size
            head = os.pread(self.fd, min(HEAD_BYTES, size), 0)
            known = self.fingerprint.length
            if len(head) < known or _digest(head[:known]) != self.fingerprint.sha256:
                self._disturbed = "truncated and written again (its first bytes changed)"
                return None
            if len(head) > known:
                self.fingerprint = Fingerprint(len(head), _digest(head))
        return size

    def read(self, budget: int) -> list[Line]:
        """Complete lines from the position on, about ``budget`` bytes of them at most (at least one
        when one is there); [] at the end of the data, or when the file needs a reset (see poll)."""
        if self.fd is None or self._disturbed:
            return []
        size = self._check()
        if size is None:
            return []
        if self._long_from is not None:
            return self._skip_long(size)
        lines: list[Line] = []
        taken = 0
        while self.offset < size and taken < budget:
            want = min(self._chunk, size - self.offset)
            data = os.pread(self.fd, want, self.offset)
            if not data:
                break
            pos = 0
            while taken < budget:
                newline = data.find(b"\n", pos)
                if newline < 0:
                    break
                start, end = self.offset + pos, self.offset + newline + 1
                if newline - pos > self.max_line_bytes:
                    lines.append(Line(start, end, b"", too_long=True))
                else:
                    lines.append(Line(start, end, data[pos:newline]))
                taken += newline + 1 - pos
                pos = newline + 1
            self.offset += pos
            rest = len(data) - pos
            if taken >= budget or rest == 0:
                continue  # the loop condition ends it, or reads on
            if rest > self.max_line_bytes:  # already too long, wherever it ends: skip it to its newline
                self._long_from = self.offset
                self._long_scan = self.offset + rest
                return lines + self._skip_long(size)
            if self.offset + rest < size:
                continue  # the chunk ended inside a line: read on from the line's start
            if self._finishing:  # the old file of a rotation: its writer is gone, the line is final
                lines.append(Line(self.offset, size, data[pos:]))
                self.offset = size
            break  # a partial last line: wait for its newline
        return lines

    def _skip_long(self, size: int) -> list[Line]:
        assert self.fd is not None and self._long_from is not None
        while self._long_scan < size:
            data = os.pread(self.fd, min(self._chunk, size - self._long_scan), self._long_scan)
            if not data:
                break
            newline = data.find(b"\n")
            if newline >= 0:
                line = Line(self._long_from, self._long_scan + newline + 1, b"", too_long=True)
                self.offset = line.end
                self._long_from = None
                return [line]
            self._long_scan += len(data)
        if self._finishing and self._long_scan >= size:
            line = Line(self._long_from, size, b"", too_long=True)
            self.offset = size
            self._long_from = None
            return [line]
        return []

    # ---- at the end of the data ----------------------------------------------------------------

    def poll(self) -> bool:
        """Look at the path and the file after the data ran out. True when the follower now reads
        another file (or the same one again from its start): the caller saves the new position."""
        if self.fd is None:
            if self._stat_path() is None:
                return False
            self._open_path(at_end=False)
            if self.fd is not None:
                log.info("日志文件已出现 / %s appeared: reading it", self.path)
                return True
            return False
        if self._disturbed:
            reason, self._disturbed = self._disturbed, None
            name = self.opened_name
            log.warning("%s 已被截断，从头读取 / %s was %s: reading it from its start", name, name, reason)
            self.offset = 0
            self.fingerprint = _NO_HEAD
            self._size_seen = -1
            self._long_from = None
            return True
        st = self._stat_path()
        if st is None or self.file is None or FileId.of(st) == self.file:
            return False  # no new file (yet): the old one may still be written to
        now = self._clock()
        if self._rotation_seen is None:
            self._rotation_seen = now
        size = os.fstat(self.fd).st_size
        if size != self._size_seen:
            return False  # it grew since the last read: read that first
        # Its writer may not have reopened yet: give it rotate_wait after the rotation was seen and
        # after the old file last grew.
        if now - max(self._last_growth, self._rotation_seen) < self.rotate_wait:
            return False
        if self.offset < size and not self._finishing:
            self._finishing = True  # one more read takes the unfinished last line
            return False
        if self.offset < size:
            return False  # still finishing (a long line being skipped)
        log.info(
            "%s 已轮转，读完旧文件 %s，开始读取新文件 / %s was rotated: finished the old file (%s bytes), "
            "now reading the new one",
            self.path,
            self.opened_name,
            self.path,
            size,
        )
        self._open_path(at_end=False)
        return True
