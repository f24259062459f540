"""`gaitforge finetune` end to end: a tiny run -> bundle -> logged deploy episodes -> a
fine-tune mixing the logs with fresh simulation -> a bundle whose manifest records its
lineage; resume; and every refusal (another robot, another policy I/O, a corrupt log with and
without --skip-bad, a log without policy ticks)."""

from __future__ import annotations

import pytest
import yaml

from gaitforge.cli import main
from gaitforge.cli.cmd_finetune import env_configs
from gaitforge.cli.run_config import RunConfig
from gaitforge.control.bundle import file_sha256, load_bundle
from gaitforge.robots.configio import from_dict
from gaitforge.sim.tasks import DEFAULT_WEIGHTS

TINY = ["--set", "train.total_env_steps=600", "--set", "train.warmup_steps=300",
        "--set", "train.eval_every_steps=100000", "--set", "train.checkpoint_every_steps=600",
        "--set", "vec_env.num_envs=2", "--set", "agent.actor_hidden=[32,32]",
        "--set", "agent.critic_hidden=[32,32]", "--set", "agent.batch_size=32",
        "--set", "env.sim.engine=mujoco", "--set", "evaluation.episode_length_s=1",
        "--no-progress"]

# servo_dog's walk weights: the task's defaults and its robot file's
SERVO_DOG_WALK = {**DEFAULT_WEIGHTS["walk"], "residual": -0.05, "rate_limit_tick": -1.0,
                  "alive": 0.5}


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """runs/tiny with its bundle and two 2-s deploy logs of it."""
    runs = tmp_path_factory.mktemp("runs")
    mp = pytest.MonkeyPatch()
    mp.setattr("gaitforge.cli.run_folders.RUNS_DIR", runs)
    assert main(["train", "--name", "tiny", *TINY]) == 0
    assert main(["export", "tiny"]) == 0
    for _ in range(2):
        main(["deploy", str(runs / "tiny" / "bundle"), "--body", "sim:mujoco", "--duration",
              "2", "--log-dir", str(runs / "logs")])
    yield runs, sorted((runs / "logs").glob("*.gflog"))
    mp.undo()


