"""Sample batches: the columnar unit every write path moves.

A sample is (series, timestamp, value, quality). A batch is an Arrow table with the
columns of :data:`SAMPLE_SCHEMA`; numbers and booleans go in ``value`` (booleans as 0/1),
text in ``text``. A bad-quality sample has neither. Series ids are allocated by the registry;
``tenant`` travels with every row so storage and retention can be kept per tenant.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from yugong.core.quality import Quality

SAMPLE_SCHEMA = pa.schema(
    [
        pa.field("tenant", pa.int32(), nullable=False),
        pa.field("series", pa.int32(), nullable=False),
        pa.field("ts", pa.int64(), nullable=False),  # epoch microseconds, UTC
        pa.field("value", pa.float64()),
        pa.field("text", pa.string()),
        pa.field("quality", pa.uint8(), nullable=False),
    ]
)

# Columns of query results (no tenant: the caller already chose the series).
POINT_SCHEMA = pa.schema(
    [
        pa.field("series", pa.int32(), nullable=False),
        pa.field("ts", pa.int64(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("text", pa.string()),
        pa.field("quality", pa.uint8(), nullable=False),
    ]
)


def make_batch(
    tenant: int | npt.ArrayLike,
    series: npt.ArrayLike,
    ts_us: npt.ArrayLike,
    value: npt.ArrayLike | None = None,
    *,
    text: Sequence[str | None] | pa.Array | None = None,
    quality: int | npt.ArrayLike = Quality.GOOD,
) -> pa.Table:
    """Build a batch from arrays (scalars broadcast). NaN values become null."""
    series_arr = np.asarray(series, dtype=np.int32)
    n = len(series_arr)
    ts_arr = np.broadcast_to(np.asarray(ts_us, dtype=np.int64), (n,))
    tenant_arr = np.broadcast_to(np.asarray(tenant, dtype=np.int32), (n,))
    quality_arr = np.broadcast_to(np.asarray(quality, dtype=np.uint8), (n,))
    if value is None:
        value_col = pa.nulls(n, pa.float64())
    else:
        v = np.broadcast_to(np.asarray(value, dtype=np.float64), (n,))
        value_col = pa.array(v, type=pa.float64(), from_pandas=True)  # NaN -> null
    text_col = pa.nulls(n, pa.string()) if text is None else pa.array(text, type=pa.string())
    return pa.Table.from_arrays(
        [
            pa.array(tenant_arr),
            pa.array(series_arr),
            pa.array(ts_arr),
            value_col,
            text_col,
            pa.array(quality_arr),
        ],
        schema=SAMPLE_SCHEMA,
    )


def empty_batch() -> pa.Table:
    return SAMPLE_SCHEMA.empty_table()


def conform(batch: pa.Table | pa.RecordBatch) -> pa.Table:
    """Cast a batch to :data:`SAMPLE_SCHEMA`; raises ``ValueError`` naming a missing column."""
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    missing = [
        f.name
        for f in SAMPLE_SCHEMA
        if f.name not in table.column_names and f.name not in ("value", "text")
    ]
    if missing:
        raise ValueError(f"sample batch lacks column(s): {', '.join(missing)}")
    n = table.num_rows
    cols = []
    for f in SAMPLE_SCHEMA:
        col = table.column(f.name) if f.name in table.column_names else pa.nulls(n, f.type)
        cols.append(col.cast(f.type) if col.type != f.type else col)
    return pa.Table.from_arrays(cols, schema=SAMPLE_SCHEMA)
