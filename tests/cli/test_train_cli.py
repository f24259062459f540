"""`gaitforge train / eval / plot` end to end on a tiny budget, exact resume after kill -9, and
the errors a user sees for bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from gaitforge.agents.checkpoint import load_arrays
from gaitforge.agents.trainer import TrainConfig, latest_checkpoint
from gaitforge.cli import main
from gaitforge.cli.run_config import RunConfig, load_run_config
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
    assert main(["eval", "smoke", "--episodes", "1", "--engine", "pybullet", "--video",
                 "--video-format", "gif"]) == 0  # MP4 (the default) needs the `video` extra
    out = capsys.readouterr().out
    assert "vx_tracking_error" in out and "fall_rate" in out
    assert list(run.glob("eval-*-pybullet.gif"))
    assert main(["eval", "smoke", "--grid", "--episodes", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    cells = [line.split()[0] for line in out[1:-1]]  # servo_dog's grid, one row a cell
    assert cells[:3] == ["forward", "backward", "stand"] and len(cells) == 8
    assert out[-1].startswith("grid: ")
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


# ------------------------------------------------------------ a run's state is whole or refused

EVALS = ["--set", "train.eval_every_steps=1000", "--set", "train.eval_episodes=1"]


def _rows(path: Path, drop: tuple[str, ...]) -> list[dict]:
    """The rows of a .jsonl log without the keys that measure wall-clock time."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in row.items() if not k.startswith(drop)} for row in rows]


