"""Test candidate (timing attack): the honest 80 ms program's work split over 4 threads
(hashlib releases the GIL, so on 2 cores the call takes about half its CPU time)."""

import threading

THREADS = 4


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    workers = [threading.Thread(target=burn, args=(BURN_ROUNDS // THREADS,))
               for _ in range(THREADS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return baseline_rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus)
