"""The newest sample of every series, held in memory as sorted NumPy columns.

Merging a write batch costs one stable sort of the batch and a binary search per series it
touches; answering ``latest`` for thousands of series is a binary search. The owner persists
:meth:`LatestIndex.snapshot` and rebuilds from it plus the not yet compacted rows on open.
"""

from __future__ import annotations

import threading

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from yugong.core.samples import POINT_SCHEMA

LATEST_SCHEMA = pa.schema(
    [
        pa.field("series", pa.int32(), nullable=False),
        pa.field("tenant", pa.int32(), nullable=False),
        pa.field("ts", pa.int64(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("text", pa.string()),
        pa.field("quality", pa.uint8(), nullable=False),
        pa.field("seq", pa.int64(), nullable=False),
    ]
)


def newest_rows(series: npt.NDArray[np.int32], ts: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
    """Row index of the newest sample per series in a batch: highest ts, and of equal ts the
    later row (stable sorts keep row order, so the last of each run is the latest write)."""
    order = np.argsort(ts, kind="stable")
    order = order[np.argsort(series[order], kind="stable")]
    s = series[order]
    last = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    return order[last]


class LatestIndex:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._load(LATEST_SCHEMA.empty_table())

    def _load(self, table: pa.Table) -> None:
        # Copies: Arrow buffers are read-only and these columns are updated in place.
        def col(name: str) -> npt.NDArray[np.generic]:
            return np.array(table.column(name).to_numpy(zero_copy_only=False))

        self._series = col("series").astype(np.int32)
        self._tenant = col("tenant").astype(np.int32)
        self._ts = col("ts").astype(np.int64)
        self._seq = col("seq").astype(np.int64)
        self._value = np.nan_to_num(col("value").astype(np.float64))
        self._has_value = np.array(
            table.column("value").is_valid().to_numpy(zero_copy_only=False), dtype=bool
        )
        self._text = np.empty(table.num_rows, dtype=object)
        self._text[:] = table.column("text").to_pylist()
        self._quality = col("quality").astype(np.uint8)

    def merge(self, rows: pa.Table) -> None:
        """Merge candidate rows (LATEST_SCHEMA, at most one per series): newer ts wins, equal
        ts the higher seq."""
        if rows.num_rows == 0:
            return
        rows = rows.sort_by("series")
        with self._lock:
            pos = np.searchsorted(self._series, rows.column("series").to_numpy())
            pos_c = np.minimum(pos, max(len(self._series) - 1, 0))
            found = (pos < len(self._series)) & (
                self._series[pos_c] == rows.column("series").to_numpy()
                if len(self._series)
                else np.zeros(len(pos), bool)
            )
            if not found.all():
                current = self.snapshot_locked()
                fresh = rows.filter(pa.array(~found))
                merged = pa.concat_tables([current, fresh.cast(LATEST_SCHEMA)]).sort_by("series")
                self._load(merged)
                rows = rows.filter(pa.array(found))
                if rows.num_rows == 0:
                    return
                pos = np.searchsorted(self._series, rows.column("series").to_numpy())
            ts = rows.column("ts").to_numpy()
            seq = rows.column("seq").to_numpy()
            newer = (ts > self._ts[pos]) | ((ts == self._ts[pos]) & (seq > self._seq[pos]))
            at = pos[newer]
            take = np.flatnonzero(newer)
            self._tenant[at] = rows.column("tenant").to_numpy()[take]
            self._ts[at] = ts[take]
            self._seq[at] = seq[take]
            val = rows.column("value")
            self._value[at] = val.to_numpy(zero_copy_only=False).astype(np.float64)[take]
            self._has_value[at] = val.is_valid().to_numpy(zero_copy_only=False)[take]
            texts = np.empty(rows.num_rows, dtype=object)
            texts[:] = rows.column("text").to_pylist()
            self._text[at] = texts[take]
            self._quality[at] = rows.column("quality").to_numpy()[take]

    def get(self, ids: npt.NDArray[np.int32]) -> pa.Table:
        with self._lock:
            if not len(self._series):
                return POINT_SCHEMA.empty_table()
            pos = np.minimum(np.searchsorted(self._series, ids), len(self._series) - 1)
            pos = pos[self._series[pos] == ids]
            return pa.Table.from_arrays(
                [
                    pa.array(self._series[pos]),
                    pa.array(self._ts[pos]),
                    pa.array(self._value[pos], pa.float64(), mask=~self._has_value[pos]),
                    pa.array(self._text[pos].tolist(), pa.string()),
                    pa.array(self._quality[pos]),
                ],
                schema=POINT_SCHEMA,
            )

    def tenants(self, ids: npt.NDArray[np.int32]) -> list[int]:
        with self._lock:
            if not len(self._series):
                return []
            pos = np.minimum(np.searchsorted(self._series, ids), len(self._series) - 1)
            pos = pos[self._series[pos] == ids]
            return [int(t) for t in np.unique(self._tenant[pos])]

    def remove(
        self,
        tenant: int,
        *,
        series: npt.NDArray[np.int32] | None = None,
        before_us: int | None = None,
    ) -> None:
        with self._lock:
            drop = self._tenant == tenant
            if series is not None:
                drop &= np.isin(self._series, series)
            if before_us is not None:
                drop &= self._ts < before_us
            if drop.any():
                self._load(self.snapshot_locked().filter(pa.array(~drop)))

    def snapshot(self) -> pa.Table:
        with self._lock:
            return self.snapshot_locked()

    def snapshot_locked(self) -> pa.Table:
        return pa.Table.from_arrays(
            [
                pa.array(self._series, pa.int32()),
                pa.array(self._tenant, pa.int32()),
                pa.array(self._ts, pa.int64()),
                pa.array(self._value, pa.float64(), mask=~self._has_value),
                pa.array(self._text.tolist(), pa.string()),
                pa.array(self._quality, pa.uint8()),
                pa.array(self._seq, pa.int64()),
            ],
            schema=LATEST_SCHEMA,
        )

    def replace(self, table: pa.Table) -> None:
        with self._lock:
            self._load(table.cast(LATEST_SCHEMA).sort_by("series"))
