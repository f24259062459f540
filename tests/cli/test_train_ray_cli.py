"""`gaitforge train --ray`: the ray: config section, the sentence a user without Ray gets, and
(with Ray) a run on the session's local cluster, its TensorBoard policy lag, then `--resume`."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from gaitforge.agents.checkpoint import load_arrays
from gaitforge.agents.trainer import latest_checkpoint
from gaitforge.cli import main
from gaitforge.cli.run_config import load_run_config
from gaitforge.robots.configio import ConfigError

TINY = ["--set", "train.total_env_steps=1200", "--set", "train.warmup_steps=400",
        "--set", "train.eval_every_steps=100000", "--set", "train.checkpoint_every_steps=1000",
        "--set", "train.log_every_steps=500", "--set", "vec_env.num_envs=2",
        "--set", "agent.actor_hidden=[32,32]", "--set", "agent.critic_hidden=[32,32]",
        "--set", "agent.batch_size=32", "--set", "evaluation.episode_length_s=1.0",
        "--set", "env.sim.engine=mujoco", "--set", "ray.batch_steps=16",
        "--set", "ray.collectors=1", "--no-progress"]  # one: TensorFlow loads once per run


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setattr("gaitforge.cli.run_folders.RUNS_DIR", tmp_path)
    return tmp_path


def test_the_ray_section_of_the_run_config():
    run = load_run_config(None, ["ray.enabled=true", "ray.collectors=3", "ray.address=auto"])
    assert (run.ray.enabled, run.ray.collectors, run.ray.address) == (True, 3, "auto")
    assert not load_run_config().ray.enabled  # off by default: training as before
    with pytest.raises(ConfigError, match="collectors must be an integer >= 1"):
        load_run_config(None, ["ray.collectors=0"])
    with pytest.raises(ConfigError, match="unknown key 'ray.workers'"):
        load_run_config(None, ["ray.workers=2"])
    # collectors step their own envs: overlap without vec_env workers is fine on Ray
    load_run_config(None, ["ray.enabled=true", "vec_env.workers=0"])


def test_train_on_ray_without_ray_says_how_to_install_it(runs, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(["train", "--name", "noray", "--ray", *TINY]) == 2
    err = capsys.readouterr().err
    assert "ray.enabled is set, but Ray is not installed" in err
    assert "pip install 'gaitforge[ray]'" in err
    assert not (runs / "noray").exists()  # refused before anything was made


def _tags(tb_dir) -> set[str]:
    import tensorflow as tf

    tags = set()
    for path in tb_dir.glob("events.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(v.tag for v in event.summary.value)
    return tags


def test_train_on_ray_then_resume(ray_cluster, runs, capsys):
    assert main(["train", "--name", "r", "--ray", *TINY]) == 0
    run = runs / "r"
    first = latest_checkpoint(run / "checkpoints")
    assert int(first.name) >= 1200
    assert {"ray/policy_lag_mean", "ray/policy_lag_max", "ray/collector_restarts",
            "perf/updates_per_s"} <= _tags(run / "tb")
    assert "ray/policy_lag_mean" in (run / "metrics.jsonl").read_text()
    assert "ray: 1 collector x 2 envs" in capsys.readouterr().err

    # on Ray again (or not: ray.* may change on resume), with a larger step budget
    assert main(["train", "--resume", "r", "--ray", "--set", "train.total_env_steps=1500",
                 "--no-progress"]) == 0
    assert f"resumed {run} from {first.name}" in capsys.readouterr().out
    last = latest_checkpoint(run / "checkpoints")
    assert int(last.name) >= 1500
    before, after = load_arrays(first / "replay.npz"), load_arrays(last / "replay.npz")
    n = int(before["main/size"])
    assert int(after["main/size"]) == int(last.name) > n
    for key in ("main/obs", "main/action", "main/reward"):  # the first run's transitions kept
        np.testing.assert_array_equal(after[key][:n], before[key])
    assert "ray:" in (run / "config.yaml").read_text()
