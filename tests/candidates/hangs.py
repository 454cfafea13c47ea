"""Test candidate: starts two `sleep 300` children (one in a new session), then spins forever.

Writes the pids of itself and its children to HANG_RECORD so the test can check that
the whole process tree was killed.
"""

import json
import os
import subprocess

HANG_RECORD = "/tmp/eplb_test_hang_pids.json"


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    in_group = subprocess.Popen(["sleep", "300"])
    escaped = subprocess.Popen(["sleep", "300"], start_new_session=True)
    with open(HANG_RECORD + ".tmp", "w") as handle:
        json.dump({"self": os.getpid(), "group_child": in_group.pid,
                   "session_child": escaped.pid}, handle)
    os.replace(HANG_RECORD + ".tmp", HANG_RECORD)
    while True:
        pass
