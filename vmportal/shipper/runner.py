"""The shipping loop: read a batch, journal it, post it until the portal answers, then move on.

One batch is in flight at a time and nothing is read while it is: when the portal is down the
shipper holds one batch (at most ``batch_bytes``) and its place in the file, and the log itself is
the buffer. Memory stays bounded however long the outage.

For each batch, in this order (each step durable before the next):

1. lines the batch moves past without posting (not JSON, too long) go to the dead-letter file;
2. the batch is journalled (``<state>.pending``: its webhook-id, byte range and body);
3. it is posted, again and again if need be, with the same webhook-id;
4. records the portal answered it could not read go to the dead-letter file;
5. the position after the batch is saved (``<state>``), then the journal removed.

The webhook-id is derived from the file (device, inode, a digest of its first bytes), the byte range
and the body, so it names exactly one batch of one file. A crash anywhere after step 2 restarts at
the journal: the same id is posted again and the portal answers "already received" for a post it had
stored. Nothing is lost, nothing is stored twice.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from vmportal.shipper.config import ShipperConfig
from vmportal.shipper.deadletter import DeadLetters, DeadLine
from vmportal.shipper.delivery import Answer, Outcome, Poster, backoff
from vmportal.shipper.formats import Verdict, clean, select
from vmportal.shipper.state import FileId, Fingerprint, PendingBatch, Position, StateStore
from vmportal.shipper.tail import Follower

log = logging.getLogger("vmportal.shipper")

#: Skipped lines alone (no alert among them) move the saved position at most this often.
PROGRESS_INTERVAL = 1.0


@dataclass
class Stats:
    """What a run did, for the log line at exit and for tests."""

    batches: int = 0  # posts the portal acknowledged
    records: int = 0  # records in those posts
    duplicates: int = 0  # posts answered "already received" (a re-post after a crash or lost answer)
    skipped: int = 0  # lines that are not alerts
    dead_lettered: int = 0  # lines and records written to the dead-letter file
    failed_attempts: int = 0  # posts that had to be tried again
    splits: int = 0  # batches split after a 413
    webhook_ids: list[str] = field(default_factory=list)  # of acknowledged posts, in order (last 1000)


@dataclass
class Batch:
    file: FileId
    fingerprint: Fingerprint
    path: str
    start: int
    end: int
    records: list[bytes] = field(default_factory=list)
    spans: list[tuple[int, int]] = field(default_factory=list)
    size: int = 0  # of the body: the records and the newlines between them
    dead: list[DeadLine] = field(default_factory=list)

    @property
    def body(self) -> bytes:
        # JSON lines: the portal reads each line as one record and keeps its exact bytes.
        return b"\n".join(self.records)

    @property
    def webhook_id(self) -> str:
        digest = hashlib.sha256(self.fingerprint.sha256.encode() + b"\0" + self.body).hexdigest()
        return f"vmship-{self.file.dev:x}-{self.file.ino:x}-{self.start}-{self.end}-{digest[:24]}"

    @property
    def position_after(self) -> Position:
        return Position(self.file, self.fingerprint, self.end, self.path)

    def pending(self) -> PendingBatch:
        return PendingBatch(
            self.webhook_id, self.file, self.fingerprint, self.path, self.start, self.end,
            tuple(self.spans), self.body,
        )  # fmt: skip

    @classmethod
    def from_pending(cls, p: PendingBatch) -> Batch:
        records = p.records
        size = len(p.body)
        return cls(p.file, p.fingerprint, p.path, p.start, p.end, records, list(p.spans), size)

    def split(self) -> tuple[Batch, Batch]:
        half = len(self.records) // 2
        middle = self.spans[half - 1][1]
        parts = []
        for records, spans, start, end in (
            (self.records[:half], self.spans[:half], self.start, middle),
            (self.records[half:], self.spans[half:], middle, self.end),
        ):
            size = sum(len(r) for r in records) + len(records) - 1
            parts.append(Batch(self.file, self.fingerprint, self.path, start, end, records, spans, size))
        return parts[0], parts[1]


class Shipper:
    def __init__(
        self,
        config: ShipperConfig,
        *,
        poster: Poster | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.state = StateStore(config.state_file)
        self.follower = Follower(
            config.file, max_line_bytes=config.batch_bytes, rotate_wait=config.rotate_wait, clock=clock
        )
        self.dead = DeadLetters(
            config.dead_letter_path, source=config.source, max_bytes=config.dead_letter_max_bytes
        )
        self.poster = poster or Poster(
            config.endpoint,
            secret=config.secret,
            token=None if config.secret else config.token,
            timeout=config.timeout,
            ca_file=str(config.ca_file) if config.ca_file else None,
            proxy=config.proxy,
        )
        self.stats = Stats()
        self.committed: Position | None = None
        self.waiting_since: float | None = None  # the portal has not answered usefully since then
        self._clock = clock
        self._last_commit = 0.0
        self._random = random.Random()

    # ---- the loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> Stats:
        c = self.config
        log.info(
            "发送 %s（%s）到 %s / shipping %s (%s) to %s as source %s, %s",
            c.file, c.format.value, c.endpoint, c.file, c.format.value, c.endpoint, c.source,
            "signed (HMAC)" if self.poster.signs else "with a bearer token",
        )  # fmt: skip
        try:
            self.state.check_writable()
            self.committed = self.state.load()
            if not self._recover(stop):
                return self.stats
            self.follower.open(self.committed, start_at_end=c.start_at_end and self.committed is None)
            self._commit_if_moved()
            while not stop.is_set():
                batch = self._collect()
                if batch is not None and batch.records:
                    if not self._deliver(batch, stop):
                        break
                    continue
                if batch is not None and batch.end > batch.start:
                    self._advance(batch)
                    continue
                # The end of the data (or only a partial line): save skipped progress, look at the path.
                self._commit_if_moved()
                if self.follower.poll():
                    self._commit_if_moved(force=True)
                    continue
                if c.once and not self.follower.rotation_pending():
                    break
                stop.wait(c.poll_interval)
        finally:
            self.follower.close()
            self.poster.close()
        s = self.stats
        log.info(
            "停止 / stopped: %s batches (%s records) delivered, %s repeats recognised, %s lines skipped, "
            "%s dead-lettered", s.batches, s.records, s.duplicates, s.skipped, s.dead_lettered,
        )  # fmt: skip
        return s

    # ---- reading -------------------------------------------------------------------------------

    def _collect(self) -> Batch | None:
        f = self.follower
        here = f.position()
        if here is None:
            return None
        c = self.config
        batch = Batch(here.file, here.fingerprint, here.path, here.offset, here.offset)
        scanned = 0
        full = False
        while not full and scanned < c.scan_limit:
            lines = f.read(c.batch_bytes)
            if not lines:
                break
            for line in lines:
                if line.too_long:
                    reason = f"longer than {c.batch_bytes} bytes (batch_bytes): not posted"
                    batch.dead.append(DeadLine(here.path, line.start, line.end, b"", reason))
                else:
                    data = clean(line.data)
                    chosen = select(c.format, data, min_level=c.min_level)
                    if chosen.verdict is Verdict.KEEP:
                        added = len(data) + (1 if batch.records else 0)
                        if batch.records and (
                            len(batch.records) >= c.batch_records or batch.size + added > c.batch_bytes
                        ):
                            f.rewind(line.start)  # the next batch starts with it
                            full = True
                            break
                        batch.records.append(data)
                        batch.spans.append((line.start, line.end))
                        batch.size += added
                    elif chosen.verdict is Verdict.SKIP:
                        self.stats.skipped += 1
                    else:
                        batch.dead.append(DeadLine(here.path, line.start, line.end, data, chosen.reason))
                batch.end = line.end
                scanned += line.end - line.start
        batch.fingerprint = f.fingerprint  # it may have grown while reading a young file
        return batch

    def _advance(self, batch: Batch) -> None:
        """A stretch of lines with no alert in it: record the dead ones, move the position on."""
        self._dead_letter(batch.dead)
        if batch.dead or self._clock() - self._last_commit >= PROGRESS_INTERVAL:
            self._commit(batch.position_after)

    def _commit_if_moved(self, *, force: bool = False) -> None:
        here = self.follower.position()
        if here is None:
            return
        if force or self.committed is None or here != self.committed:
            self._commit(here)

    def _commit(self, position: Position) -> None:
        self.state.save(position)
        self.committed = position
        self._last_commit = self._clock()

    def _dead_letter(self, lines: list[DeadLine]) -> None:
        if lines:
            self.dead.write(lines)
            self.stats.dead_lettered += len(lines)

    # ---- delivering ----------------------------------------------------------------------------

    def _recover(self, stop: threading.Event) -> bool:
        """Post the batch journalled before a crash or a stop, before reading anything else."""
        pending = self.state.pending()
        if pending is None:
            return True
        done = self.committed
        if done is not None and done.file == pending.file and done.offset >= pending.end:
            self.state.clear_pending()  # the crash came after the position was saved
            return True
        log.info(
            "重新发送重启前未确认的批次 / posting again the batch %s (%s records, bytes %s-%s of %s) that "
            "was not acknowledged before the restart",
            pending.webhook_id, len(pending.spans), pending.start, pending.end, pending.path,
        )  # fmt: skip
        return self._deliver(Batch.from_pending(pending), stop)

    def _deliver(self, batch: Batch, stop: threading.Event) -> bool:
        """Post the batch (split on 413) until the portal has answered for all of it; False when
        stopped first (the journal stays, and the next start posts it)."""
        queue = deque([batch])
        while queue:
            current = queue.popleft()
            self._dead_letter(current.dead)
            current.dead = []
            self.state.journal(current.pending())
            answer = self._post(current, stop)
            if answer is None:
                return False
            if answer.outcome is Outcome.TOO_LARGE and len(current.records) > 1:
                first, second = current.split()
                queue.extendleft([second, first])
                self.stats.splits += 1
                log.warning(
                    "批次过大（413），拆分后重发 / the portal refused %s records (%s bytes) as too large: "
                    "posting them in two halves (lower batch_bytes to avoid this): %s",
                    len(current.records), current.size, answer.message,
                )  # fmt: skip
                self.state.clear_pending()
                continue
            self._settle(current, answer)
            self._commit(current.position_after)
            self.state.clear_pending()
        return True

    def _settle(self, batch: Batch, answer: Answer) -> None:
        """Count an answered batch, and dead-letter what of it the portal did not read."""
        refused: dict[int, str] = {r.index: f"{r.code}: {r.reason}" for r in answer.refusals}
        if answer.outcome is Outcome.DELIVERED:
            self.stats.batches += 1
            self.stats.records += len(batch.records)
            self.stats.duplicates += answer.duplicate
            self.stats.webhook_ids = [*self.stats.webhook_ids[-999:], batch.webhook_id]
            if answer.duplicate:
                log.info("门户已收到过批次 %s（重复，未重复入库）/ the portal had already stored batch %s",
                         batch.webhook_id, batch.webhook_id)  # fmt: skip
        else:  # REJECTED, or TOO_LARGE for a single record: nothing of it was read
            why = "too large for the portal" if answer.outcome is Outcome.TOO_LARGE else "not understood"
            log.error(
                "门户拒收批次 %s（%s）/ the portal refused batch %s (%s, %s): %s",
                batch.webhook_id, answer.status, batch.webhook_id, answer.status, why, answer.message,
            )  # fmt: skip
            refused = {i: refused.get(i, answer.message) for i in range(len(batch.records))}
        lines = [
            DeadLine(batch.path, *batch.spans[i], batch.records[i], reason, answer.status)
            for i, reason in sorted(refused.items())
            if 0 <= i < len(batch.records)
        ]
        self._dead_letter(lines)

    def _post(self, batch: Batch, stop: threading.Event) -> Answer | None:
        """Post until the portal answers something final; None when stopped while waiting."""
        c = self.config
        body, webhook_id = batch.body, batch.webhook_id
        attempt = 0
        while not stop.is_set():
            answer = self.poster.post(body, webhook_id)
            if answer.outcome not in (Outcome.RETRY, Outcome.REFUSED):
                if attempt:
                    log.info(
                        "门户已恢复 / the portal answered %s after %s failed attempt(s) (%.0f s)",
                        answer.status, attempt, self._clock() - (self.waiting_since or self._clock()),
                    )  # fmt: skip
                self.waiting_since = None
                return answer
            attempt += 1
            self.stats.failed_attempts += 1
            if self.waiting_since is None:
                self.waiting_since = self._clock()
            delay = backoff(
                attempt,
                initial=c.backoff_initial,
                maximum=c.backoff_max,
                jitter=self._random.random() if c.jitter else 0.0,
            )
            if answer.retry_after is not None:
                delay = min(answer.retry_after, c.retry_after_max)
            if answer.outcome is Outcome.REFUSED:
                log.error(
                    "门户拒绝了本告警源的推送（%s），请检查配置；%.1f 秒后重试 / the portal refused the post "
                    "(%s): check the source name, its secret or token and its allowed addresses; trying "
                    "again in %.1f s: %s",
                    answer.status, delay, answer.status, delay, answer.message,
                )  # fmt: skip
            else:
                log.warning(
                    "门户暂不可用，%.1f 秒后重试 / the portal is unavailable (%s): attempt %s failed, "
                    "trying again in %.1f s; reading is paused",
                    delay, answer.status or answer.message, attempt, delay,
                )  # fmt: skip
            if stop.wait(delay):
                break
        return None


def run(config: ShipperConfig, stop_event: threading.Event) -> Stats:
    """Ship ``config.file`` to the portal until ``stop_event`` is set (or, with ``config.once``,
    until the file is shipped to its end). What was not acknowledged is posted at the next start."""
    return Shipper(config).run(stop_event)
