"""`gaitforge export`, `deploy` and `logs inspect` end to end: a tiny trained run -> bundle ->
2 s on both simulated bodies; and a failed export leaves nothing that looks like a bundle."""

from __future__ import annotations

import pytest

from gaitforge.cli import main
from gaitforge.control.bundle import load_bundle
from gaitforge.control.logger import read_log

TINY = ["--set", "train.total_env_steps=600", "--set", "train.warmup_steps=300",
        "--set", "train.eval_every_steps=100000", "--set", "train.checkpoint_every_steps=600",
        "--set", "vec_env.num_envs=2", "--set", "agent.actor_hidden=[32,32]",
        "--set", "agent.critic_hidden=[32,32]", "--set", "agent.batch_size=32",
        "--set", "env.sim.engine=mujoco",
        # after 300 updates the actor stays near the trot only while the entropy bonus rules
        # (alpha 1; servo_dog's file starts at 0.001): the serial deploys below must complete
        "--set", "agent.init_alpha=1.0", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    mp = pytest.MonkeyPatch()
    mp.setattr("gaitforge.cli.run_folders.RUNS_DIR", runs)
    assert main(["train", "--name", "tiny", *TINY]) == 0
    yield runs
    mp.undo()


def test_export_then_deploy_on_both_sim_bodies(trained, capsys):
    assert main(["export", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "max |diff|" in out
    bundle = load_bundle(trained / "tiny" / "bundle")
    assert bundle.manifest["parity"]["n"] == 512
    assert bundle.manifest["parity"]["max_abs_diff"] <= 1e-5
    assert bundle.manifest["source"]["config"]["env"]["robot"] == "servo_dog"
    assert main(["export", "tiny"]) == 2  # exists: refused without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    logs = trained / "logs"
    for body in ("sim:pybullet", "sim:mujoco"):
        code = main(["deploy", str(bundle.path), "--body", body, "--duration", "2",
                     "--log-dir", str(logs)])
        out = capsys.readouterr().out
        # 1: an untrained policy may fall (or tip far enough for the tilt e-stop); the run
        # itself completed, through the shutdown
        assert code in (0, 1)
        assert "vx_tracking_error" in out and "end_phase          finished" in out
        assert out.startswith("completed: ") if code == 0 else \
            out.startswith(("fell: ", "estop: ")), out[:300]
    paths = sorted(logs.glob("*.gflog"))
    assert len(paths) == 2
    for path in paths:
        log = read_log(path)
        assert log.complete and log.metadata["bundle_hash"] == bundle.sha256
    assert main(["logs", "inspect", str(paths[0])]) == 0
    out = capsys.readouterr().out
    assert "status: complete" in out
    assert "outcome: completed: ran all 100 policy ticks" in out or "outcome: fell: " in out \
        or "outcome: estop: " in out


def test_failed_parity_leaves_no_bundle(trained, monkeypatch, capsys):
    from gaitforge.agents import export

    def broken(agent, path, observations, tolerance=1e-5):
        raise export.ExportError("TFLite and TF actors differ by 1 (> 1e-05)")

    monkeypatch.setattr(export, "check_parity", broken)
    assert main(["export", "tiny", "--out", str(trained / "broken")]) == 2
    assert "export failed, no bundle written: TFLite and TF" in capsys.readouterr().err
    assert not (trained / "broken").exists()
    assert not list(trained.glob(".broken*"))  # no staging folder left behind


def test_overwrite_removes_only_a_bundle_gaitforge_wrote(trained, capsys):
    """Class 1 of 'every failure ends safe': --overwrite never deletes what is not a bundle."""
    assert main(["export", "tiny", "--out", str(trained / "mine")]) == 0
    assert main(["export", "tiny", "--out", str(trained / "mine"), "--overwrite"]) == 0
    capsys.readouterr()
    # a whole training run passed as --out
    assert main(["export", "tiny", "--out", str(trained / "tiny"), "--overwrite"]) == 2
    assert f"{trained / 'tiny'} is not a policy bundle" in capsys.readouterr().err
    assert (trained / "tiny" / "config.yaml").is_file()
    # a folder holding a user's own file
    own = trained / "own"
    own.mkdir()
    (own / "notes.txt").write_text("mine")
    assert main(["export", "tiny", "--out", str(own), "--overwrite"]) == 2
    assert "not a policy bundle" in capsys.readouterr().err
    # a bundle with a user's file put into it
    (trained / "mine" / "notes.txt").write_text("mine")
    assert main(["export", "tiny", "--out", str(trained / "mine"), "--overwrite"]) == 2
    assert "holds 'notes.txt', which is not part of a bundle" in capsys.readouterr().err
    assert (own / "notes.txt").read_text() == "mine"
    assert (trained / "mine" / "notes.txt").read_text() == "mine"
    assert not list(trained.glob(".*staging*"))  # refused before any staging was made


def test_bad_deploy_input_is_a_clear_error(trained, capsys):
    assert main(["deploy", str(trained / "nope"), "--duration", "1"]) == 2
    assert "not a policy bundle" in capsys.readouterr().err
    assert main(["export", "missing-run"]) == 2
    assert "missing-run" in capsys.readouterr().err


@pytest.mark.parametrize("protocol", ["dynamixel", "board"])
def test_deploy_over_serial_to_the_virtual_robot(trained, protocol, capsys, virtual_robot):
    """`gaitforge virtual-robot` in its own process, then `deploy --hw` through the pty: the
    whole byte path, with a complete episode log at the end."""
    bundle = trained / "tiny" / "bundle"
    if not bundle.exists():
        assert main(["export", "tiny"]) == 0
    with virtual_robot("--protocol", protocol, "--engine", "mujoco",
                               "--duration", "60") as (_, paths):
        args = ["deploy", str(bundle), "--hw", f"servo_dog_{protocol}", "--port",
                paths["port"], "--duration", "1", "--log-dir", str(trained / "hw-logs")]
        if protocol == "dynamixel":
            args += ["--imu-port", paths["imu_port"]]
        assert main(args) == 0
        out = capsys.readouterr().out
        assert "end_phase          finished" in out and "'read_errors': 0" in out
    logs = sorted((trained / "hw-logs").glob(f"*-hw-{protocol}.gflog"))
    log = read_log(logs[-1])
    assert log.complete and log.metadata["body"].startswith(f"hw:{protocol}:")
    assert len(log.ticks["tick"]) > 50 + 100  # 1 s of policy after a 2 s soft start, 50 Hz


def test_deploy_over_serial_names_a_silent_servo_and_a_port_that_does_not_open(
        trained, capsys, virtual_robot, tmp_path):
    """`deploy --hw` refuses to start with exit status 2 and one sentence: servo 4 of the
    virtual robot never answers (its id, the port; power, id, baud), or the port is missing.
    A loaded machine can starve the virtual servos past the 5 ms reply timeout (then another
    servo is named): such a run is repeated, at most three times in all."""
    bundle = trained / "tiny" / "bundle"
    if not bundle.exists():
        assert main(["export", "tiny"]) == 0
    capsys.readouterr()
    for _ in range(3):
        with virtual_robot("--protocol", "dynamixel", "--engine", "mujoco", "--fault",
                           "silent:4", "--duration", "60") as (_, paths):
            code = main(["deploy", str(bundle), "--hw", "servo_dog_dynamixel", "--port",
                         paths["port"], "--imu-port", paths["imu_port"], "--duration", "1",
                         "--log-dir", str(tmp_path / "hw-logs")])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("gaitforge: error: the robot did not start: "), err
        if "no reply from servo 4 " in err:
            break
    assert f"no reply from servo 4 on {paths['port']} (PING, 4 attempts): check the power " \
           "and the cable, that its id is 4, and that the bus runs at 1000000 baud" in err
    assert main(["deploy", str(bundle), "--hw", "servo_dog_board", "--port",
                 str(tmp_path / "ttyACM7"), "--duration", "1"]) == 2
    assert f"--port: cannot open serial port '{tmp_path / 'ttyACM7'}': no such device" in \
        capsys.readouterr().err


def test_an_exploring_deploy_logs_the_noisy_actions_it_sent(trained, capsys):
    """The same deterministic episode twice, once with `--explore 0.2 --explore-seed 5`: at
    the first policy tick the observations are the same, and the explored action is the plain
    one plus 0.2 x the seed's first standard normal draw (clipped)."""
    import numpy as np

    bundle = trained / "tiny" / "bundle"
    if not (bundle / "bundle.json").is_file():
        assert main(["export", "tiny"]) == 0
    actions, observations, metadata = [], [], []
    for i, extra in enumerate(([], ["--explore", "0.2", "--explore-seed", "5"])):
        logs = trained / f"explore-logs{i}"
        assert main(["deploy", str(bundle), "--body", "sim:mujoco", "--duration", "1",
                     "--log-dir", str(logs), *extra]) in (0, 1)
        log = read_log(next(logs.glob("*.gflog")))
        acted = np.isfinite(log.ticks["action"]).all(axis=1)
        first = int(np.flatnonzero(acted)[0])
        actions.append(log.ticks["action"][first])
        observations.append(log.ticks["observation"][first])
        metadata.append(log.metadata)
    np.testing.assert_array_equal(observations[1], observations[0])
    noise = np.random.default_rng(5).standard_normal(actions[0].shape)
    np.testing.assert_allclose(actions[1], np.clip(actions[0] + 0.2 * noise, -1, 1), atol=1e-5)
    assert "explore" not in metadata[0]
    assert metadata[1]["explore"] == {"sigma": 0.2, "seed": 5}
    capsys.readouterr()
    assert main(["deploy", str(bundle), "--body", "sim:mujoco", "--explore", "0.7"]) == 2
    assert "--explore: 0.7 is more than 0.5" in capsys.readouterr().err