def test_finetune_from_logs_then_export_records_the_lineage(logged, capsys, tmp_path):
    runs, logs = logged
    gap = tmp_path / "fitted.yaml"
    gap.write_text(yaml.safe_dump({"latency_s": 0.01, "kp_scale": 0.9}))
    assert main(["finetune", "tiny", "--logs", *map(str, logs), "--dynamics", str(gap),
                 "--steps", "200", "--critic-warmup", "100", "--name", "ft",
                 "--set", "train.log_every_steps=100", "--set", "train.eval_every_steps=100",
                 "--set", "train.checkpoint_every_steps=100",
                 "--set", "evaluation.episode_length_s=1", "--no-progress"]) == 0
    run = runs / "ft"
    # the parent was evaluated first (checkpoint 0), then every 100 steps, on the identified
    # dynamics and on its own; the checkpoint that tracked best is named the policy
    evals = [yaml.safe_load(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    assert [e["env_steps"] for e in evals] == [0, 100, 200]
    assert {"vx_tracking_error", "nominal/vx_tracking_error"} <= set(evals[0])
    best = (run / "checkpoints" / "best").read_text()
    assert best in {"000000000000", "000000000100", "000000000200"}
    out = capsys.readouterr().out
    assert ("policy: checkpoint " + best) in out or (
        best == "000000000000" and "the policy is the parent's own" in out)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["env"]["critic_inputs"] == "estimated"
    assert saved["env"]["reward_inputs"] == "estimated"  # fresh simulation judged as the logs
    assert saved["agent"]["critic_layer_norm"] is True
    assert saved["finetune"]["logs"] == {str(p): file_sha256(p) for p in logs}
    assert saved["env"]["dynamics"]["kp_scale"] == 0.9
    # both runs record every reward weight they train on (today's defaults and servo_dog's)
    assert saved["env"]["task"]["rewards"] == SERVO_DOG_WALK
    parent = yaml.safe_load((runs / "tiny" / "config.yaml").read_text())
    assert parent["env"]["task"]["rewards"] == SERVO_DOG_WALK
    # --rehearse 0.5 (the default) of the 2 fresh envs keeps the parent's nominal dynamics
    assert saved["finetune"]["rehearse"] == 0.5
    assert saved["finetune"]["ratchet"] is True  # on by default (--no-ratchet: off)
    # --logged-commands 0.5 (the default): half the fresh episodes at the logs' (0.3, 0, 0)
    assert saved["env"]["task"]["command"]["focus"] == [[0.3, 0.0, 0.0]]
    assert saved["env"]["task"]["command"]["focus_prob"] == 0.5
    assert saved["evaluation"]["command"] == [0.3, 0.0, 0.0]  # chosen where it is used
    envs = env_configs(from_dict(RunConfig, saved))
    assert [e.dynamics.get("kp_scale") for e in envs] == [0.9, None]
    assert envs[0].randomization.latency_s != envs[1].randomization.latency_s  # re-centred
    assert {e.critic_inputs for e in envs} == {"estimated"}
    metrics = (run / "metrics.jsonl").read_text()
    assert "loss/critic_offline" in metrics and "loss/critic_online" in metrics
    # resumable like train: more steps continue from the checkpoint
    saved["train"]["total_env_steps"] = 400
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    assert main(["finetune", "ft", "--resume", "--no-progress"]) == 0
    assert "resumed" in capsys.readouterr().out
    assert main(["export", "ft"]) == 0
    lineage = load_bundle(run / "bundle").manifest["lineage"]
    assert lineage["parent_bundle_sha256"] == file_sha256(runs / "tiny" / "bundle" /
                                                          "bundle.json")
    assert lineage["logs"] == saved["finetune"]["logs"] and str(gap) in lineage["dynamics"]


def test_a_run_whose_critic_takes_log_inputs_keeps_it_as_it_was_built(logged, tmp_path):
    """A run trained with env.critic_inputs=estimated: the fine-tune restores its critic (no
    LayerNorm forced on it, which would make it a new critic)."""
    import argparse
    import shutil

    from gaitforge.cli.cmd_finetune import _finetune_config

    runs, _ = logged
    parent = tmp_path / "estimated"
    shutil.copytree(runs / "tiny", parent)
    saved = yaml.safe_load((parent / "config.yaml").read_text())
    saved["env"]["critic_inputs"] = "estimated"
    (parent / "config.yaml").write_text(yaml.safe_dump(saved))
    args = argparse.Namespace(steps=100, sim_mix=0.5, critic_warmup=100, set=[], dynamics=None,
                              anchor=0.3, ratchet=True, logged_commands=0.0)
    tuned = _finetune_config(args, parent, {"used": {}})
    assert not tuned["agent"].get("critic_layer_norm", False)
    fresh = _finetune_config(args, runs / "tiny", {"used": {}})  # privileged: a new critic
    assert fresh["agent"]["critic_layer_norm"] is True


def test_fresh_simulation_is_rewarded_as_the_logs_only_when_they_share_the_minibatches(logged):
    """With the logs in the minibatches the fresh simulation's rewards judge the estimate, as
    the logs' do; with --sim-mix 1 (the logs only identify the robot) they judge the truth
    (`privileged`); --set has the last word."""
    import argparse

    from gaitforge.cli.cmd_finetune import _finetune_config

    runs, _ = logged

    def inputs(sim_mix, *overrides):
        args = argparse.Namespace(steps=100, sim_mix=sim_mix, critic_warmup=100,
                                  set=list(overrides), dynamics=None, anchor=0.1, ratchet=True,
                                  logged_commands=0.0)
        return _finetune_config(args, runs / "tiny", {"used": {}})["env"].get(
            "reward_inputs", "privileged")

    assert inputs(0.5) == inputs(0.0) == "estimated"
    assert inputs(1.0) == "privileged"
    assert inputs(0.5, "finetune.sim_mix=1") == "privileged"
    assert inputs(0.5, "env.reward_inputs=privileged") == "privileged"


def test_logged_commands_focus_that_share_of_the_fresh_episodes_on_the_logs_commands(logged):
    """The logs were deployed at the default command (0.3, 0, 0): with --logged-commands 0.5
    the fine-tune's task draws it for half of the episodes, and its selection evaluates at the
    most used; without, the ranges alone and the run's evaluation command."""
    import argparse

    from gaitforge.cli.cmd_finetune import _finetune_config, _transitions, most_used

    runs, logs = logged
    parent = from_dict(RunConfig, yaml.safe_load((runs / "tiny" / "config.yaml").read_text()),
                       source="tiny")
    transitions = _transitions(parent, [str(p) for p in logs], skip_bad=False)
    assert transitions["commands"] == [[0.3, 0.0, 0.0]]

    def config(share):
        args = argparse.Namespace(steps=100, sim_mix=1.0, critic_warmup=100, set=[],
                                  dynamics=None, anchor=0.1, ratchet=True,
                                  logged_commands=share)
        return from_dict(RunConfig, _finetune_config(args, runs / "tiny", transitions),
                         source="ft")

    def command(share):
        return config(share).env.task.command

    def evaluated(share):
        return config(share).evaluation.command

    transitions = {**transitions, "commands": [[0.2, 0.0, 0.1], [0.3, 0.0, 0.0]]}
    focused, plain = command(0.5), command(0.0)
    assert focused.focus == ((0.2, 0.0, 0.1), (0.3, 0.0, 0.0)) and focused.focus_prob == 0.5
    assert plain.focus == () and plain.focus_prob == 0.0
    # the selection evaluates at the most used (without: the run's own evaluation command)
    assert evaluated(0.5) == (0.2, 0.0, 0.1) and evaluated(0.0) == (0.3, 0.0, 0.0)
    # rounded to 0.01, most ticks first: 3 ticks of (0.1, 0, 0.2), 2 of (0.3, 0, 0), -0 is 0
    ticks = [[0.3, 0, 0], [0.1, -0.001, 0.2], [0.301, 0, 0], [0.1, 0, 0.2], [0.1, 0, 0.199]]
    assert most_used(ticks) == [[0.1, 0.0, 0.2], [0.3, 0.0, 0.0]]
    assert str(most_used(ticks)[0][1]) == "0.0"


def test_logs_only_needs_no_simulation(logged):
    runs, logs = logged
    assert main(["finetune", "tiny", "--logs", str(logs[0]), "--sim-mix", "0", "--steps",
                 "100", "--critic-warmup", "0", "--name", "ft-logs", "--no-progress"]) == 0


def test_refusals_are_sentences(logged, capsys, tmp_path):
    runs, logs = logged
    # a corrupt log: named with its byte offset; --skip-bad leaves it out
    bad = tmp_path / "bad.gflog"
    data = bytearray(logs[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    assert main(["finetune", "tiny", "--logs", str(bad), "--steps", "100"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "byte" in err and "--skip-bad" in err
    assert main(["finetune", "tiny", "--logs", str(bad), str(logs[1]), "--skip-bad",
                 "--sim-mix", "0", "--steps", "50", "--critic-warmup", "0", "--name",
                 "ft-skip", "--no-progress"]) == 0
    assert "skipped a corrupt log" in capsys.readouterr().err
    # a log of another policy I/O: another run with another action scale
    assert main(["train", "--name", "other", *TINY, "--set", "env.action.scale_rad=0.2"]) == 0
    assert main(["export", "other"]) == 0
    main(["deploy", str(runs / "other" / "bundle"), "--body", "sim:mujoco", "--duration",
          "1", "--log-dir", str(tmp_path / "other-logs")])
    capsys.readouterr()
    other = next((tmp_path / "other-logs").glob("*.gflog"))
    assert main(["finetune", "tiny", "--logs", str(other)]) == 2
    assert "not a log of this run's policy: action.scale_rad is recorded as 0.2" in \
        capsys.readouterr().err
    # another robot, and a log with no policy tick (an excitation routine's)
    assert main(["excite", "--robot", "a1", "--body", "sim:mujoco", "--duration", "3.5",
                 "--log-dir", str(tmp_path / "a1")]) == 0
    capsys.readouterr()
    assert main(["finetune", "tiny", "--logs", str(next((tmp_path / "a1").glob("*")))]) == 2
    assert "a log of robot 'a1', the run is of 'servo_dog'" in capsys.readouterr().err
    assert main(["excite", "--body", "sim:mujoco", "--duration", "3.5", "--log-dir",
                 str(tmp_path / "exc")]) == 0
    capsys.readouterr()
    assert main(["finetune", "tiny", "--logs", str(next((tmp_path / "exc").glob("*")))]) == 2
    assert "not of a policy's episode" in capsys.readouterr().err
    # evaluations off the checkpoints' steps: nothing to choose among, nothing to ratchet to
    assert main(["finetune", "tiny", "--logs", str(logs[0]), "--set",
                 "train.checkpoint_every_steps=3000"]) == 2
    assert ("train.eval_every_steps=10000 is not a multiple of "
            "train.checkpoint_every_steps=3000") in capsys.readouterr().err


def test_what_sysid_did_not_identify_is_randomised_widely(tmp_path):
    """A dynamics file from sysid (provenance `fit` without trunk mass and foot friction):
    added mass up to 0.4 of the robot's, foot friction from 0.4; the bounds already wider
    stay; a file that does not say what was fitted widens nothing."""
    from gaitforge.cli.cmd_finetune import unseen_overrides

    fitted = tmp_path / "fitted.yaml"
    fitted.write_text(yaml.safe_dump({"kp_scale": 0.7, "provenance": {
        "tool": "gaitforge sysid", "fit": ["latency_s", "kp_scale", "kd_scale"]}}))
    data = {"env": {"randomization": {"friction": [0.6, 1.2], "added_mass_frac": [-0.05, 0.5]}}}
    assert unseen_overrides(str(fitted), data) == [
        "env.randomization.added_mass_frac=[-0.05, 0.5]",
        "env.randomization.friction=[0.4, 1.2]"]
    assert unseen_overrides(str(fitted), {"env": {}}) == [
        "env.randomization.added_mass_frac=[-0.05, 0.4]",
        "env.randomization.friction=[0.4, 1.2]"]
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump({"kp_scale": 0.7}))
    assert unseen_overrides(str(plain), data) == []