def _tree(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder` (hidden ones too) with its bytes and mtime."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_kill_9_keeps_the_logs_up_to_the_checkpoint_and_resume_repeats_none(tmp_path):
    """Today's bug: metrics.jsonl was empty after a kill. Now rows up to the last checkpoint
    survive kill -9, and the resumed run's logs equal an uninterrupted run's."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    proc = _cli("train", "--name", "a", *TINY, *EVALS, runs_dir=straight)
    assert proc.wait(timeout=300) == 0, proc.stdout.read()

    proc = _cli("train", "--name", "a", *TINY, *EVALS, runs_dir=killed)
    first = killed / "a" / "checkpoints" / "000000001000" / "trainer.json"
    deadline = time.time() + 300
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    if proc.returncode == 0:
        pytest.skip("the run finished before it could be killed")
    run = killed / "a"
    upto = [r["step"] for r in _rows(run / "metrics.jsonl", ()) if r["step"] <= 1000]
    assert upto == [500, 1000]
    assert [r["env_steps"] for r in _rows(run / "eval.jsonl", ()) if r["env_steps"] <= 1000] \
        == [1000]

    proc = _cli("train", "--resume", "a", "--no-progress", runs_dir=killed)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out
    assert "resumed" in out and "from 000000001000" in out
    assert _rows(run / "metrics.jsonl", ("perf/",)) == \
        _rows(straight / "a" / "metrics.jsonl", ("perf/",))
    assert _rows(run / "eval.jsonl", ("time",)) == _rows(straight / "a" / "eval.jsonl", ("time",))
    assert [r["step"] for r in _rows(run / "metrics.jsonl", ())] == [500, 1000, 1500, 2000]


def test_resume_skips_an_edited_checkpoint_and_repeats_no_log_row(runs, capsys):
    assert main(["train", "--name", "e", *TINY, *EVALS]) == 0
    run = runs / "e"
    capsys.readouterr()
    metrics, evals = _rows(run / "metrics.jsonl", ("perf/",)), _rows(run / "eval.jsonl", ("time",))
    last = run / "checkpoints" / "000000002000"
    before = {name: load_arrays(last / name) for name in ("agent.npz", "replay.npz")}
    meta = last / "trainer.json"
    edited = bytearray(meta.read_bytes())
    edited[edited.index(b'"updates": ') + 11] ^= 0x01  # one digit of the trainer's counters
    meta.write_bytes(bytes(edited))

    assert main(["eval", "e", "--episodes", "1"]) == 0  # eval (and export) skip it too
    assert capsys.readouterr().err.count("skipping checkpoint 000000002000") == 1
    assert main(["train", "--resume", "e", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("skipping checkpoint") == 1
    assert (f"gaitforge: skipping checkpoint 000000002000: {meta}: its sha256 does not match "
            "SHA256SUMS; the file was damaged or edited; trying the previous one, "
            "000000001000") in captured.err
    assert f"resumed {run} from 000000001000 (1000 env steps)" in captured.out
    assert _rows(run / "metrics.jsonl", ("perf/",)) == metrics  # none lost, none twice
    assert _rows(run / "eval.jsonl", ("time",)) == evals
    for name, arrays in before.items():  # the replaced folder holds the same state again
        again = load_arrays(last / name)
        assert again.keys() == arrays.keys()
        for key in arrays:
            np.testing.assert_array_equal(arrays[key], again[key], err_msg=f"{name}:{key}")


def test_a_refused_resume_changes_nothing_on_disk(runs, capsys):
    assert main(["train", "--name", "r", *TINY]) == 0
    run = runs / "r"
    snapshot = _tree(run)
    refusals = [(["--set", "agent.batch_size=64"], "agent.batch_size: 32 in the run, 64 now"),
                # allowed to differ, but not valid: today config.yaml was rewritten first
                (["--set", "train.total_env_steps=-5"], "total_env_steps must be a positive"),
                (["--set", "train.total_env_steps=4000", "--set", "agent.tau=0.5"],
                 "agent.tau")]
    for extra, message in refusals:
        assert main(["train", "--resume", "r", "--no-progress", *extra]) == 2, extra
        assert message in capsys.readouterr().err
        assert _tree(run) == snapshot, extra
    for step in ("000000001000", "000000002000"):  # no usable checkpoint left
        meta = run / "checkpoints" / step / "trainer.json"
        meta.write_text(meta.read_text().replace('"episodes"', '"Episodes"'))
    snapshot = _tree(run)
    assert main(["train", "--resume", "r", "--no-progress",
                 "--set", "train.total_env_steps=4000"]) == 2
    err = capsys.readouterr().err
    assert f"gaitforge: error: {run / 'checkpoints'}: no usable checkpoint" in err
    assert err.count("skipping checkpoint") == 2
    assert _tree(run) == snapshot


@pytest.mark.parametrize("args, message", [
    (["--set", "agent.bogus=1"], "unknown key 'agent.bogus'"),
    (["--set", "vec_env.workers=3"], "workers (3) must not exceed num_envs (2)"),
    (["--name", "taken"], "exists and is not a gaitforge run (no config.yaml in it)"),
])
def test_a_refused_train_leaves_no_run_folder(runs, capsys, args, message):
    (runs / "taken").mkdir()
    (runs / "taken" / "notes.txt").write_text("a user's folder")
    assert main(["train", *TINY, *args]) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in runs.iterdir()) == ["taken"]
    assert [p.name for p in (runs / "taken").iterdir()] == ["notes.txt"]


def test_a_full_disk_while_checkpointing_ends_in_one_sentence(tiny_tmpfs):
    """A real, small file system: the run folder and its logs fit, the first checkpoint does
    not. Exit status 2, one sentence naming the path, no temporary folder left behind."""
    disk = tiny_tmpfs(384)
    proc = _cli("train", "--name", "d", *TINY, runs_dir=disk)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 2, out
    assert "Traceback" not in out
    ckpt = disk / "d" / "checkpoints" / "000000001000"
    assert out.strip().splitlines()[-1] == (
        f"gaitforge: error: {ckpt}: could not save the checkpoint (nothing of it was kept): "
        "the disk is full (No space left on device); free some space, then resume the run")
    left = [p for p in disk.rglob("*") if p.name.startswith(".")]
    assert left == []
    assert not ckpt.exists() and (disk / "d" / "config.yaml").is_file()


def test_the_readme_dmc_example_trains(runs, capsys):
    """`gaitforge train --set env_id=dmc:walker-walk` (the README's example, on a tiny budget):
    the default config's asymmetric critic turns itself off, says so once, and the run's
    config records it, so the run also resumes."""
    small = ["--set", "train.total_env_steps=1000", "--set", "train.checkpoint_every_steps=500"]
    assert main(["train", "--set", "env_id=dmc:walker-walk", "--name", "w", *TINY, *small]) == 0
    err = capsys.readouterr().err
    assert err.count("agent.asymmetric_critic is off for dmc:walker-walk") == 1
    saved = yaml.safe_load((runs / "w" / "config.yaml").read_text())
    assert saved["agent"]["asymmetric_critic"] is False
    assert main(["train", "--resume", "w", "--no-progress",
                 "--set", "train.total_env_steps=1500"]) == 0
    assert "asymmetric_critic" not in capsys.readouterr().err
    assert latest_checkpoint(runs / "w" / "checkpoints").name == "000000001500"


def test_a_full_disk_cuts_a_log_append_back_to_whole_lines(tiny_tmpfs):
    """RunLogger on a real, small file system: an append that runs out of space is cut back
    to whole lines, and TensorBoard's own error becomes a sentence too."""
    from gaitforge.agents.checkpoint import CheckpointError
    from gaitforge.cli.run_folders import RunLogger

    run = tiny_tmpfs(256)
    logger = RunLogger(run)
    logger.scalar("train/episode_return", 1.0, 1)
    logger.evaluation({"env_steps": 1, "return": 1.0})
    logger.flush()
    metrics, evals = (run / "metrics.jsonl").read_text(), (run / "eval.jsonl").read_text()
    assert metrics == '{"step": 1, "train/episode_return": 1.0}\n'
    with open(run / "ballast", "wb", buffering=0) as f:  # fill the file system
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    with pytest.raises(CheckpointError, match=f"{run / 'eval.jsonl'}: could not write the "
                                              "training log: the disk is full"):
        logger.evaluation({"env_steps": 2, "note": "x" * 100_000})  # more than a page's slack
    assert (run / "eval.jsonl").read_text() == evals
    with pytest.raises(CheckpointError, match=f"{run / 'tb'}: could not write the TensorBoard "
                                              "events: the disk is full"):
        for i in range(100_000):  # one step: TensorBoard only, the row waits in memory
            logger.scalar(f"x/{i}", float(i), 2)
    assert (run / "metrics.jsonl").read_text() == metrics
    logger.close(discard=True)


def test_a_run_folder_appears_whole_or_not_at_all(tiny_tmpfs):
    from gaitforge.agents.checkpoint import CheckpointError
    from gaitforge.cli.run_folders import create_run_dir

    runs = tiny_tmpfs(64)
    create_run_dir(runs / "small", {"train": {"seed": 1}})
    assert sorted(p.name for p in (runs / "small").iterdir()) == ["config.yaml"]
    big = {"note": "x" * 200_000}  # more than the file system holds
    with pytest.raises(CheckpointError, match=f"{runs / 'big'}: could not create the run "
                                              "folder: the disk is full"):
        create_run_dir(runs / "big", big)
    assert sorted(p.name for p in runs.iterdir()) == ["small"]  # no staging folder left


def test_rough_ground_trains_on_levels_and_evaluates_on_the_top_one(runs, capsys):
    config = Path(__file__).resolve().parents[2] / "configs" / "rough_ground.yaml"
    assert main(["train", str(config), "--name", "rough", *TINY,
                 "--set", "env.task.episode_length_s=0.5"]) == 0
    rows = [json.loads(line) for line in (runs / "rough" / "metrics.jsonl").open()]
    levels = [r["train/terrain_level"] for r in rows if "train/terrain_level" in r]
    assert levels and 0.0 <= max(levels) <= 9.0
    run = load_run_config(runs / "rough" / "config.yaml")
    assert run.env.sim.terrain.kind == "levels"
    terrain = run.evaluation_env().sim.terrain  # the curriculum held, on the top level
    assert (terrain.level, terrain.curriculum) == (9, False)
    assert main(["eval", "rough", "--episodes", "1"]) == 0
    assert "fall_rate" in capsys.readouterr().out
    assert main(["train", str(config), *TINY, "--set", "evaluation.terrain_level=10"]) == 2
    assert "evaluation.terrain_level 10" in capsys.readouterr().err
