"""`gaitforge logs plot LOG`: one PNG of an episode. Per joint, the target sent (position
mode) against the measured position; the velocity command in force; tick timing (work and
lateness, ms, against the period); every panel shares the time axis (s since the first tick's
wake time), with the log's events drawn on it (safety faults red, the operator's acts blue,
the rest grey)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FAULTS = ("tilt_estop", "watchdog_damping", "watchdog_off", "non_finite", "invalid_input",
          "input_lost", "read_error", "disconnected")
OPERATOR = ("operator_damping", "rearm", "rearm_refused", "shutdown")
QUIET = ("clamp", "rate_limit")  # too many to draw


def plot_log(log, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gaitforge.control.log_export import joint_names, velocity_commands

    t = log.ticks
    wake = t["deadline_s"] + t["lateness_s"]
    x = wake - wake[0] if len(wake) else wake
    names = joint_names(log)
    n = len(names)
    cols = 4 if n > 6 else max(n, 1)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows + 2, cols, figsize=(4 * cols, 2.2 * (rows + 2)),
                             sharex=True, squeeze=False)
    target = np.where((t["command_mode"] == 0)[:, None], t["command_position_rad"], np.nan)
    for k, name in enumerate(names):
        ax = axes[k // cols][k % cols]
        ax.plot(x, target[:, k], lw=1.0, label="target")
        ax.plot(x, t["joint_pos_rad"][:, k], lw=1.0, label="measured")
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("rad", fontsize=8)
    axes[0][0].legend(fontsize=7, loc="best")
    for k in range(n, rows * cols):  # the last row's empty places
        axes[k // cols][k % cols].axis("off")
    wide = [fig.add_subplot(rows + 2, 1, rows + i + 1, sharex=axes[0][0]) for i in (0, 1)]
    for ax in axes[rows:].flat:
        ax.remove()
    vc = velocity_commands(log)
    for k, label in enumerate(("vx m/s", "vy m/s", "yaw rad/s")):
        wide[0].step(x, vc[:, k], where="post", lw=1.0, label=label)
    wide[0].set_title("velocity command in force", fontsize=9)
    wide[0].legend(fontsize=7, loc="upper right", ncol=3)
    period_ms = float(log.metadata.get("control_dt_s", np.nan)) * 1e3
    wide[1].plot(x, t["work_s"] * 1e3, lw=0.8, label="work")
    wide[1].plot(x, t["lateness_s"] * 1e3, lw=0.8, label="lateness")
    if np.isfinite(period_ms):
        wide[1].axhline(period_ms, color="k", lw=0.6, ls="--", label="period")
    wide[1].set_ylabel("ms", fontsize=8)
    wide[1].set_xlabel("time since the first tick (s)")
    wide[1].set_title(f"tick timing ({int((t['skipped'] > 0).sum())} overruns)", fontsize=9)
    wide[1].legend(fontsize=7, loc="upper right", ncol=3)
    _events(log, x, [*axes[:rows].flat, *wide], wide[0])
    fig.suptitle(f"{Path(log.path).name}: {log.metadata.get('robot', '?')}, "
                 f"{(log.summary or {}).get('outcome', 'no end record')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=70)
    plt.close(fig)
    return out


def _events(log, x: np.ndarray, axes, label_ax) -> None:
    """Vertical lines at each event's tick (the body's tick -1 events at the end), labelled
    once on the command panel."""
    ticks = log.ticks["tick"]
    for e in log.events:
        if e["kind"] in QUIET or not len(x):
            continue
        i = int(np.searchsorted(ticks, e["tick"])) if e["tick"] >= 0 else len(x) - 1
        at = x[min(i, len(x) - 1)]
        color = "red" if e["kind"] in FAULTS else "blue" if e["kind"] in OPERATOR else "grey"
        for ax in axes:
            if ax.axison:
                ax.axvline(at, color=color, lw=0.7, alpha=0.6)
        label_ax.annotate(e["kind"], (at, 1.0), xycoords=("data", "axes fraction"),
                          rotation=90, fontsize=6, color=color, va="top", ha="right")
