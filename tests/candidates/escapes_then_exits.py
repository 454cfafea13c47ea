"""Test candidate: starts `sleep 300` in a new session, records its pid, then dies at once.

The candidate process is gone before the evaluator cleans up, so the child can only be
found through something other than the candidate's own process tree.
"""

import json
import os
import subprocess

ESCAPE_RECORD = "/tmp/eplb_test_escape_pid.json"


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    escaped = subprocess.Popen(["sleep", "300"], start_new_session=True)
    with open(ESCAPE_RECORD + ".tmp", "w") as handle:
        json.dump({"session_child": escaped.pid}, handle)
    os.replace(ESCAPE_RECORD + ".tmp", ESCAPE_RECORD)
    os._exit(0)
