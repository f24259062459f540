"""A training run's state is whole or refused (agents/checkpoint_folder.py, Trainer): every
byte of a checkpoint is covered by SHA256SUMS, a damaged checkpoint is skipped for the previous
one with a sentence, removals go only through control.files.remove_owned, stale staging
folders are cleaned at the next start, and a full disk (a real, small tmpfs) ends in a
sentence naming the path with no temporary folder left behind."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from gaitforge.agents import config_class, make_agent
from gaitforge.agents.checkpoint import CheckpointError, load_arrays, save_arrays
from gaitforge.agents.checkpoint_folder import verify_checkpoint
from gaitforge.agents.trainer import TrainConfig, Trainer
from gaitforge.control.files import STAGING_MARKER, NotOursError, make_staging
from gaitforge.sim.vec_env import VecEnv

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sim"))
import fake_envs  # noqa: E402

FILES = ("agent.npz", "replay.npz", "trainer.json", "SHA256SUMS")


@pytest.fixture
def make_trainer():
    """`make_trainer(folder, **TrainConfig fields) -> (Trainer, warnings)`; envs closed after."""
    envs = []

    def factory(folder, **fields):
        cfg = config_class("sac")(actor_hidden=(16,), critic_hidden=(16,), batch_size=16,
                                  asymmetric_critic=True)
        agent = make_agent("sac", cfg, fake_envs.OBS_DIM, 2, critic_obs_dim=fake_envs.CRITIC_DIM,
                           seed=1)
        env = VecEnv([fake_envs.PointMassEnv] * 2, workers=0, seed=0)
        envs.append(env)
        t = TrainConfig(**{"total_env_steps": 200, "warmup_steps": 40,
                           "eval_every_steps": 10_000, "checkpoint_every_steps": 100,
                           "log_every_steps": 50, **fields})
        warnings: list[str] = []
        return Trainer(agent, env, t, folder, warn=warnings.append), warnings

    yield factory
    for env in envs:
        env.close()


def _step(n: int) -> str:
    return f"{n:012d}"


def _arrays_equal(a: Path, b: Path) -> None:
    x, y = load_arrays(a), load_arrays(b)
    assert x.keys() == y.keys()
    for key in x:
        np.testing.assert_array_equal(x[key], y[key], err_msg=f"{a.name}:{key}")


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ------------------------------------------------------------------ every byte is covered

def test_every_byte_of_a_checkpoint_is_covered(tmp_path, make_trainer):
    trainer, _ = make_trainer(tmp_path / "ck")
    trainer.train(until_env_steps=100)
    folder = tmp_path / "ck" / _step(100)
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)
    verify_checkpoint(folder)
    for name in FILES:
        path = folder / name
        original = path.read_bytes()
        # every byte of the small files; a spread of bytes (first, last, and between) of the npz
        step = 1 if name in ("trainer.json", "SHA256SUMS") else max(1, len(original) // 150)
        positions = sorted({*range(0, len(original), step), len(original) - 1})
        for i in positions:
            edited = bytearray(original)
            edited[i] ^= 0x01
            path.write_bytes(bytes(edited))
            with pytest.raises(CheckpointError, match="damaged or edited"):
                verify_checkpoint(folder)
        path.write_bytes(original)
    verify_checkpoint(folder)


def test_the_trainers_counters_are_covered(tmp_path, make_trainer):
    trainer, _ = make_trainer(tmp_path / "ck")
    trainer.train(until_env_steps=100)
    folder = tmp_path / "ck" / _step(100)
    meta = folder / "trainer.json"
    original = meta.read_text()
    assert '"env_steps": 100,' in original and '"updates": ' in original
    meta.write_text(original.replace('"env_steps": 100,', '"env_steps": 900,'))
    fresh, _ = make_trainer(tmp_path / "ck")
    with pytest.raises(CheckpointError, match=r"trainer\.json: its sha256 does not match "
                                              r"SHA256SUMS; the file was damaged or edited"):
        fresh.load_checkpoint(folder)
    assert fresh.env_steps == 0 and fresh.updates == 0  # nothing was restored
    meta.write_text(original)
    sums = folder / "SHA256SUMS"
    sums_text = sums.read_text()
    sums.write_text(sums_text + sums_text.splitlines()[0] + "\n")  # a line more
    with pytest.raises(CheckpointError, match="not the list of agent.npz, replay.npz, "
                                              "trainer.json with their sha256"):
        verify_checkpoint(folder)
    sums.unlink()
    with pytest.raises(CheckpointError, match=r"incomplete checkpoint \(SHA256SUMS is missing"):
        verify_checkpoint(folder)
    sums.write_text(sums_text)
    assert fresh.load_checkpoint(folder) == folder and fresh.env_steps == 100


# ------------------------------------------------------------------ skipped for the previous

def test_resume_skips_a_damaged_checkpoint_for_the_previous_one(tmp_path, make_trainer):
    ck = tmp_path / "ck"
    straight, _ = make_trainer(ck)
    straight.train()
    good = tmp_path / "good"
    (ck / _step(200)).rename(good)  # keep the uninterrupted run's last checkpoint aside
    (ck / _step(200)).mkdir()
    for name in FILES:
        (ck / _step(200) / name).write_bytes((good / name).read_bytes())
    damaged = ck / _step(200) / "replay.npz"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))

    resumed, warnings = make_trainer(ck)
    assert resumed.load_checkpoint() == ck / _step(100)
    assert resumed.env_steps == 100
    assert len(warnings) == 1
    assert warnings[0].startswith(f"skipping checkpoint {_step(200)}: {damaged}: its sha256 "
                                  "does not match SHA256SUMS")
    assert warnings[0].endswith(f"trying the previous one, {_step(100)}")
    resumed.train()  # writes step 200 again, replacing the damaged folder (remove_owned)
    verify_checkpoint(ck / _step(200))
    for name in ("agent.npz", "replay.npz"):
        _arrays_equal(good / name, ck / _step(200) / name)
    assert (ck / _step(200) / "trainer.json").read_bytes() == (good / "trainer.json").read_bytes()
    assert _hidden(ck) == []


def test_no_usable_checkpoint_is_refused_and_changes_nothing(tmp_path, make_trainer):
    ck = tmp_path / "ck"
    first, _ = make_trainer(ck)
    first.train()
    for step in (100, 200):
        meta = ck / _step(step) / "trainer.json"
        meta.write_text(meta.read_text().replace('"updates"', '"Updates"'))
    fresh, warnings = make_trainer(ck)
    before = {k: v.numpy().copy() for k, v in fresh.agent.state_variables().items()}
    with pytest.raises(CheckpointError, match=f"{ck}: no usable checkpoint"):
        fresh.load_checkpoint()
    assert [w.split(":")[0] for w in warnings] == [f"skipping checkpoint {_step(200)}",
                                                   f"skipping checkpoint {_step(100)}"]
    assert warnings[-1].endswith("no earlier checkpoint is left")
    assert fresh.env_steps == 0 and fresh.replay.size() == 0
    after = fresh.agent.state_variables()
    assert all(np.array_equal(before[k], after[k].numpy()) for k in before)


# ------------------------------------------------------------------ only what gaitforge made

def test_old_checkpoints_are_removed_only_when_gaitforge_made_them(tmp_path, make_trainer):
    ck = tmp_path / "ck"
    trainer, warnings = make_trainer(ck, keep_checkpoints=1)
    (ck / "000000000050").mkdir(parents=True)  # a user's folder with a step-like name
    (ck / "000000000050" / "mine.txt").write_text("keep me")
    trainer.train(until_env_steps=100)
    (ck / _step(100) / "notes.txt").write_text("a user's notes")
    trainer.train()
    assert (ck / _step(100) / "notes.txt").read_text() == "a user's notes"
    assert sorted((ck / _step(100)).iterdir()) == sorted(ck / _step(100) / n
                                                         for n in (*FILES, "notes.txt"))
    assert (ck / "000000000050" / "mine.txt").read_text() == "keep me"
    assert warnings == [f"kept an old checkpoint: {ck / _step(100)} holds 'notes.txt', which "
                        "gaitforge did not write there: refusing to remove the checkpoint "
                        "folder; move that file out or choose another path"]
    verify_checkpoint(ck / _step(200))


def test_a_same_step_folder_is_replaced_only_when_gaitforge_made_it(tmp_path, make_trainer):
    ck = tmp_path / "ck"
    first, _ = make_trainer(ck)
    first.train(until_env_steps=100)
    (ck / _step(100) / "notes.txt").write_text("a user's notes")
    before = {p.name: p.read_bytes() for p in (ck / _step(100)).iterdir()}
    again, _ = make_trainer(ck)
    with pytest.raises(NotOursError, match=f"{ck / _step(100)} holds 'notes.txt', which "
                                           "gaitforge did not write there"):
        again.train(until_env_steps=100)
    assert {p.name: p.read_bytes() for p in (ck / _step(100)).iterdir()} == before
    assert _hidden(ck) == []  # no staging folder left
    assert not list(ck.glob(".tmp-*"))


def test_a_later_start_cleans_staging_folders_a_crash_left(tmp_path, make_trainer):
    ck = tmp_path / "ck"
    ck.mkdir()
    crashed = make_staging(ck, f"tmp-{_step(300)}")  # killed while writing
    save_arrays(crashed / "agent.npz", {"x": np.zeros(3)})
    (crashed / ".replay.npz.abc.tmp").write_bytes(b"half a file")
    unrenamed = ck / f".tmp-{_step(400)}.staging-xyz"  # killed between marker and rename
    unrenamed.mkdir()
    for name in FILES:
        (unrenamed / name).write_text("{}")
    mine = ck / ".tmp-mine"  # not gaitforge's
    mine.mkdir()
    (mine / "thesis.tex").write_text("\\section{}")
    trainer, warnings = make_trainer(ck)
    trainer.train(until_env_steps=100)
    assert not crashed.exists() and not unrenamed.exists()
    assert (mine / "thesis.tex").read_text() == "\\section{}"
    assert len(warnings) == 1 and warnings[0].startswith(f"left {mine} as it is: {mine} is not "
                                                         "a checkpoint folder gaitforge made")
    assert sorted(p.name for p in ck.iterdir()) == [".tmp-mine", _step(100), "latest"]
    assert STAGING_MARKER not in {p.name for p in (ck / _step(100)).iterdir()}


# ------------------------------------------------------------------ logs before checkpoints

class _Log:
    def __init__(self, ck: Path):
        self.ck, self.events = ck, []

    def scalar(self, tag, value, step):
        pass

    def evaluation(self, result):
        self.events.append(("evaluation", result["env_steps"]))

    def flush(self):
        done = sorted(p.name for p in self.ck.glob("[0-9]*"))
        self.events.append(("flush", done))


def test_logs_are_flushed_before_each_checkpoint_exists(tmp_path, make_trainer):
    ck = tmp_path / "ck"
    trainer, _ = make_trainer(ck, eval_every_steps=100)
    trainer.evaluate = lambda agent: {"return": 1.0}
    trainer.logger = log = _Log(ck)
    trainer.train()
    assert log.events == [("evaluation", 100), ("flush", []),
                          ("evaluation", 200), ("flush", [_step(100)]),
                          ("flush", [_step(100), _step(200)])]  # the last: train()'s end
    meta = json.loads((ck / _step(200) / "trainer.json").read_text())
    assert [h["env_steps"] for h in meta["history"]] == [100, 200]


# ------------------------------------------------------------------ a full disk

def _fill(folder: Path) -> Path:
    """Write a ballast file until the file system is full (a real ENOSPC)."""
    ballast = folder / "ballast"
    with open(ballast, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    return ballast


def test_a_full_disk_while_checkpointing_is_a_sentence_and_leaves_nothing(tiny_tmpfs,
                                                                         make_trainer):
    disk = tiny_tmpfs(2048)
    ck = disk / "ck"
    trainer, _ = make_trainer(ck)
    trainer.train(until_env_steps=100)
    ballast = _fill(disk)
    with pytest.raises(CheckpointError) as err:
        trainer.train()
    message = str(err.value)
    assert message.startswith(f"{ck / _step(200)}: could not save the checkpoint (nothing of "
                              "it was kept): the disk is full (No space left on device)")
    assert sorted(p.name for p in ck.iterdir()) == [_step(100), "latest"]  # no .tmp-*
    assert (ck / "latest").read_text() == _step(100)
    verify_checkpoint(ck / _step(100))
    ballast.unlink()
    resumed, warnings = make_trainer(ck)
    assert resumed.load_checkpoint() == ck / _step(100) and warnings == []
    resumed.train()
    verify_checkpoint(ck / _step(200))


_KILLED_MID_WRITE = """
import os, signal, sys
sys.path.insert(0, {sim!r})
import fake_envs
from gaitforge.agents import checkpoint_folder, config_class, make_agent
from gaitforge.agents.trainer import TrainConfig, Trainer
from gaitforge.sim.vec_env import VecEnv

