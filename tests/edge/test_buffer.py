"""Store-and-forward buffer: order, ack, budget, concurrency, kill -9, corrupt files."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from yugong.core.errors import InvalidInput
from yugong.edge.buffer import BufferCorrupt, BufferFull, StoreForwardBuffer, concat
from yugong.edge.samples import EDGE_SCHEMA, edge_batch

ROWS = 100
T0 = 1_700_000_000_000_000


def batch(seq: int, rows: int = ROWS) -> pa.Table:
    """Batch number ``seq``: its sequence is recoverable from every row (ts and value)."""
    i = np.arange(rows)
    return edge_batch(
        "pump-01",
        [f"p{k % 10}" for k in range(rows)],
        T0 + seq * 1_000_000 + i,
        np.full(rows, float(seq)),
    )


def seqs(tables: list[pa.Table]) -> list[int]:
    return [int(t.column("value")[0].as_py()) for t in tables]


def test_order_ack_and_no_duplicate_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "buf.db"
    buf = StoreForwardBuffer(path, max_bytes=10**8)
    ids = [buf.append(batch(s)) for s in range(10)]
    assert ids == sorted(ids) and len(set(ids)) == 10
    got = buf.peek(350)
    assert [i for i, _ in got] == ids[:3]  # whole entries only, oldest first
    assert [t.equals(batch(s)) for s, (_, t) in enumerate(got)] == [True] * 3
    assert buf.peek(350) == got  # peek removes nothing
    assert buf.ack(ids[2]) == 3 * ROWS
    buf.close()

    buf = StoreForwardBuffer(path, max_bytes=10**8)
    assert buf.ids() == ids[3:]
    assert seqs([t for _, t in buf.peek(10**6)]) == list(range(3, 10))
    new = buf.append(batch(10))
    assert new > ids[-1]  # ids never reused, so an acked id cannot come back
    buf.ack(new)
    assert buf.peek(10) == []
    buf.close()

    buf = StoreForwardBuffer(path, max_bytes=10**8)
    assert buf.append(batch(11)) > new
    stats = buf.stats()
    assert (stats.appended_batches, stats.delivered_batches) == (12, 11)
    assert (stats.appended_rows, stats.delivered_rows) == (12 * ROWS, 11 * ROWS)
    assert stats.depth.rows == ROWS
    buf.close()


def test_peek_window_and_oversized_entry(tmp_path: Path) -> None:
    with StoreForwardBuffer(tmp_path / "b.db", max_bytes=10**8) as buf:
        a = buf.append(batch(0, rows=500))
        b = buf.append(batch(1))
        c = buf.append(batch(2))
        # An entry larger than max_rows still comes out alone, so replay cannot stall.
        assert [i for i, _ in buf.peek(10)] == [a]
        # after_id pages past entries in flight without acking them.
        assert [i for i, _ in buf.peek(1000, after_id=a)] == [b, c]
        assert concat(buf.peek(1000, after_id=a)).num_rows == 2 * ROWS
        assert concat([]).schema.equals(EDGE_SCHEMA)
        with pytest.raises(InvalidInput, match="max_rows"):
            buf.peek(0)


def test_budget_drop_oldest_counts_exactly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    probe = StoreForwardBuffer(tmp_path / "probe.db", max_bytes=10**8)
    probe.append(batch(0))
    size = probe.depth().bytes
    probe.close()
    # Identical content serialises to identical size; room for 3.5 entries keeps 3.
    buf = StoreForwardBuffer(tmp_path / "b.db", max_bytes=size * 7 // 2)
    same = batch(0)
    with caplog.at_level(logging.WARNING, logger="yugong.edge.buffer"):
        ids = [buf.append(same) for _ in range(10)]
    assert buf.ids() == ids[-3:]  # the newest data wins
    stats = buf.stats()
    assert (stats.dropped_batches, stats.dropped_rows, stats.dropped_bytes) == (
        7,
        7 * ROWS,
        7 * size,
    )
    assert stats.depth.bytes == 3 * size <= buf.max_bytes
    assert stats.appended_rows == stats.dropped_rows + stats.depth.rows
    assert "dropped" in caplog.text
    buf.close()
    # Dropped counts survive a restart.
    with StoreForwardBuffer(tmp_path / "b.db", max_bytes=size * 7 // 2) as again:
        assert again.stats().dropped_rows == 7 * ROWS
        assert again.depth().bytes == 3 * size


def test_refuse_new_policy(tmp_path: Path) -> None:
    buf = StoreForwardBuffer(tmp_path / "b.db", max_bytes=10**8, policy="refuse_new")
    first = buf.append(batch(0))
    size = buf.depth().bytes
    buf.close()
    buf = StoreForwardBuffer(tmp_path / "b.db", max_bytes=size * 2, policy="refuse_new")
    second = buf.append(batch(0))
    with pytest.raises(BufferFull, match="budget") as err:
        buf.append(batch(0))
    assert str(tmp_path / "b.db") in err.value.detail
    assert buf.ids() == [first, second]  # nothing stored was touched
    stats = buf.stats()
    assert (stats.refused_batches, stats.refused_rows, stats.dropped_rows) == (1, ROWS, 0)
    buf.ack(second)
    buf.append(batch(1))  # room again
    buf.close()


def test_batch_larger_than_budget_is_refused(tmp_path: Path) -> None:
    with StoreForwardBuffer(tmp_path / "b.db", max_bytes=100) as buf:
        with pytest.raises(BufferFull, match="exceeds the whole budget"):
            buf.append(batch(0))
        assert buf.stats().refused_batches == 1


def test_bad_input_is_named(tmp_path: Path) -> None:
    with StoreForwardBuffer(tmp_path / "b.db", max_bytes=10**6) as buf:
        with pytest.raises(InvalidInput, match="quality") as err:
            buf.append(batch(0).drop_columns(["quality"]))
        assert err.value.errors[0].loc == "batch.quality"
        wrong = batch(0).set_column(2, "ts", pa.array(["x"] * ROWS))
        with pytest.raises(InvalidInput) as err:
            buf.append(wrong)
        assert [e.loc for e in err.value.errors] == ["batch.ts"]
        with pytest.raises(InvalidInput, match="empty"):
            buf.append(EDGE_SCHEMA.empty_table())
        # A compatible batch (columns reordered, record batch) is conformed, not refused.
        rb = batch(1).select(list(reversed(EDGE_SCHEMA.names))).to_batches()[0]
        got_id = buf.append(rb)
        assert buf.peek(10**3)[0][1].equals(batch(1)) and buf.ids() == [got_id]
        with pytest.raises(InvalidInput, match="newest entry"):
            buf.ack(got_id + 1)
        assert buf.ids() == [got_id]
    with pytest.raises(InvalidInput, match="policy"):
        StoreForwardBuffer(tmp_path / "c.db", max_bytes=1, policy="keep_all")  # type: ignore[arg-type]


def test_concurrent_append_while_replaying(tmp_path: Path) -> None:
    buf = StoreForwardBuffer(tmp_path / "b.db", max_bytes=10**9, synchronous="normal")
    backlog = 200
    live = 300
    for s in range(backlog):
        buf.append(batch(s))
    delivered: list[int] = []
    done = threading.Event()
    errors: list[BaseException] = []

    def producer() -> None:
        try:
            for s in range(backlog, backlog + live):
                buf.append(batch(s))
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    def consumer() -> None:
        try:
            while True:
                entries = buf.peek(7 * ROWS)
                if not entries:
                    if done.is_set() and buf.depth().batches == 0:
                        return
                    time.sleep(0.001)
                    continue
                delivered.extend(seqs([t for _, t in entries]))
                buf.ack(entries[-1][0])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=producer), threading.Thread(target=consumer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    # Every batch exactly once and in order: nothing lost, nothing duplicated.
    assert delivered == list(range(backlog + live))
    stats = buf.stats()
    assert stats.delivered_rows == stats.appended_rows == (backlog + live) * ROWS
    buf.close()


async def test_async_wrappers(tmp_path: Path) -> None:
    with StoreForwardBuffer(tmp_path / "b.db", max_bytes=10**7) as buf:
        ids = [await buf.append_async(batch(s)) for s in range(3)]
        got = await buf.peek_async(10 * ROWS)
        assert [i for i, _ in got] == ids
        assert await buf.ack_async(ids[1]) == 2 * ROWS
        assert [i for i, _ in await buf.peek_async(10, after_id=0)] == ids[2:]


def test_file_shrinks_after_backlog_drains(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    noisy = edge_batch(
        "meter-7", [f"p{k}" for k in range(5000)], T0 + np.arange(5000), rng.random(5000)
    )
    with StoreForwardBuffer(tmp_path / "b.db", max_bytes=10**9, compression=None) as buf:
        for _ in range(150):  # ~30 MB of backlog
            last = buf.append(noisy)
        full = buf.file_bytes()
        buf.ack(last)
        assert buf.depth().bytes == 0
        with sqlite3.connect(tmp_path / "b.db") as side:
            pages = side.execute("PRAGMA page_count").fetchone()[0]
            page_size = side.execute("PRAGMA page_size").fetchone()[0]
        assert pages * page_size < full // 4  # free pages given back, not kept forever


CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from yugong.edge.buffer import StoreForwardBuffer
    from yugong.edge.samples import edge_batch

    buf = StoreForwardBuffer(sys.argv[1], max_bytes=10**9)
    seq = 0
    while True:
        i = np.arange(100)
        t = edge_batch("pump-01", [f"p{k % 10}" for k in range(100)],
                       1_700_000_000_000_000 + seq * 1_000_000 + i, np.full(100, float(seq)))
        entry = buf.append(t)
        print(entry, seq, flush=True)
        seq += 1
    """
)


