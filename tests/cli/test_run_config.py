"""The run config's agent section: a typed SACConfig | TD3Config picked by `agent.name`, the
YAML flat; `utd` under `train:`; run folders saved with `agent.utd` still load."""

from __future__ import annotations

import pytest

from gaitforge.agents.config import SACConfig, TD3Config
from gaitforge.cli.run_config import RunConfig, load_run_config, upgrade_saved_config
from gaitforge.robots.configio import ConfigError, from_dict, load_yaml, to_dict


def test_default_agent_is_a_typed_sac_config_and_utd_is_the_trainers():
    run = load_run_config()
    assert type(run.agent) is SACConfig and run.agent.name == "sac"
    assert run.agent.asymmetric_critic and run.agent.batch_size == 256  # from default.yaml
    assert run.train.utd == 1
    assert RunConfig().agent == SACConfig()


def test_agent_name_picks_the_class_and_the_yaml_stays_flat():
    run = load_run_config(None, ["agent.name=td3", "agent.policy_delay=3", "train.utd=2"])
    assert type(run.agent) is TD3Config
    assert run.agent.policy_delay == 3 and run.agent.asymmetric_critic
    assert run.train.utd == 2
    flat = to_dict(run)["agent"]
    assert flat["name"] == "td3" and flat["policy_delay"] == 3 and "utd" not in flat
    assert from_dict(RunConfig, to_dict(run)) == run


@pytest.mark.parametrize("override, message", [
    ("agent.name=ppo", "'agent.name': unknown agent 'ppo' (known: sac, td3)"),
    ("agent.utd=2", "unknown key 'agent.utd' in SACConfig"),
    ("agent.policy_delay=2", "unknown key 'agent.policy_delay' in SACConfig"),
    ("train.utd=0", "utd must be a positive integer"),
])
def test_bad_agent_sections_name_the_field_and_the_file(override, message):
    with pytest.raises(ConfigError) as err:
        load_run_config(None, [override])
    assert message in str(err.value)
    assert "default.yaml" in str(err.value)


def test_default_yaml_has_utd_under_train_only():
    from gaitforge.cli.run_config import DEFAULT_CONFIG

    data = load_yaml(DEFAULT_CONFIG)
    assert "utd" not in data["agent"] and data["train"]["utd"] == 1


def test_a_config_saved_with_agent_utd_is_upgraded():
    saved = {"agent": {"name": "td3", "utd": 3, "batch_size": 64},
             "train": {"num_envs": 2}}
    new = upgrade_saved_config(saved)
    assert new == {"agent": {"name": "td3", "batch_size": 64},
                   "train": {"utd": 3}, "vec_env": {"num_envs": 2}}
    assert saved["agent"]["utd"] == 3  # the input is left alone
    run = from_dict(RunConfig, {**new, "train": {**new["train"], "overlap": False}})
    assert type(run.agent) is TD3Config and run.train.utd == 3 and run.vec_env.num_envs == 2
    current = {"agent": {"name": "sac"}, "train": {"utd": 2}}
    assert upgrade_saved_config(current) == current
    assert upgrade_saved_config({"agent": {"utd": 4}}) == {"agent": {}, "train": {"utd": 4}}


def test_an_old_run_folder_with_agent_utd_still_loads(tmp_path, monkeypatch):
    """A run saved before the move (config.yaml with agent.utd) evaluates and exports: its
    agent is rebuilt from the typed config and its checkpoint loads unchanged."""
    import numpy as np
    import yaml

    from gaitforge.agents import make_agent
    from gaitforge.cli.run_config import compose
    from gaitforge.cli.run_folders import load_run_agent

    monkeypatch.setattr("gaitforge.cli.run_folders.RUNS_DIR", tmp_path)
    data = compose(None, ["agent.name=td3", "agent.actor_hidden=[8]",
                          "agent.critic_hidden=[8]", "agent.batch_size=4"])
    data["agent"]["utd"] = 2
    del data["train"]["utd"]
    run = tmp_path / "old"
    (run / "checkpoints" / "000000001000").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(data))
    cfg = {"actor_hidden": (8,), "critic_hidden": (8,), "batch_size": 4,
           "asymmetric_critic": True}
    saved = make_agent("td3", cfg, 5, 3, critic_obs_dim=2, seed=4)
    rng = np.random.default_rng(1)
    saved.observe(rng.normal(1.0, 2.0, (50, 5)), rng.normal(size=(50, 2)))
    saved.save(run / "checkpoints" / "000000001000" / "agent.npz")
    (run / "checkpoints" / "000000001000" / "trainer.json").write_text("{}")

    _, run_cfg, agent, _ = load_run_agent("old")
    assert run_cfg.train.utd == 2 and type(run_cfg.agent) is TD3Config
    assert agent.algo == "td3" and agent.critic_obs_dim == 2
    obs = rng.normal(size=(4, 5)).astype(np.float32)
    np.testing.assert_array_equal(agent.act(obs, True), saved.act(obs, True))


@pytest.mark.parametrize("robot", ["servo_dog", "a1", "mini_cheetah", "minitaur"])
def test_every_robot_file_composes_with_its_command_grid(robot):
    """configs/robots/ROBOT.yaml composes under the defaults: the env is the robot's, and its
    command grid names the eight cells, each command inside the training ranges."""
    run = load_run_config(None, [f"env.robot={robot}"])
    assert run.env.robot == robot
    assert list(run.evaluation.grid) == ["forward", "backward", "stand", "turn_left",
                                         "turn_right", "side_left", "side_right", "walk_turn"]
    ranges = run.env.task.command
    for cell, (vx, vy, yaw) in run.evaluation.grid.items():
        assert ranges.vx_m_s[0] <= vx <= ranges.vx_m_s[1], cell
        assert ranges.vy_m_s[0] <= vy <= ranges.vy_m_s[1], cell
        assert ranges.yaw_rad_s[0] <= yaw <= ranges.yaw_rad_s[1], cell


def test_gaitforge_envs_lists_every_robot(capsys):
    from gaitforge.cli import main

    assert main(["envs"]) == 0
    rows = {line.split()[0]: line.split()[1:3] for line in capsys.readouterr().out.splitlines()
            if line and line.split()[0] in ("servo_dog", "a1", "mini_cheetah", "minitaur")}
    assert rows["minitaur"] == ["8", "6.00"]
    assert rows["servo_dog"] == ["12", "1.46"] and len(rows) == 4
