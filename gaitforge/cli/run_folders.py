"""Run directories: `runs/<name>/` holds everything a training run produces.

    config.yaml      the resolved config (what `--resume` checks against)
    checkpoints/     checked, atomic checkpoints (agents/checkpoint_folder.py) and `latest`
    tb/              TensorBoard events: returns, reward terms, losses, temperature, speed
    metrics.jsonl    the same scalars as JSON lines (for `gaitforge plot`)
    eval.jsonl       one line per evaluation

A run folder appears whole: it is made as a marked staging folder holding config.yaml and
renamed into place, so a refused or failed start leaves nothing. The two .jsonl files are
synced to disk before every checkpoint and cut back to the checkpoint's step on resume: a
killed run loses rows only past its last checkpoint, and a resumed one repeats none.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from pathlib import Path

import yaml

from gaitforge.agents.checkpoint import CheckpointError
from gaitforge.agents.checkpoint_folder import chmod_like_mkdir, disk_error
from gaitforge.control.files import (
    STAGING_MARKER,
    fsync_dir,
    make_staging,
    remove_staging,
    write_atomic,
)
from gaitforge.robots.configio import ConfigError, from_dict

RUNS_DIR = Path(os.environ.get("GAITFORGE_RUNS", "runs"))
METRICS, EVALS = "metrics.jsonl", "eval.jsonl"


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


def run_dir_for(name: str | None, stem: str) -> Path:
    """Where a new run goes (nothing is created): refused if a run is there already."""
    if name is None:
        name = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = RUNS_DIR / name
    if (path / "config.yaml").exists():
        raise ConfigError(f"run '{path}' exists already; pick another --name or --resume it")
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        raise ConfigError(f"{path} exists and is not a gaitforge run (no config.yaml in it); "
                          "pick another --name")
    return path


def create_run_dir(path: Path, config: dict) -> None:
    """Make run folder `path` holding config.yaml, whole or not at all: written in a marked
    staging folder beside it, then renamed into place (onto nothing, or an empty folder)."""
    staging = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = make_staging(path.parent, path.name)
        chmod_like_mkdir(staging)
        write_atomic(staging / "config.yaml", yaml.safe_dump(config, sort_keys=False))
        os.rename(staging, path)
        staging = None
        fsync_dir(path.parent)
        (path / STAGING_MARKER).unlink()
    except OSError as err:
        if path.exists() and not (path / "config.yaml").exists():
            raise ConfigError(f"{path} exists and is not a gaitforge run (no config.yaml in "
                              "it); pick another --name") from err
        raise disk_error(path, "could not create the run folder", err) from err
    finally:
        if staging is not None:
            remove_staging(staging)


def save_config(run_dir: Path, config: dict) -> None:
    """config.yaml, atomically (the old one or the new one, never a mix)."""
    path = run_dir / "config.yaml"
    try:
        write_atomic(path, yaml.safe_dump(config, sort_keys=False))
    except OSError as err:
        raise disk_error(path, "could not write the run's config", err) from err


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
    """Scalars to TensorBoard (tf.summary) and to metrics.jsonl, evaluations to eval.jsonl.

    Each row is appended as soon as it is complete (so `plot` and watchers see it), and
    flush() fsyncs both files: the trainer flushes before every checkpoint. An append that
    fails (a full disk) is cut off again, so the files only ever hold whole lines."""

    def __init__(self, run_dir: Path):
        import tensorflow as tf

        self._tf, self._tb = tf, run_dir / "tb"
        with self._tensorboard():
            self._writer = tf.summary.create_file_writer(str(self._tb))
        self._paths = {"metrics": run_dir / METRICS, "eval": run_dir / EVALS}
        self._row: dict = {}

    @contextlib.contextmanager
    def _tensorboard(self):
        """TensorBoard's writer fails with its own errors (a full disk: ResourceExhaustedError);
        they become a sentence naming the folder."""
        try:
            yield
        except self._tf.errors.OpError as err:
            if "No space left on device" in str(err):
                raise disk_error(self._tb, "could not write the TensorBoard events",
                                 OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))) from err
            raise CheckpointError(f"{self._tb}: could not write the TensorBoard events: "
                                  f"{str(err).splitlines()[0]}") from err

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self._row and self._row["step"] != step:
            self._end_row()
        with self._tensorboard(), self._writer.as_default():
            self._tf.summary.scalar(tag, value, step=step)
        self._row = {**self._row, "step": step, tag: float(value)}

    def evaluation(self, result: dict) -> None:
        _append_whole(self._paths["eval"], json.dumps({"time": time.time(), **result}) + "\n")

    def _end_row(self) -> None:
        row, self._row = self._row, {}
        _append_whole(self._paths["metrics"], json.dumps(row) + "\n")

    def flush(self) -> None:
        """Everything logged so far, on disk."""
        if self._row:
            self._end_row()
        for path in self._paths.values():
            if path.exists():
                _append_whole(path, "", sync=True)
        with self._tensorboard():
            self._writer.flush()

    def close(self, *, discard: bool = False) -> None:
        """Flush and close; with `discard` (the run is failing already) drop the row in
        progress and raise nothing that would hide the first error."""
        if discard:
            with contextlib.suppress(Exception):
                self._writer.close()
            return
        self.flush()
        with self._tensorboard():
            self._writer.close()


def _append_whole(path: Path, text: str, sync: bool = False) -> None:
    """Append `text` (whole lines) to `path`; on failure cut the file back to where it was."""
    fd = None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        size = os.fstat(fd).st_size
        try:
            data = memoryview(text.encode())
            while data:
                data = data[os.write(fd, data):]
            if sync:
                os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)  # whole lines only
            raise
    except OSError as err:
        raise disk_error(path, "could not write the training log", err) from err
    finally:
        if fd is not None:
            os.close(fd)


def cut_logs(run_dir: Path, step: int) -> None:
    """Cut metrics.jsonl and eval.jsonl back to the rows up to `step` (a resumed checkpoint's):
    the rows a killed run wrote past it come again, and must not come twice."""
    for name, key in ((METRICS, "step"), (EVALS, "env_steps")):
        path = run_dir / name
        if not path.is_file():
            continue
        text = path.read_text()
        keep = [line for line in text.splitlines(keepends=True)
                if line.endswith("\n") and _row_step(line, key) <= step]
        if "".join(keep) != text:
            try:
                write_atomic(path, "".join(keep))
            except OSError as err:
                raise disk_error(path, f"could not cut the log back to step {step}",
                                 err) from err


def _row_step(line: str, key: str) -> float:
    try:
        row = json.loads(line)
        return float(row[key])
    except (ValueError, TypeError, KeyError):
        return float("inf")  # not a whole row: dropped


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
    """(run folder, RunConfig, agent restored from the run's policy checkpoint: the best one a
    fine-tune named, else the newest that passes its check; checkpoint folder); a refused
    checkpoint is skipped with a sentence on stderr."""
    import sys

    from gaitforge.agents import make_agent
    from gaitforge.agents.checkpoint import load_arrays
    from gaitforge.agents.checkpoint_folder import AGENT, policy_usable, verify_checkpoint

    from .run_config import RunConfig, upgrade_saved_config

    configure_tensorflow()
    run_dir = resolve_run(run)
    data = upgrade_saved_config(load_config(run_dir))
    if engine:
        data.setdefault("env", {}).setdefault("sim", {})["engine"] = engine
    cfg = from_dict(RunConfig, data, source=str(run_dir / "config.yaml"))

    def agent_state(folder: Path) -> dict:
        verify_checkpoint(folder)
        return load_arrays(folder / AGENT)

    folder, state = policy_usable(run_dir / "checkpoints", agent_state,
                                  lambda sentence: print(f"gaitforge: {sentence}",
                                                         file=sys.stderr))
    dims = [int(d) for d in state["meta/dims"]]
    agent = make_agent(cfg.agent.name, cfg.agent, dims[0], dims[1], critic_obs_dim=dims[2])
    agent.set_state(state, source=str(folder / AGENT))
    return run_dir, cfg, agent, folder
