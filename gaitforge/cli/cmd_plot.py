"""`gaitforge plot RUN`: learning curves as runs/RUN/learning_curves.png."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gaitforge.robots.configio import ConfigError

from .run_folders import resolve_run


def register(sub) -> None:
    p = sub.add_parser("plot", help="learning curves of a run as PNG")
    p.add_argument("run", help="run name under runs/, or its folder")
    p.set_defaults(func=run)


def run(args) -> int:
    print(plot_run(args.run))
    return 0


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines file ([] if there is none). A last line cut short (a run
    killed while writing it) is left out; a bad line elsewhere is a ConfigError naming it."""
    if not path.is_file():
        return []
    lines = [(n, line) for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
             if line.strip()]
    out = []
    for n, line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            if n == lines[-1][0]:
                break
            raise ConfigError(f"{path}: line {n} is not a JSON record; remove it to plot the "
                              "rest") from None
    return out


def plot_run(run: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = resolve_run(run)
    rows, evals = read_jsonl(run_dir / "metrics.jsonl"), read_jsonl(run_dir / "eval.jsonl")
    if not rows and not evals:
        raise ConfigError(f"{run_dir}: nothing to plot yet (no metrics.jsonl or eval.jsonl)")
    panels = [("train/episode_return", "training episode return"),
              ("loss/critic_loss", "critic loss"), ("loss/alpha", "SAC temperature"),
              ("perf/env_steps_per_s", "env steps/s")]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for ax, (tag, title) in zip(axes.flat, panels, strict=False):
        pts = [(r["step"], r[tag]) for r in rows if tag in r]
        if pts:
            ax.plot(*np.array(pts).T)
        ax.set_title(title)
        ax.set_xlabel("env steps")
    for ax, key in zip(axes.flat[4:], ("return", "vx_tracking_error"), strict=False):
        pts = [(e["env_steps"], e[key]) for e in evals if key in e]
        if pts:
            ax.plot(*np.array(pts).T, marker="o")
        ax.set_title(f"evaluation: {key}")
        ax.set_xlabel("env steps")
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    path = run_dir / "learning_curves.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
