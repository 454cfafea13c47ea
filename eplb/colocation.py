"""Replicas of one expert on one GPU ("colocated replicas"): count, locate, repair.

Slot s of a layer lives on GPU s // (R / num_gpus). A second replica of an expert on a
GPU that already holds it adds nothing (the GPU serves the same tokens either way) and
costs an expert's memory; vLLM-Ascend cannot even address it (it maps each expert to
one slot per device). `colocated_replicas` counts such extra replicas per layer;
`repair` removes them by swapping slots between GPUs, which keeps every GPU's slot
count and every expert's replica count, and picks the swaps that change GPU loads least.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class RepairError(ValueError):
    """No swap of slots removes a colocated replica; the message names layer, device, expert."""


def _sorted_devices(phy2log: np.ndarray, num_gpus: int) -> np.ndarray:
    """Each GPU's experts in ascending order, [L, G, S]."""
    phy2log = np.asarray(phy2log)
    return np.sort(phy2log.reshape(phy2log.shape[0], num_gpus, -1), axis=2)


def colocated_replicas(phy2log: np.ndarray, num_gpus: int) -> np.ndarray:
    """Per layer, the replicas that sit on a GPU already holding the same expert, [L]."""
    devices = _sorted_devices(phy2log, num_gpus)
    return (devices[:, :, 1:] == devices[:, :, :-1]).sum(axis=(1, 2))


def first_colocated(phy2log: np.ndarray, num_gpus: int) -> tuple[int, int, int] | None:
    """(layer, device, expert) of the first expert held twice by one GPU, or None."""
    devices = _sorted_devices(phy2log, num_gpus)
    twice = np.argwhere(devices[:, :, 1:] == devices[:, :, :-1])
    if not len(twice):
        return None
    layer, device, index = (int(i) for i in twice[0])
    return layer, device, int(devices[layer, device, index])


@dataclass(frozen=True)
class Repair:
    """A placement without colocated replicas and how it was reached."""

    phy2log: np.ndarray
    swaps_per_layer: list[int]  # slot swaps made in each layer

    @property
    def swaps(self) -> int:
        """Slot swaps over all layers."""
        return sum(self.swaps_per_layer)


def repair(phy2log: np.ndarray, load: np.ndarray, num_gpus: int) -> Repair:
    """Swap slots between GPUs until no GPU holds an expert twice.

    `load` [L, E] is the window the placement was computed from: each swap is chosen
    so that the layer's most loaded GPU gets no heavier if possible, then so that
    the two GPUs' loads move least. Raises RepairError (layer, device, expert) when
    no repair exists (an expert with more replicas than GPUs) or no swap is found.
    """
    phy2log = np.array(phy2log, dtype=np.int64)
    load = np.asarray(load, dtype=np.float64)
    swaps = [_repair_layer(phy2log[layer], load[layer], num_gpus, layer)
             for layer in range(phy2log.shape[0])]
    return Repair(phy2log, swaps)


def _repair_layer(row: np.ndarray, load: np.ndarray, num_gpus: int, layer: int) -> int:
    """Repair one layer's slots in place; the number of swaps made."""
    experts = len(load)
    slots = len(row) // num_gpus
    counts = np.bincount(row, minlength=experts)
    weight = load / np.maximum(counts, 1)  # load of one replica; swaps keep the counts
    device = np.arange(len(row)) // slots
    swaps = 0
    while (found := first_colocated(row[None], num_gpus)) is not None:
        _, g, expert = found
        if counts[expert] > num_gpus:
            raise RepairError(
                f"layer {layer}, device {g}: expert {expert} has {counts[expert]} replicas "
                f"but there are only {num_gpus} devices, so some device must hold it twice")
        present = np.zeros((num_gpus, experts), dtype=bool)
        present[device, row] = True
        source = g * slots + int(np.flatnonzero(row[g * slots:(g + 1) * slots] == expert)[0])
        # a slot t on another GPU h can take the expert if h lacks it and g lacks row[t]
        usable = ~present[device, expert] & ~present[g, row]
        if not usable.any():
            raise RepairError(
                f"layer {layer}, device {g}: expert {expert} is held twice and no swap with "
                "another device removes it")
        gpu_load = np.bincount(device, weights=weight[row], minlength=num_gpus)
        delta = weight[row] - weight[expert]  # load g gains (h loses) by swapping with slot t
        new_peak = np.maximum(gpu_load[g] + delta, gpu_load[device] - delta)
        rise = np.maximum(new_peak - gpu_load.max(), 0.0)
        target = int(np.lexsort((np.abs(delta), rise, ~usable))[0])
        row[source], row[target] = row[target], row[source]
        swaps += 1
    return swaps
