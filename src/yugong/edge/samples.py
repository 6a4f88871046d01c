"""What connectors produce: edge sample batches, columnar like the platform's.

An edge batch is an Arrow table in :data:`EDGE_SCHEMA`: one row per point reading, named by
the gateway's device name and the thing-model property the point feeds. Numbers and booleans
go in ``value`` (booleans as 0/1), strings in ``text``; a point the connector could not read
is a row with BAD quality and no value (stored, never dropped, never invented).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from yugong.core.quality import Quality

EDGE_SCHEMA = pa.schema(
    [
        pa.field("device", pa.string(), nullable=False),
        pa.field("point", pa.string(), nullable=False),  # thing-model property identifier
        pa.field("ts", pa.int64(), nullable=False),  # epoch microseconds, UTC
        pa.field("value", pa.float64()),
        pa.field("text", pa.string()),
        pa.field("quality", pa.uint8(), nullable=False),
    ]
)


def edge_batch(
    device: str | Sequence[str],
    points: Sequence[str],
    ts_us: int | npt.ArrayLike,
    values: npt.ArrayLike | None = None,
    *,
    text: Sequence[str | None] | None = None,
    quality: int | npt.ArrayLike = Quality.GOOD,
) -> pa.Table:
    """Build a batch; scalars broadcast, NaN values become null."""
    n = len(points)
    devices = [device] * n if isinstance(device, str) else list(device)
    ts = np.broadcast_to(np.asarray(ts_us, dtype=np.int64), (n,))
    q = np.broadcast_to(np.asarray(quality, dtype=np.uint8), (n,))
    if values is None:
        value_col = pa.nulls(n, pa.float64())
    else:
        v = np.broadcast_to(np.asarray(values, dtype=np.float64), (n,))
        value_col = pa.array(v, type=pa.float64(), from_pandas=True)
    text_col = pa.nulls(n, pa.string()) if text is None else pa.array(text, type=pa.string())
    return pa.Table.from_arrays(
        [
            pa.array(devices, pa.string()),
            pa.array(list(points), pa.string()),
            pa.array(ts),
            value_col,
            text_col,
            pa.array(q),
        ],
        schema=EDGE_SCHEMA,
    )
