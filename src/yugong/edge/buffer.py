"""Store-and-forward buffer: a durable local queue of edge batches between processing and uplink.

One SQLite file in WAL mode. Each entry is one whole edge batch (:data:`EDGE_SCHEMA`) stored as
a compressed Arrow IPC stream in a BLOB row, so the cost per append is one small transaction,
never one SQL row per sample. ``id`` (AUTOINCREMENT, never reused) is the delivery order.

Replay protocol for the uplink::

    for entry_id, table in buf.peek(10_000):   # oldest first, nothing removed
        publish(table)                          # wait for the broker's PUBACK
        buf.ack(entry_id)                       # removed; never returned again

After a crash or reconnect the uplink simply peeks again: it resumes at the oldest entry not
acked, so nothing is lost, and an acked entry is gone, so nothing is sent twice by the buffer.
Appends may run concurrently with peek/ack from other threads (one connection behind a lock;
each operation is one short transaction). The ``*_async`` methods run the same operations in
a worker thread for asyncio callers.

Disk budget: ``max_bytes`` bounds the stored payload. When an append would exceed it, policy
``drop_oldest`` deletes the oldest whole entries (the newest data wins; rows, batches and
bytes dropped are counted), ``refuse_new`` raises :class:`BufferFull` and counts the refusal.
Freed pages are reused by later appends, and the file is shrunk with incremental vacuum once
a large share of it is free (after a backlog drains), so it does not grow without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

import pyarrow as pa

from yugong.core.errors import FieldError, InvalidInput, Unavailable, YugongError
from yugong.edge.samples import EDGE_SCHEMA

__all__ = [
    "BufferCorrupt",
    "BufferDepth",
    "BufferFull",
    "BufferStats",
    "StoreForwardBuffer",
    "concat",
]

log = logging.getLogger(__name__)

Policy = Literal["drop_oldest", "refuse_new"]
Synchronous = Literal["full", "normal"]
OnCorrupt = Literal["raise", "move_aside"]

# Marks the file as ours ("YGSF"), so a foreign SQLite file is not mistaken for a buffer.
APPLICATION_ID = 0x59475346
FORMAT_VERSION = 1
# Shrink the file when this much is free and it is a large share of the file.
_RECLAIM_MIN_BYTES = 8 * 1024 * 1024
_RECLAIM_SHARE = 0.25

_COUNTERS = (
    "appended_rows",
    "appended_batches",
    "delivered_rows",
    "delivered_batches",
    "dropped_rows",
    "dropped_batches",
    "dropped_bytes",
    "refused_rows",
    "refused_batches",
)
_SCHEMA_SQL = """
CREATE TABLE entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    created_us INTEGER NOT NULL,
    crc INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE counters (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    appended_rows INTEGER NOT NULL DEFAULT 0,
    appended_batches INTEGER NOT NULL DEFAULT 0,
    delivered_rows INTEGER NOT NULL DEFAULT 0,
    delivered_batches INTEGER NOT NULL DEFAULT 0,
    dropped_rows INTEGER NOT NULL DEFAULT 0,
    dropped_batches INTEGER NOT NULL DEFAULT 0,
    dropped_bytes INTEGER NOT NULL DEFAULT 0,
    refused_rows INTEGER NOT NULL DEFAULT 0,
    refused_batches INTEGER NOT NULL DEFAULT 0
);
INSERT INTO counters (one) VALUES (1);
"""


class BufferFull(YugongError):
    """The disk budget does not allow this batch (policy ``refuse_new``, or a batch larger
    than the whole budget). Nothing stored was changed; the caller counts the refusal."""

    status = 507
    title = "Buffer full"


class BufferCorrupt(YugongError):
    """The buffer file (named in the message) is not a usable store-and-forward buffer."""

    status = 500
    title = "Buffer corrupt"


@dataclass(frozen=True)
class BufferDepth:
    """What is waiting to be delivered."""

    batches: int
    rows: int
    bytes: int


@dataclass(frozen=True)
class BufferStats:
    """Counters since the buffer file was created (they survive restarts) and current depth."""

    appended_rows: int
    appended_batches: int
    delivered_rows: int
    delivered_batches: int
    dropped_rows: int
    dropped_batches: int
    dropped_bytes: int
    refused_rows: int
    refused_batches: int
    depth: BufferDepth
    file_bytes: int


def _serialise(table: pa.Table, compression: str | None) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, EDGE_SCHEMA, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _conform(batch: pa.Table | pa.RecordBatch) -> pa.Table:
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    if not isinstance(table, pa.Table):
        raise InvalidInput(
            f"batch must be an Arrow table in EDGE_SCHEMA, got {type(batch).__name__}",
            [FieldError("batch", "not an Arrow table")],
        )
    if table.schema.equals(EDGE_SCHEMA):
        return table
    missing = [f.name for f in EDGE_SCHEMA if f.name not in table.column_names]
    if missing:
        raise InvalidInput(
            f"batch lacks EDGE_SCHEMA column(s): {', '.join(missing)}",
            [FieldError(f"batch.{name}", "missing column") for name in missing],
        )
    try:
        return table.select(EDGE_SCHEMA.names).cast(EDGE_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
        bad = [
            FieldError(f"batch.{f.name}", f"is {table.schema.field(f.name).type}, need {f.type}")
            for f in EDGE_SCHEMA
            if not table.schema.field(f.name).type.equals(f.type)
        ]
        raise InvalidInput(f"batch does not fit EDGE_SCHEMA: {exc}", bad) from exc


class StoreForwardBuffer:
    """Durable FIFO of edge batches with a disk budget; see the module docstring.

    ``synchronous="full"`` (default) fsyncs the WAL on every commit: an append that returned
    survives a kill -9 *and* a power cut, which industrial PCs do see. ``"normal"`` survives
    a process crash (the committed WAL is in the OS cache) but may lose the last commits on
    power loss; it saves one fsync per append. ``on_corrupt="move_aside"`` renames an unusable
    file to ``<name>.corrupt-<epoch>`` (logged) and starts a fresh buffer.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int,
        policy: Policy = "drop_oldest",
        synchronous: Synchronous = "full",
        compression: str | None = "zstd",
        on_corrupt: OnCorrupt = "raise",
    ) -> None:
        if max_bytes <= 0:
            raise InvalidInput(
                f"max_bytes must be positive, got {max_bytes}",
                [FieldError("max_bytes", "must be > 0")],
            )
        if policy not in ("drop_oldest", "refuse_new"):
            raise InvalidInput(
                f"unknown buffer policy {policy!r}; use drop_oldest or refuse_new",
                [FieldError("policy", "must be drop_oldest or refuse_new")],
            )
        if synchronous not in ("full", "normal"):
            raise InvalidInput(
                f"synchronous must be full or normal, got {synchronous!r}",
                [FieldError("synchronous", "must be full or normal")],
            )
        if compression is not None and not pa.Codec.is_available(compression):
            raise InvalidInput(
                f"Arrow IPC compression {compression!r} is not available",
                [FieldError("compression", "use zstd, lz4 or None")],
            )
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.policy: Policy = policy
        self._compression = compression
        self._lock = threading.Lock()
        try:
            self._con = self._open(synchronous)
        except BufferCorrupt:
            if on_corrupt != "move_aside":
                raise
            aside = self._move_aside()
            log.warning("buffer %s was unusable; moved aside to %s, starting fresh", path, aside)
            self._con = self._open(synchronous)
        row = self._con.execute(
            "SELECT count(*), coalesce(sum(rows), 0), coalesce(sum(bytes), 0) FROM entries"
        ).fetchone()
        self._batches, self._rows, self._bytes = int(row[0]), int(row[1]), int(row[2])
        seq = self._con.execute("SELECT seq FROM sqlite_sequence WHERE name = 'entries'").fetchone()
        self._last_id = int(seq[0]) if seq else 0
        self._closed = False

    # -- opening -------------------------------------------------------------------------

    def _corrupt(self, why: str) -> BufferCorrupt:
        return BufferCorrupt(
            f"{self.path}: not a usable store-and-forward buffer ({why}); "
            "move it aside or open with on_corrupt='move_aside' to start fresh",
            [FieldError("path", str(self.path))],
        )

    def _open(self, synchronous: Synchronous) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            con.execute("PRAGMA busy_timeout = 5000")
            tables = con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            app_id = con.execute("PRAGMA application_id").fetchone()[0]
            # No tables and no mark: new, or created by a run killed before its schema.
            fresh = tables == 0 and app_id == 0
            if fresh:
                # Must precede the first table, or the file can never shrink.
                con.execute("PRAGMA auto_vacuum = INCREMENTAL")
            else:
                if app_id != APPLICATION_ID:
                    raise self._corrupt("an SQLite file of another application")
                check = con.execute("PRAGMA quick_check").fetchall()
                if check != [("ok",)]:
                    raise self._corrupt("integrity check: " + "; ".join(r[0] for r in check[:3]))
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise self._corrupt(f"cannot use WAL journal (got {mode})")
            con.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            # Small facts that must survive a restart (the uplink's bdSeq); added to files
            # of this format that predate it.
            con.execute(
                "CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            # Keep the WAL file small after checkpoints instead of at its high-water mark.
            con.execute("PRAGMA journal_size_limit = 8388608")
            if fresh:
                # One transaction: the schema and its mark appear together or not at all.
                con.executescript(
                    f"BEGIN IMMEDIATE;{_SCHEMA_SQL}"
                    f"PRAGMA application_id = {APPLICATION_ID};"
                    f"PRAGMA user_version = {FORMAT_VERSION};COMMIT;"
                )
            else:
                version = con.execute("PRAGMA user_version").fetchone()[0]
                if version != FORMAT_VERSION:
                    raise self._corrupt(
                        f"format version {version}, this code reads {FORMAT_VERSION}"
                    )
        except sqlite3.OperationalError as exc:
            # Locked, unreadable, I/O error: the file may be fine, so never move it aside.
            con.close()
            raise Unavailable(f"{self.path}: cannot open the buffer ({exc})") from exc
        except sqlite3.DatabaseError as exc:
            con.close()
            raise self._corrupt(str(exc)) from exc
        except BufferCorrupt:
            con.close()
            raise
        return con

    def _move_aside(self) -> Path:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        os.replace(self.path, aside)
        for suffix in ("-wal", "-shm"):
            side = Path(str(self.path) + suffix)
            if side.exists():
                os.replace(side, Path(str(aside) + suffix))
        return aside

    # -- operations ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise YugongError(f"buffer {self.path} is closed")

    def append(self, batch: pa.Table | pa.RecordBatch) -> int:
        """Store one batch; return its id. The batch is durable when this returns."""
        table = _conform(batch)
        n = table.num_rows
        if n == 0:
            raise InvalidInput("empty batch: nothing to buffer", [FieldError("batch", "0 rows")])
        blob = _serialise(table, self._compression)
        size = len(blob)
        crc = zlib.crc32(blob)
        with self._lock:
            self._check_open()
            excess = self._bytes + size - self.max_bytes
            if size > self.max_bytes or (excess > 0 and self.policy == "refuse_new"):
                self._refuse(n)
                why = (
                    f"a batch of {size} bytes exceeds the whole budget of {self.max_bytes}"
                    if size > self.max_bytes
                    else f"budget of {self.max_bytes} bytes reached ({self._bytes} buffered)"
                )
                raise BufferFull(f"buffer {self.path} refused {n} rows: {why}")
            con = self._con
            con.execute("BEGIN IMMEDIATE")
            try:
                d_batches = d_rows = d_bytes = 0
                if excess > 0:
                    d_batches, d_rows, d_bytes = self._drop_oldest(excess)
                cur = con.execute(
                    "INSERT INTO entries (rows, bytes, created_us, crc, data) VALUES (?,?,?,?,?)",
                    (n, size, time.time_ns() // 1000, crc, blob),
                )
                con.execute(
                    "UPDATE counters SET appended_rows = appended_rows + ?,"
                    " appended_batches = appended_batches + 1,"
                    " dropped_rows = dropped_rows + ?, dropped_batches = dropped_batches + ?,"
                    " dropped_bytes = dropped_bytes + ?",
                    (n, d_rows, d_batches, d_bytes),
                )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            entry_id = int(cur.lastrowid or 0)
            self._last_id = entry_id
            self._batches += 1 - d_batches
            self._rows += n - d_rows
            self._bytes += size - d_bytes
        if d_batches:
            log.warning(
                "buffer %s over budget: dropped %d oldest rows (%d batches, %d bytes)",
                self.path,
                d_rows,
                d_batches,
                d_bytes,
            )
        return entry_id

    def _drop_oldest(self, excess: int) -> tuple[int, int, int]:
        """Delete the oldest whole entries freeing at least ``excess`` bytes (in a txn)."""
        batches = rows = freed = 0
        cutoff = 0
        for entry_id, r, b in self._con.execute("SELECT id, rows, bytes FROM entries ORDER BY id"):
            batches, rows, freed, cutoff = batches + 1, rows + r, freed + b, entry_id
            if freed >= excess:
                break
        self._con.execute("DELETE FROM entries WHERE id <= ?", (cutoff,))
        return batches, rows, freed

    def _refuse(self, rows: int) -> None:
        self._con.execute(
            "UPDATE counters SET refused_rows = refused_rows + ?,"
            " refused_batches = refused_batches + 1",
            (rows,),
        )

    def peek(self, max_rows: int, *, after_id: int = 0) -> list[tuple[int, pa.Table]]:
        """Oldest entries (id > ``after_id``) totalling at most ``max_rows`` rows, in order,
        without removing them. Always at least one entry when any is waiting, even if it
        alone has more rows, so an oversized batch cannot stall replay."""
        if max_rows <= 0:
            raise InvalidInput(
                f"max_rows must be positive, got {max_rows}", [FieldError("max_rows", "<= 0")]
            )
        picked: list[tuple[int, int, bytes]] = []
        with self._lock:
            self._check_open()
            total = 0
            for entry_id, rows, crc, data in self._con.execute(
                "SELECT id, rows, crc, data FROM entries WHERE id > ? ORDER BY id", (after_id,)
            ):
                if picked and total + rows > max_rows:
                    break
                picked.append((int(entry_id), int(crc), data))
                total += rows
                if total >= max_rows:
                    break
        return [(entry_id, self._decode(entry_id, crc, data)) for entry_id, crc, data in picked]

    def _decode(self, entry_id: int, crc: int, data: bytes) -> pa.Table:
        if zlib.crc32(data) != crc:
            raise self._corrupt(f"entry {entry_id} fails its checksum")
        try:
            return pa.ipc.open_stream(pa.py_buffer(data)).read_all()
        except (pa.ArrowInvalid, OSError) as exc:
            raise self._corrupt(f"entry {entry_id} is not a readable Arrow stream: {exc}") from exc

    def ack(self, up_to_id: int) -> int:
        """Remove every entry with id <= ``up_to_id`` (delivered); return the rows removed.

        Acking an id never handed out is refused: it could only drop data not yet sent."""
        with self._lock:
            self._check_open()
            if up_to_id > self._last_id:
                raise InvalidInput(
                    f"cannot ack entry {up_to_id}: the newest entry is {self._last_id}",
                    [FieldError("up_to_id", "beyond the newest entry")],
                )
            con = self._con
            con.execute("BEGIN IMMEDIATE")
            try:
                batches, rows, size = con.execute(
                    "SELECT count(*), coalesce(sum(rows), 0), coalesce(sum(bytes), 0)"
                    " FROM entries WHERE id <= ?",
                    (up_to_id,),
                ).fetchone()
                if batches:
                    con.execute("DELETE FROM entries WHERE id <= ?", (up_to_id,))
                    con.execute(
                        "UPDATE counters SET delivered_rows = delivered_rows + ?,"
                        " delivered_batches = delivered_batches + ?",
                        (rows, batches),
                    )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            self._batches -= batches
            self._rows -= rows
            self._bytes -= size
            if batches:
                self._maybe_reclaim()
        return int(rows)

    def _maybe_reclaim(self) -> None:
        """Give free pages back to the file system once a large share of the file is free.

        While a backlog is replayed, live appends reuse freed pages; shrinking only pays when
        much more was freed than is being refilled (a drained backlog)."""
        page_size = self._con.execute("PRAGMA page_size").fetchone()[0]
        free = self._con.execute("PRAGMA freelist_count").fetchone()[0] * page_size
        total = self._con.execute("PRAGMA page_count").fetchone()[0] * page_size
        if free >= _RECLAIM_MIN_BYTES and free >= _RECLAIM_SHARE * total:
            # executescript steps the pragma to completion; execute() frees one page only.
            self._con.executescript("PRAGMA incremental_vacuum;")

    def depth(self) -> BufferDepth:
        """Batches, rows and payload bytes waiting to be delivered."""
        with self._lock:
            return BufferDepth(self._batches, self._rows, self._bytes)

    def stats(self) -> BufferStats:
        with self._lock:
            self._check_open()
            row = self._con.execute(f"SELECT {', '.join(_COUNTERS)} FROM counters").fetchone()
            depth = BufferDepth(self._batches, self._rows, self._bytes)
        counts = {name: int(v) for name, v in zip(_COUNTERS, row, strict=True)}
        return BufferStats(**counts, depth=depth, file_bytes=self.file_bytes())

    def file_bytes(self) -> int:
        """Bytes the buffer occupies on disk (database plus its WAL)."""
        total = 0
        for p in (self.path, Path(str(self.path) + "-wal")):
            with contextlib.suppress(FileNotFoundError):
                total += p.stat().st_size
        return total

    def get_state(self, key: str) -> str | None:
        """A value kept with the buffer across restarts, or None."""
        with self._lock:
            self._check_open()
            row = self._con.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_state(self, key: str, value: str) -> None:
        """Keep ``value`` under ``key`` durably (committed before this returns)."""
        with self._lock:
            self._check_open()
            self._con.execute(
                "INSERT INTO state (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def ids(self) -> list[int]:
        """Ids of the waiting entries, oldest first (for inspection and tests)."""
        with self._lock:
            self._check_open()
            return [int(r[0]) for r in self._con.execute("SELECT id FROM entries ORDER BY id")]

    def close(self) -> None:
        """Checkpoint the WAL into the database and close; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._con.close()

    # -- asyncio -------------------------------------------------------------------------

    async def append_async(self, batch: pa.Table | pa.RecordBatch) -> int:
        return await asyncio.to_thread(self.append, batch)

    async def peek_async(self, max_rows: int, *, after_id: int = 0) -> list[tuple[int, pa.Table]]:
        return await asyncio.to_thread(self.peek, max_rows, after_id=after_id)

    async def ack_async(self, up_to_id: int) -> int:
        return await asyncio.to_thread(self.ack, up_to_id)

    def __enter__(self) -> StoreForwardBuffer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def concat(entries: Iterable[tuple[int, pa.Table]]) -> pa.Table:
    """One table of several peeked entries (in order), for an uplink that sends them together."""
    tables = [t for _, t in entries]
    return pa.concat_tables(tables) if tables else EDGE_SCHEMA.empty_table()
