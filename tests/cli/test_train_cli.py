"""`gaitforge train / eval / plot` end to end on a tiny budget, exact resume after kill -9, and
the errors a user sees for bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gaitforge.agents.checkpoint import load_arrays
from gaitforge.agents.trainer import TrainConfig, latest_checkpoint
from gaitforge.cli import main
from gaitforge.cli.run_config import RunConfig
from gaitforge.sim.vec_env import VecEnvConfig

TINY = ["--set", "train.total_env_steps=2000", "--set", "train.warmup_steps=400",
        "--set", "train.eval_every_steps=100000", "--set", "train.checkpoint_every_steps=1000",
        "--set", "train.log_every_steps=500", "--set", "vec_env.num_envs=2",
        "--set", "agent.actor_hidden=[32,32]", "--set", "agent.critic_hidden=[32,32]",
        "--set", "agent.batch_size=32", "--set", "evaluation.episode_length_s=1.0",
        "--set", "env.sim.engine=mujoco", "--no-progress"]


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setattr("gaitforge.cli.run_folders.RUNS_DIR", tmp_path)
    return tmp_path


def _cli(*args, runs_dir: Path, **kw):
    env = {**os.environ, "GAITFORGE_RUNS": str(runs_dir), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([sys.executable, "-m", "gaitforge.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def test_train_eval_plot_smoke(runs, capsys):
    assert main(["train", "--name", "smoke", *TINY]) == 0
    run = runs / "smoke"
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "latest").is_file()
    assert any((run / "tb").iterdir())
    assert main(["eval", "smoke", "--episodes", "1", "--engine", "pybullet", "--video"]) == 0
    out = capsys.readouterr().out
    assert "vx_tracking_error" in out and "fall_rate" in out
    assert list(run.glob("eval-*-pybullet.gif"))
    assert main(["plot", "smoke"]) == 0
    assert (run / "learning_curves.png").stat().st_size > 1000


def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    proc = _cli("train", "--name", "a", *TINY, runs_dir=straight)
    assert proc.wait(timeout=300) == 0, proc.stdout.read()

    proc = _cli("train", "--name", "a", *TINY, runs_dir=killed)
    first = killed / "a" / "checkpoints" / "000000001000" / "trainer.json"
    deadline = time.time() + 300
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    if proc.returncode == 0:
        pytest.skip("the run finished before it could be killed")
    assert latest_checkpoint(killed / "a" / "checkpoints").name == "000000001000"

    proc = _cli("train", "--resume", "a", "--no-progress", runs_dir=killed)
    assert proc.wait(timeout=300) == 0, proc.stdout.read()
    for name in ("replay.npz", "agent.npz"):
        a = load_arrays(straight / "a" / "checkpoints" / "000000002000" / name)
        b = load_arrays(killed / "a" / "checkpoints" / "000000002000" / name)
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}:{key}")


@pytest.mark.parametrize("override, message", [
    ("agent.name=ppo", "unknown agent 'ppo'"),
    ("agent.actor_lr=-0.001", "actor_lr"),
    ("train.replay_capacity=16", "train.replay_capacity (16) is smaller than agent.batch_size"),
    ("agent.bogus=1", "unknown key 'agent.bogus'"),
    ("env.sim.control_dt_s=0.015", "whole multiple"),
    ("vec_env.workers=0", "train.overlap needs vec_env.workers >= 1"),  # default: overlap
    ("vec_env.workers=3", "workers (3) must not exceed num_envs (2)"),
    ("train.num_envs=2", "unknown key 'train.num_envs'"),  # moved to vec_env
])
def test_bad_training_config_is_a_clear_error(runs, capsys, override, message):
    assert main(["train", *TINY, "--set", override]) == 2
    assert message in capsys.readouterr().err


def test_overlap_needs_workers():
    """Moved from TrainConfig (tests/agents): only the run config knows both settings."""
    with pytest.raises(ValueError, match="overlap needs vec_env.workers >= 1"):
        RunConfig(train=TrainConfig(overlap=True), vec_env=VecEnvConfig(workers=0))
    RunConfig(train=TrainConfig(overlap=True), vec_env=VecEnvConfig(workers=1))
    RunConfig(train=TrainConfig(overlap=False), vec_env=VecEnvConfig(workers=0))


def test_resume_errors(runs, capsys):
    assert main(["train", "--resume", "nowhere"]) == 2
    assert "run 'nowhere' not found" in capsys.readouterr().err
    assert main(["train", "--name", "r", *TINY]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "r", "--set", "agent.batch_size=64"]) == 2
    assert "agent.batch_size: 32 in the run, 64 now" in capsys.readouterr().err


def test_resume_ignores_an_interrupted_checkpoint_write(tmp_path):
    """A hidden temporary folder (a write killed midway) and a missing `latest` pointer do not
    matter: resume picks the newest folder that was renamed into place."""
    ckpt = tmp_path / "checkpoints"
    for name in ("000000001000", "000000002000"):
        (ckpt / name).mkdir(parents=True)
        (ckpt / name / "trainer.json").write_text("{}")
    (ckpt / ".tmp-000000003000-123").mkdir()
    (ckpt / ".tmp-000000003000-123" / "trainer.json").write_text("{")
    assert latest_checkpoint(ckpt).name == "000000002000"
