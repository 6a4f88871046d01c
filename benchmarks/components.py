"""Component library speed against bare NumPy/SciPy doing the same computation, same run.

- ``envelope_ms``: ``vibration.envelope_spectrum`` on 1,000,000 samples (a bearing-fault
  signal: a 3 kHz resonance struck at 87 Hz, in noise) called as a component, input checks
  included; ``envelope_bare_ms``: ``scipy.signal.hilbert`` + ``numpy.fft.rfft`` of the same
  signal. ``envelope_band_ms`` / ``envelope_band_bare_ms``: the same with a 2–4 kHz band-pass
  (``sosfiltfilt``) first.
- ``cpk_ms``: ``spc.capability`` over 10,000 series of 1,000 samples in one batch call;
  ``cpk_bare_ms``: the same Cp/Cpk/Pp/Ppk with NumPy directly (moving-range sigma).

    python benchmarks/components.py [--samples 1000000] [--series 10000] [--length 1000]

Medians of repeated runs, in milliseconds, on one thread (BLAS/FFT workers pinned to 1).
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))

from _common import emit, median_ms, note  # noqa: E402
from yugong.platform.components import Catalog  # noqa: E402

FS = 51_200.0  # a common vibration sample rate, Hz


def bearing_signal(n: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FS
    carrier = np.sin(2 * np.pi * 3_000 * t)
    return (1 + 0.5 * np.cos(2 * np.pi * 87 * t)) * carrier + 0.2 * rng.standard_normal(n)


def bare_envelope(x: np.ndarray, band: tuple[float, float] | None) -> np.ndarray:
    import scipy.signal

    if band is not None:
        sos = scipy.signal.butter(4, band, "bandpass", fs=FS, output="sos")
        x = scipy.signal.sosfiltfilt(sos, x)
    env = np.abs(scipy.signal.hilbert(x))
    env -= env.mean()
    return np.abs(np.fft.rfft(env)) * 2 / len(env)


def bare_capability(x: np.ndarray, lsl: float, usl: float) -> dict[str, np.ndarray]:
    mean = x.mean(axis=-1)
    sigma_within = np.abs(np.diff(x, axis=-1)).mean(axis=-1) / 1.128
    sigma_overall = x.std(axis=-1, ddof=1)
    nearest = np.minimum(usl - mean, mean - lsl)
    return {
        "cp": (usl - lsl) / (6 * sigma_within),
        "cpk": nearest / (3 * sigma_within),
        "pp": (usl - lsl) / (6 * sigma_overall),
        "ppk": nearest / (3 * sigma_overall),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--length", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    catalog = Catalog.discover()
    figures: dict[str, Any] = {"benchmark": "components"}

    envelope = catalog.get("vibration.envelope_spectrum")
    x = bearing_signal(args.samples)
    out = envelope(x=x, sample_rate=FS)
    peak = out["frequency"][1:][np.argmax(out["amplitude"][1:])]
    note(f"envelope peak at {peak:.2f} Hz (fault at 87 Hz)")
    figures["envelope_samples"] = args.samples
    figures["envelope_ms"] = median_ms(lambda: envelope(x=x, sample_rate=FS), args.repeat)
    figures["envelope_bare_ms"] = median_ms(lambda: bare_envelope(x, None), args.repeat)
    banded: dict[str, Any] = {"x": x, "sample_rate": FS, "band_low": 2_000.0, "band_high": 4_000.0}
    figures["envelope_band_ms"] = median_ms(lambda: envelope(**banded), args.repeat)
    figures["envelope_band_bare_ms"] = median_ms(
        lambda: bare_envelope(x, (2_000.0, 4_000.0)), args.repeat
    )

    capability = catalog.get("spc.capability")
    rng = np.random.default_rng(11)
    batch = rng.normal(10.0, 0.1, size=(args.series, args.length))
    limits = {"lsl": 9.6, "usl": 10.5}
    got = capability(samples=batch, **limits)
    want = bare_capability(batch, **limits)
    for key in ("cp", "cpk", "pp", "ppk"):
        assert np.allclose(got[key], want[key]), f"spc.capability {key} differs from NumPy"
    figures["cpk_series"] = args.series
    figures["cpk_length"] = args.length
    figures["cpk_ms"] = median_ms(lambda: capability(samples=batch, **limits), args.repeat)
    figures["cpk_bare_ms"] = median_ms(lambda: bare_capability(batch, **limits), args.repeat)

    figures["envelope_ratio"] = round(figures["envelope_ms"] / figures["envelope_bare_ms"], 2)
    figures["cpk_ratio"] = round(figures["cpk_ms"] / figures["cpk_bare_ms"], 2)
    figures["targets"] = {"envelope_ms": 200, "cpk_ms": 1000}
    emit(figures)


if __name__ == "__main__":
    main()
