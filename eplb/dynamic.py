"""Trigger policies: at which window boundaries, and for which layers, the deployment
asks the candidate for a new placement.

At boundary i (the end of window i) the trigger sees only windows <= i. It answers
with a mask of the layers to (re)place from window i:

- before boundary `warmup_windows`: none (the windows are only observed);
- while nothing is deployed (the first boundary after warm-up): all layers;
- `every`: all layers at boundaries warmup_windows + k * every_windows;
- `threshold`: all layers when balancedness_gpu of the deployed placement on window i
  is below `threshold`;
- `similarity`: the layers whose load in window i has a cosine similarity below
  `similarity` with the load they were last placed from.
"""

from __future__ import annotations

import numpy as np

from eplb.config import Rebalance


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of [L, E] loads; 1 for two empty rows, 0 for one."""
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    both_empty = (~a.any(axis=1) & ~b.any(axis=1)).astype(np.float64)
    return np.divide((a * b).sum(axis=1), norms, out=both_empty, where=norms > 0)


class Trigger:
    """One scenario's trigger; remembers what each layer was last placed from."""

    def __init__(self, spec: Rebalance, layers: int):
        self.spec = spec
        self.layers = layers
        self.placed_from: np.ndarray | None = None  # [L, E] load of each layer's placement

    @property
    def needs_balance(self) -> bool:
        """Whether `due` looks at the deployed placement's balancedness."""
        return self.spec.policy == "threshold"

    def due(self, boundary: int, window: np.ndarray, balance: float | None) -> np.ndarray:
        """Layers to re-place at `boundary`, given its window [L, E] and balancedness_gpu
        of the deployed placement on that window (None while nothing is deployed)."""
        spec, none = self.spec, np.zeros(self.layers, dtype=bool)
        if boundary < spec.warmup_windows:
            return none
        if self.placed_from is None:
            return ~none
        if spec.policy == "every":
            fire = (boundary - spec.warmup_windows) % spec.every_windows == 0
            return ~none if fire else none
        if spec.policy == "threshold":
            return ~none if balance < spec.threshold else none
        return cosine(window, self.placed_from) < spec.similarity

    def installed(self, window: np.ndarray, layers: np.ndarray) -> None:
        """Record that `layers` (a mask) now run a placement computed from `window`."""
        if self.placed_from is None:
            self.placed_from = np.array(window, dtype=np.float64)
        else:
            self.placed_from[layers] = window[layers]
