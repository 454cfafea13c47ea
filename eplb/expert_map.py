"""Static expert maps in vLLM-Ascend's JSON format: export, check, import, score.

    {"moe_layer_count": L,
     "layer_list": [{"layer_id": l, "device_count": G,
                     "device_list": [{"device_id": d, "device_expert": [expert ids]}]}]}

`device_expert` lists the logical experts on a device in slot order, so device d of
layer l holds slots d*S .. d*S+S-1 of phy2log[l] (S slots per device, R = G * S).
A map is checked before use; every problem is reported with its location
(layer_list[i] / layer_id, device_list[j] / device_id, device_expert[k]).
vLLM-Ascend builds each device's local map as expert_map[device_expert] = arange(S),
so an expert listed twice on one device leaves a slot unreachable: such maps are
neither written nor accepted (eplb/colocation.py repairs the placement first).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from eplb import colocation, placement
from eplb.calls import ask_placement, candidate_session, observe_window
from eplb.config import TaskConfig
from eplb.placement import Scenario
from evolve.atomic import write_json

MAX_REPORTED = 20  # problems listed in one MapError


class MapError(ValueError):
    """The expert map is malformed or does not fit the task; the message says where."""


def placement_to_map(phy2log: np.ndarray, num_gpus: int) -> dict:
    """An expert map from phy2log [L, R]: R / num_gpus consecutive slots per device."""
    phy2log = np.asarray(phy2log)
    layers, replicas = phy2log.shape
    if num_gpus <= 0 or replicas % num_gpus:
        raise MapError(f"{replicas} slots do not split evenly over {num_gpus} devices")
    found = colocation.first_colocated(phy2log, num_gpus)
    if found is not None:
        layer, device, expert = found
        raise MapError(f"layer {layer}, device {device} holds expert {expert} more than once: "
                       "vLLM-Ascend cannot address the second replica (repair the placement "
                       "with eplb.colocation.repair first)")
    devices = phy2log.reshape(layers, num_gpus, replicas // num_gpus).tolist()
    return {"moe_layer_count": layers, "layer_list": [
        {"layer_id": layer, "device_count": num_gpus,
         "device_list": [{"device_id": d, "device_expert": experts}
                         for d, experts in enumerate(devices[layer])]}
        for layer in range(layers)]}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _field(item, key: str, kind: type, where: str, problems: list[str]):
    """item[key] if item is a mapping holding a value of `kind`; else record why not."""
    if not isinstance(item, dict):
        problems.append(f"{where}: expected an object, got {type(item).__name__}")
        return None
    if key not in item:
        problems.append(f"{where}: missing key '{key}'")
        return None
    value = item[key]
    if not (_is_int(value) if kind is int else isinstance(value, kind)):
        problems.append(f"{where}: '{key}' must be {kind.__name__}, got "
                        f"{type(value).__name__} {value!r:.40}")
        return None
    return value


def _check_layer(entry, where: str, experts: int, num_gpus: int,
                 problems: list[str]) -> list[tuple[int, list[int]]] | None:
    """(index in device_list, experts) of each device by device_id, or None if broken."""
    count = _field(entry, "device_count", int, where, problems)
    devices = _field(entry, "device_list", list, where, problems)
    if devices is None:
        return None
    if count is not None and count != len(devices):
        problems.append(f"{where}: device_count {count} but device_list has {len(devices)} "
                        "devices")
    if len(devices) != num_gpus:
        problems.append(f"{where}: {len(devices)} devices, but the scenario has {num_gpus} "
                        "GPUs")
    by_id: dict[int, tuple[int, list[int]]] = {}
    ok = True
    for j, device in enumerate(devices):
        at = f"{where}, device_list[{j}]"
        device_id = _field(device, "device_id", int, at, problems)
        listed = _field(device, "device_expert", list, at, problems)
        if device_id is None or listed is None:
            ok = False
            continue
        at = f"{where}, device_list[{j}] (device_id {device_id})"
        if not 0 <= device_id < len(devices):
            problems.append(f"{at}: device_id outside [0, {len(devices)})")
            ok = False
        elif device_id in by_id:
            problems.append(f"{at}: device_id {device_id} appears twice in the layer")
            ok = False
        seen: dict[int, int] = {}
        for k, expert in enumerate(listed):
            known = _is_int(expert) and 0 <= expert < experts
            if known and expert in seen:
                problems.append(f"{at}, device_expert[{k}]: expert {expert} is already at "
                                f"device_expert[{seen[expert]}]; vLLM-Ascend maps an expert to "
                                "one slot per device, so this slot would be unreachable")
            elif known:
                seen[expert] = k
            if not _is_int(expert):
                problems.append(f"{at}, device_expert[{k}]: expert id {expert!r:.40} is not "
                                "an integer")
                ok = False
            elif not 0 <= expert < experts:
                problems.append(f"{at}, device_expert[{k}]: unknown expert {expert} "
                                f"(ids are 0..{experts - 1})")
                ok = False
        by_id[device_id] = j, listed
    if not ok or len(devices) != num_gpus:
        return None
    held = set().union(*(listed for _, listed in by_id.values()))
    missing = [e for e in range(experts) if e not in held]
    if missing:
        problems.append(f"{where}: expert {missing[0]} is on no device"
                        + (f" ({len(missing)} experts missing)" if len(missing) > 1 else ""))
        return None
    return [by_id[d] for d in range(num_gpus)]


def check_map(data, experts: int, scenario: Scenario) -> list[list[list[int]]]:
    """Check a map against E experts and the scenario's GPUs; raise MapError if broken.

    Returns the experts of every device: [layer_id][device_id] -> list of expert ids.
    """
    problems: list[str] = []
    count = _field(data, "moe_layer_count", int, "map", problems)
    layer_list = _field(data, "layer_list", list, "map", problems)
    if layer_list is None:
        _raise(problems)
    if count is not None and count != len(layer_list):
        problems.append(f"map: moe_layer_count {count} but layer_list has "
                        f"{len(layer_list)} layers")
    total = len(layer_list) if count is None else count  # layer ids are 0..total-1
    layers: dict[int, list[tuple[int, list[int]]] | None] = {}
    positions: dict[int, int] = {}  # layer_id -> index in layer_list
    for i, entry in enumerate(layer_list):
        layer_id = _field(entry, "layer_id", int, f"layer_list[{i}]", problems)
        where = f"layer_list[{i}]" + ("" if layer_id is None else f" (layer_id {layer_id})")
        if layer_id is not None and not 0 <= layer_id < total:
            problems.append(f"{where}: layer_id outside [0, {total})")
        elif layer_id in layers:
            problems.append(f"{where}: layer_id {layer_id} appears twice")
        devices = _check_layer(entry, where, experts, scenario.num_gpus, problems)
        if layer_id is not None and layer_id not in layers:
            layers[layer_id], positions[layer_id] = devices, i
    missing = [lid for lid in range(total) if lid not in layers]
    if missing:
        problems.append(f"map: layer_id {missing[0]} is missing (layer ids must be "
                        f"0..{total - 1}, each once)")
    if not layer_list:
        problems.append("map: layer_list is empty")
    if problems:
        _raise(problems)
    size = len(layers[0][0][1])
    for lid in range(total):
        for d, (j, on_device) in enumerate(layers[lid]):
            if len(on_device) != size:
                _raise([f"layer_list[{positions[lid]}] (layer_id {lid}), device_list[{j}] "
                        f"(device_id {d}): {len(on_device)} experts, but layer_id 0, "
                        f"device_id 0 has {size}: every device needs the same number of slots"])
    return [[on_device for _, on_device in layers[lid]] for lid in range(total)]


def _raise(problems: list[str]):
    shown = problems[:MAX_REPORTED]
    more = len(problems) - len(shown)
    text = "\n  ".join(shown) + (f"\n  ... and {more} more" if more else "")
    raise MapError(f"invalid expert map:\n  {text}")


def map_to_placement(data: dict, experts: int, scenario: Scenario) -> np.ndarray:
    """phy2log [L, R] of a checked map (R = num_gpus * slots per device)."""
    devices = check_map(data, experts, scenario)
    return np.array([[e for on_device in layer for e in on_device] for layer in devices],
                    dtype=np.int64)


def load_map(path: str | os.PathLike) -> dict:
    """Read an expert map's JSON (unchecked: see check_map); MapError if unreadable."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise MapError(f"expert map not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MapError(f"expert map {path} cannot be read: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MapError(f"expert map {path} is not valid JSON: {exc}") from None