def test_kill_9_loses_nothing_that_was_appended(tmp_path: Path) -> None:
    path = tmp_path / "buf.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    printed: dict[int, int] = {}
    try:
        for line in proc.stdout:
            entry, seq = (int(x) for x in line.split())
            printed[entry] = seq
            if len(printed) >= 150:
                break
    finally:
        proc.send_signal(signal.SIGKILL)  # mid-stream: the child is appending right now
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    with StoreForwardBuffer(path, max_bytes=10**9) as buf:
        stored = dict(buf.peek(10**9))
        assert set(printed) <= set(stored)
        for entry, seq in printed.items():
            assert stored[entry].equals(batch(seq)), f"entry {entry} altered"
        # Nothing beyond what was appended appeared, and order follows the sequence.
        assert seqs(list(stored.values())) == list(range(len(stored)))
        resumed = buf.append(batch(len(stored)))
        assert resumed > max(stored)


def test_garbage_file_gives_clear_error_then_move_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "buf.db"
    path.write_bytes(b"this is not a database at all " * 200)
    with pytest.raises(BufferCorrupt) as err:
        StoreForwardBuffer(path, max_bytes=10**6)
    assert str(path) in err.value.detail and "move_aside" in err.value.detail
    assert path.read_bytes().startswith(b"this is not")  # untouched by the failed open
    with caplog.at_level(logging.WARNING, logger="yugong.edge.buffer"):
        buf = StoreForwardBuffer(path, max_bytes=10**6, on_corrupt="move_aside")
    assert "moved aside" in caplog.text
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("buf.db.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")
    assert buf.peek(10) == []
    buf.append(batch(0))
    buf.close()


def test_foreign_sqlite_file_is_not_taken_for_a_buffer(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE t (x)")
    with pytest.raises(BufferCorrupt, match="another application"):
        StoreForwardBuffer(path, max_bytes=10**6)


def test_damaged_entry_is_reported_by_id(tmp_path: Path) -> None:
    path = tmp_path / "buf.db"
    with StoreForwardBuffer(path, max_bytes=10**6) as buf:
        good = buf.append(batch(0))
        bad = buf.append(batch(1))
    with sqlite3.connect(path) as con:
        con.execute("UPDATE entries SET data = zeroblob(length(data)) WHERE id = ?", (bad,))
    with StoreForwardBuffer(path, max_bytes=10**6) as buf:
        assert [i for i, _ in buf.peek(ROWS)] == [good]
        with pytest.raises(BufferCorrupt, match=f"entry {bad} fails its checksum"):
            buf.peek(10**6)
