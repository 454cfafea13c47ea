"""A readable summary of an evaluation for the terminal."""

from __future__ import annotations


def summary_text(metrics: dict) -> str:
    """A table per scenario plus the overall scores."""
    lines = [
        f"workload: {metrics['workload']}  windows scored: {metrics['windows_scored']}  "
        f"(placement from window i, scored on window i+1)",
        "",
        f"{'scenario':<16}{'bal_gpu':>9}{'bal_slot':>10}{'bal_node':>10}{'same_win':>10}"
        f"{'no_repl':>9}{'ms/call':>9}{'moved':>8}",
    ]
    for name, s in metrics["scenarios"].items():
        lines.append(
            f"{name:<16}{s['balancedness_gpu']:>9.4f}{s['balancedness_slot']:>10.4f}"
            f"{s['balancedness_node']:>10.4f}{s['same_window_balancedness_gpu']:>10.4f}"
            f"{s['no_replication_balancedness_gpu']:>9.4f}{s['time_ms']:>9.2f}"
            f"{s['migration']:>8.0f}")
    lines += [
        "",
        f"balancedness_gpu {metrics['balancedness_gpu']:.4f}   "
        f"speed_score {metrics['speed_score']:.4f}   "
        f"time_ms {metrics['time_ms']:.2f}   "
        f"combined_score {metrics['combined_score']:.4f}",
        f"forecast loss (same-window minus next-window balancedness): "
        f"{metrics['forecast_loss_gpu']:.4f}   evaluation took {metrics['eval_seconds']:.1f} s",
    ]
    return "\n".join(lines)