def save_map(path: str | os.PathLike, data: dict) -> None:
    """Write a map as JSON atomically, each device's expert list on one line."""
    text = re.sub(r"\[[\s\d,-]*\]",
                  lambda m: "[" + ", ".join(re.findall(r"-?\d+", m.group())) + "]",
                  json.dumps(data, indent=2))
    write_json(Path(path), text)


def map_scenario(scenario: Scenario, phy2log: np.ndarray) -> Scenario:
    """The scenario with the map's own number of slots."""
    return replace(scenario, num_replicas=int(phy2log.shape[1]))


def score_static(phy2log: np.ndarray, windows: np.ndarray, scenario: Scenario) -> dict:
    """Balancedness of one fixed placement on every window [N, L, E] (no rebalancing)."""
    if phy2log.shape[0] != windows.shape[1]:
        raise MapError(f"the map has {phy2log.shape[0]} layers, the trace {windows.shape[1]}")
    scenario = map_scenario(scenario, phy2log)
    problems = scenario.problems(windows.shape[2])
    if problems:
        raise MapError("; ".join(problems))
    counts = placement.replica_counts(phy2log, windows.shape[2])
    per_window = []
    for i, load in enumerate(windows.astype(np.float64)):
        balance = placement.measure(load, phy2log, counts, scenario)
        per_window.append({"window": i, "balancedness_gpu": balance.gpu,
                           "balancedness_slot": balance.slot, "balancedness_node": balance.node})
    means = {k: float(np.mean([r[k] for r in per_window]))
             for k in ("balancedness_gpu", "balancedness_slot", "balancedness_node")}
    return {**means, "per_window": per_window}


def candidate_placement(program_path: str | os.PathLike, task: TaskConfig, windows: np.ndarray,
                        window: int, scenario: Scenario) -> np.ndarray:
    """The candidate's phy2log computed, in its sandbox, from windows[window] [L, E].

    A candidate that asks for `history` first observes the windows before it (at most
    the task's history_windows), as in the evaluation. Raises CandidateError (or
    SandboxError) if the candidate fails or its placement is invalid.
    """
    keep = task.history_windows
    request = {"op": "place", "num_replicas": scenario.num_replicas,
               "num_groups": scenario.num_groups, "num_nodes": scenario.num_nodes,
               "num_gpus": scenario.num_gpus, "repeats": 1, "warmup": 0,
               "history_windows": keep}
    layers, experts = windows.shape[1:]
    with candidate_session(program_path, task) as (box, keywords):
        if "history" in keywords and keep:
            observe = {"op": "observe", "history_windows": keep}
            for past in range(max(0, window - keep), window):
                observe_window(box, observe, windows[past], scenario, past)
        phy2log, _, _ = ask_placement(box, request, {"weight": windows[window]}, layers,
                                      experts, scenario, window, task)
    return phy2log