real_save = checkpoint_folder.save_arrays
def save_then_die(path, arrays):
    real_save(path, arrays)
    if path.parent.name.startswith(".tmp-000000000200"):
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 halfway through the checkpoint
checkpoint_folder.save_arrays = save_then_die
cfg = config_class("sac")(actor_hidden=(16,), critic_hidden=(16,), batch_size=16,
                          asymmetric_critic=True)
agent = make_agent("sac", cfg, fake_envs.OBS_DIM, 2, critic_obs_dim=fake_envs.CRITIC_DIM, seed=1)
env = VecEnv([fake_envs.PointMassEnv] * 2, workers=0, seed=0)
t = TrainConfig(total_env_steps=200, warmup_steps=40, eval_every_steps=10_000,
                checkpoint_every_steps=100, log_every_steps=50)
Trainer(agent, env, t, {ck!r}).train()
"""


def test_kill_9_mid_checkpoint_leaves_a_staging_folder_the_next_start_removes(tmp_path,
                                                                              make_trainer):
    import os
    import subprocess

    ck = tmp_path / "ck"
    script = _KILLED_MID_WRITE.format(sim=str(Path(fake_envs.__file__).parent), ck=str(ck))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    assert done.returncode == -9, done.stderr
    staging = list(ck.glob(f".tmp-{_step(200)}.staging-*"))
    assert len(staging) == 1 and (staging[0] / STAGING_MARKER).is_file()
    assert sorted(p.name for p in staging[0].iterdir()) == [STAGING_MARKER, "agent.npz"]
    resumed, warnings = make_trainer(ck)
    assert resumed.load_checkpoint() == ck / _step(100) and warnings == []
    resumed.train()
    assert sorted(p.name for p in ck.iterdir()) == [_step(100), _step(200), "latest"]
    verify_checkpoint(ck / _step(200))
