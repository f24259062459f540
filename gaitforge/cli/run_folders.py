"""Run directories: `runs/<name>/` holds everything a training run produces.

    config.yaml      the resolved config (what `--resume` checks against)
    checkpoints/     atomic checkpoints (agents/trainer.py) and `latest`
    tb/              TensorBoard events: returns, reward terms, losses, temperature, speed
    metrics.jsonl    the same scalars as JSON lines (for `gaitforge plot`)
    eval.jsonl       one line per evaluation
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import yaml

from gaitforge.robots.configio import ConfigError, from_dict

RUNS_DIR = Path(os.environ.get("GAITFORGE_RUNS", "runs"))


def resolve_run(run: str | os.PathLike) -> Path:
    """A run given by name (under runs/) or by path; it must exist with a config.yaml."""
    path = Path(run)
    if not (path / "config.yaml").is_file():
        candidate = RUNS_DIR / str(run)
        if (candidate / "config.yaml").is_file():
            path = candidate
        else:
            known = sorted(p.name for p in RUNS_DIR.glob("*") if (p / "config.yaml").is_file())
            raise ConfigError(f"run '{run}' not found (no config.yaml there or under "
                              f"{RUNS_DIR}/; known runs: {', '.join(known) or 'none'})")
    return path


def new_run_dir(name: str | None, stem: str) -> Path:
    if name is None:
        name = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = RUNS_DIR / name
    if (path / "config.yaml").exists():
        raise ConfigError(f"run '{path}' exists already; pick another --name or --resume it")
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_config(run_dir: Path, config: dict) -> None:
    tmp = run_dir / ".config.yaml.tmp"
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    os.replace(tmp, run_dir / "config.yaml")


def load_config(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / "config.yaml").read_text())


def config_differences(saved: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config dicts."""
    out = []
    for key in sorted(set(saved) | set(new)):
        a, b = saved.get(key), new.get(key)
        path = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, path + ".")
        elif a != b:
            out.append(f"{path}: {a!r} in the run, {b!r} now")
    return out


class RunLogger:
    """Scalars to TensorBoard (tf.summary) and to metrics.jsonl."""

    def __init__(self, run_dir: Path):
        import tensorflow as tf

        self._tf = tf
        self._writer = tf.summary.create_file_writer(str(run_dir / "tb"))
        self._jsonl = open(run_dir / "metrics.jsonl", "a")  # noqa: SIM115 - closed in close()
        self._row: dict = {}

    def scalar(self, tag: str, value: float, step: int) -> None:
        with self._writer.as_default():
            self._tf.summary.scalar(tag, value, step=step)
        if self._row and self._row["step"] != step:
            self._write_row()
        self._row = {**self._row, "step": step, tag: float(value)}

    def _write_row(self) -> None:
        self._jsonl.write(json.dumps(self._row) + "\n")
        self._row = {}

    def flush(self) -> None:
        if self._row:
            self._write_row()
        self._jsonl.flush()
        self._writer.flush()

    def close(self) -> None:
        self.flush()
        self._jsonl.close()
        self._writer.close()


def append_jsonl(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def configure_tensorflow() -> None:
    """One op on one core, two ops side by side: the fastest setting for our compiled update
    on 2 cores (bench/update_bench.py: 0.91 of a bare step, against 0.76 with TF's default).
    Process-wide, and only possible before TensorFlow runs its first op."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(2)
    except RuntimeError:  # TensorFlow already initialised (e.g. inside a test session)
        pass


def load_run_agent(run: str, engine: str | None = None):
    """(run folder, RunConfig, agent restored from the newest checkpoint, checkpoint folder)."""
    from gaitforge.agents import make_agent
    from gaitforge.agents.checkpoint import load_arrays
    from gaitforge.agents.trainer import latest_checkpoint

    from .run_config import RunConfig, upgrade_saved_config

    configure_tensorflow()
    run_dir = resolve_run(run)
    data = upgrade_saved_config(load_config(run_dir))
    if engine:
        data.setdefault("env", {}).setdefault("sim", {})["engine"] = engine
    cfg = from_dict(RunConfig, data, source=str(run_dir / "config.yaml"))
    folder = latest_checkpoint(run_dir / "checkpoints")
    state = load_arrays(folder / "agent.npz")
    dims = [int(d) for d in state["meta/dims"]]
    agent = make_agent(cfg.agent.name, cfg.agent, dims[0], dims[1], critic_obs_dim=dims[2])
    agent.set_state(state, source=str(folder / "agent.npz"))
    return run_dir, cfg, agent, folder
