"""A readable summary of an evaluation for the terminal."""

from __future__ import annotations


def _policy(rebalance: dict | None) -> str:
    """The trigger policy in words."""
    rebalance = rebalance or {"policy": "every", "every_windows": 1, "warmup_windows": 0}
    policy = rebalance["policy"]
    if policy == "every" and rebalance["every_windows"] == 1:
        text = "placement from window i, scored on window i+1"
    elif policy == "every":
        text = f"rebalance every {rebalance['every_windows']} windows"
    elif policy == "threshold":
        text = f"rebalance when balancedness_gpu < {rebalance['threshold']}"
    else:
        text = f"re-place layers whose load similarity < {rebalance['similarity']}"
    warmup = rebalance["warmup_windows"]
    return text + (f", after {warmup} warm-up windows" if warmup else "")


def summary_text(metrics: dict) -> str:
    """A table per scenario plus the overall scores."""
    lines = [
        f"workload: {metrics['workload']}  windows scored: {metrics['windows_scored']}  "
        f"({_policy(metrics.get('rebalance'))})",
        "",
        f"{'scenario':<16}{'bal_gpu':>9}{'bal_slot':>10}{'bal_node':>10}{'same_win':>10}"
        f"{'no_repl':>9}{'nodes/grp':>10}{'ms/call':>9}{'rebal':>7}{'moved':>8}",
    ]
    for name, s in metrics["scenarios"].items():
        lines.append(
            f"{name:<16}{s['balancedness_gpu']:>9.4f}{s['balancedness_slot']:>10.4f}"
            f"{s['balancedness_node']:>10.4f}{s['same_window_balancedness_gpu']:>10.4f}"
            f"{s['no_replication_balancedness_gpu']:>9.4f}"
            f"{s['locality_nodes_per_group']:>10.3f}{s['time_ms']:>9.2f}"
            f"{s['rebalances']:>7d}{s['migration']:>8.0f}")
    lines += [
        "",
        "nodes/grp: mean distinct nodes hosting a group's experts (1 = each group on one node)",
        "rebal: rebalances (candidate calls); moved: slots changed per rebalance",
        "",
        f"balancedness_gpu {metrics['balancedness_gpu']:.4f}   "
        f"speed_score {metrics['speed_score']:.4f}   "
        f"time_ms {metrics['time_ms']:.2f}   "
        f"combined_score {metrics['combined_score']:.4f}",
        f"migration_score {metrics['migration_score']:.4f}   "
        f"locality_score {metrics['locality_score']:.4f}   "
        f"migration {metrics['migration_bytes'] / 2**30:,.1f} GiB over the trace "
        "(mean over scenarios)",
        f"serving model: throughput_vs_ideal {metrics['throughput_vs_ideal']:.4f}   with "
        f"migration {metrics['serving_throughput_vs_ideal']:.4f}   moe_time_ms "
        f"{metrics['moe_time_ms']:.2f}   internode_transfers_per_token "
        f"{metrics['internode_transfers_per_token']:.2f}   migration_seconds "
        f"{metrics['migration_seconds']:.3f} per rebalance",
        f"forecast loss (same-window minus next-window balancedness): "
        f"{metrics['forecast_loss_gpu']:.4f}   evaluation took {metrics['eval_seconds']:.1f} s",
    ]
    if "colocated_replicas" in metrics:
        lines.append(colocation_text(metrics))
    return "\n".join(lines)


def colocation_text(metrics: dict) -> str:
    """Colocated replicas (an expert twice on one GPU) per scenario and overall."""
    parts = [f"{name} {s['colocated_replicas']:.1f} in "
             f"{sum(x > 0 for x in s['colocated_replicas_per_layer'])}/"
             f"{len(s['colocated_replicas_per_layer'])} layers at some window"
             for name, s in metrics["scenarios"].items()]
    return (f"colocated replicas (an expert twice on one GPU; mean per placement): "
            f"{metrics['colocated_replicas']:.1f}   " + ", ".join(parts))
