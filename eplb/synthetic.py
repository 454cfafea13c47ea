"""Deterministic synthetic expert-load traces, calibrated to real DeepSeek-V3 statistics.

Calibration targets (SGLang's published DeepSeek-V3/R1 expert statistics, see
README): per layer the hottest expert carries 5-8x the mean, the coefficient of
variation of expert loads is 0.75-0.95, and consecutive windows correlate
strongly but not perfectly; serving also shifts regime now and then (the mix
of prefill and decode work changes), which moves popularity abruptly.

Model, per layer: two popularity profiles (prefill-like and decode-like,
log-normal, correlated about 0.75), mixed with a weight that jumps to a new
value at random regime shifts; a slow AR(1) drift on log-popularity; and
token counts per step for `tokens_per_step * top_k` routed tokens with Poisson
noise (normal approximation: every expected count is large).
The same spec always gives the same trace.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of the synthetic trace (defaults: DeepSeek-V3 shape)."""

    steps: int = 2000
    layers: int = 58
    experts: int = 256
    tokens_per_step: int = 4096
    top_k: int = 8
    seed: int = 0
    popularity_sigma: float = 0.78
    profile_correlation: float = 0.75
    drift_sigma: float = 0.3
    drift_steps: float = 300.0
    shift_every_steps: float = 600.0


def generate(spec: SyntheticSpec = SyntheticSpec()) -> np.ndarray:
    """Return an int32 trace shaped (steps, layers, experts)."""
    rng = np.random.default_rng(spec.seed)
    shape = (spec.layers, spec.experts)
    prefill = rng.normal(0.0, spec.popularity_sigma, shape)
    independent = rng.normal(0.0, spec.popularity_sigma, shape)
    rho = spec.profile_correlation
    decode = rho * prefill + np.sqrt(1.0 - rho**2) * independent

    keep = np.exp(-1.0 / spec.drift_steps)
    innovation = spec.drift_sigma * np.sqrt(1.0 - keep**2)
    drift = rng.normal(0.0, spec.drift_sigma, shape)
    mix = rng.uniform(0.2, 0.8)
    shift_probability = 1.0 / spec.shift_every_steps
    routed = spec.tokens_per_step * spec.top_k

    trace = np.empty((spec.steps, *shape), dtype=np.int32)
    for step in range(spec.steps):
        if rng.random() < shift_probability:
            mix = rng.uniform(0.0, 1.0)
        drift = keep * drift + innovation * rng.normal(0.0, 1.0, shape)
        popularity = (mix * np.exp(prefill) + (1.0 - mix) * np.exp(decode)) * np.exp(drift)
        share = popularity / popularity.sum(axis=1, keepdims=True)
        expected = routed * share
        noise = rng.standard_normal(shape, dtype=np.float32) * np.sqrt(expected)
        trace[step] = np.maximum(np.rint(expected + noise), 0)
    return trace


def layer_statistics(loads: np.ndarray) -> dict[str, float]:
    """Median over layers of hottest/mean and of the coefficient of variation.

    `loads` is (layers, experts); layers with no load are ignored.
    """
    loads = np.asarray(loads, dtype=np.float64)
    loads = loads[loads.sum(axis=1) > 0]
    mean = loads.mean(axis=1)
    return {
        "max_over_mean": float(np.median(loads.max(axis=1) / mean)),
        "cv": float(np.median(loads.std(axis=1) / mean)),
    }


def window_correlation(windows: np.ndarray) -> np.ndarray:
    """Mean over layers of the Pearson correlation of consecutive windows."""
    w = np.asarray(windows, dtype=np.float64)
    a, b = w[:-1], w[1:]
    a = a - a.mean(axis=2, keepdims=True)
    b = b - b.mean(axis=2, keepdims=True)
    corr = (a * b).sum(2) / np.sqrt((a * a).sum(2) * (b * b).sum(2))
    return corr.mean(axis=1)
