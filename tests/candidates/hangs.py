"""Test candidate: tries to start a process (which the jail refuses), then spins forever."""

import subprocess


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    try:
        subprocess.Popen(["sleep", "300"], start_new_session=True)
    except OSError as exc:
        print(f"could not start a process: {type(exc).__name__}: {exc}", flush=True)
    while True:
        pass
