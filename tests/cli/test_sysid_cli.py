"""Close the loop, part 1, end to end through the CLI: a virtual robot with a reality gap
(a dynamics file, hung) on a real pty; `gaitforge excite` over serial; `gaitforge replay`;
`gaitforge sysid` writes a dynamics file that `train --dynamics` accepts; and every refusal."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from gaitforge.cli import main
from gaitforge.sim.dynamics import load_dynamics, read_provenance

GAP = {"latency_s": 0.01, "kp_scale": 0.8, "joint_friction_nm": 0.03, "armature_kg_m2": 0.003}


@pytest.fixture(scope="module")
def serial_logs(tmp_path_factory, virtual_robot):
    """Two excitation logs (5 s each) of the gap robot, hung, over the Dynamixel pty."""
    root = tmp_path_factory.mktemp("sysid")
    gap = root / "gap.yaml"
    gap.write_text(yaml.safe_dump(GAP))
    with virtual_robot("--protocol", "dynamixel", "--engine", "mujoco", "--duration", "120",
                       "--dynamics", str(gap), "--support", "hung") as (_, paths):
        for seed in (0, 1):
            assert main(["excite", "--hw", "servo_dog_dynamixel", "--port", paths["port"],
                         "--imu-port", paths["imu_port"], "--support", "hung",
                         "--duration", "5", "--seed", str(seed),
                         "--log-dir", str(root / f"logs{seed}")]) == 0
    return root, [next((root / f"logs{seed}").glob("*.gflog")) for seed in (0, 1)]


def test_excite_replay_and_sysid_over_a_pty(serial_logs, capsys):
    root, (fit_log, held_log) = serial_logs
    assert main(["replay", str(fit_log), "--out", str(root / "replay")]) == 0
    report = json.loads((root / "replay" / "report.json").read_text())
    (entry,) = report["logs"].values()
    assert entry["support"] == "hung" and len(entry["joints"]) == 12
    nominal_rmse = [j["rmse_rad"] for j in entry["joints"].values()]
    assert min(nominal_rmse) > 1e-3  # the gap shows
    assert (root / "replay" / "replay.png").stat().st_size > 10_000
    capsys.readouterr()
    out_file = root / "fitted.yaml"
    assert main(["sysid", str(fit_log), "--holdout", str(held_log), "--fit",
                 "latency_s,kp_scale,armature_kg_m2", "--generations", "6", "--workers", "1",
                 "--out", str(out_file), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "per joint on the held-out logs" in out
    assert re.search(r"^  kp_scale +[0-9.]+$", out, re.M)  # a scale: no unit
    assert re.search(r"^  armature_kg_m2 +[0-9.e-]+ kg m\^2$", out, re.M)
    fitted = load_dynamics(out_file, _spec())
    provenance = read_provenance(out_file)
    assert list(provenance["logs"]) == [str(fit_log)] and list(provenance["holdout"]) == \
        [str(held_log)]
    assert all(len(h) == 64 for h in provenance["logs"].values())
    after = provenance["rmse_rad_after"]
    assert sum(a < b for a, b in zip(after, provenance["rmse_rad_before"], strict=True)) >= 10
    assert fitted.kp_scale == pytest.approx(0.8, rel=0.25)  # a short fit, a loose check
    assert out_file.with_suffix(".png").is_file()
    # train --dynamics takes the file: it lands, values and provenance, in the run's config
    runs = root / "runs"
    mp = pytest.MonkeyPatch()
    mp.setattr("gaitforge.cli.run_folders.RUNS_DIR", runs)
    try:
        assert main(["train", "--name", "around", "--dynamics", str(out_file), "--set",
                     "train.total_env_steps=64", "--set", "train.warmup_steps=64", "--set",
                     "vec_env.num_envs=1", "--set", "vec_env.workers=0", "--set",
                     "train.overlap=false", "--set", "env.sim.engine=mujoco",
                     "--set", "agent.batch_size=32", "--no-progress"]) == 0
    finally:
        mp.undo()
    saved = yaml.safe_load((runs / "around" / "config.yaml").read_text())
    assert saved["env"]["dynamics"]["kp_scale"] == pytest.approx(fitted.kp_scale)
    assert str(out_file) in saved["env"]["dynamics_source"]
    lo, hi = saved["env"]["randomization"]["latency_s"]
    assert lo == pytest.approx(-hi)  # centred on the identified latency


def test_sysid_refusals_are_sentences(serial_logs, tmp_path, capsys):
    root, (fit_log, _) = serial_logs
    assert main(["sysid", str(fit_log), "--fit", "latency_s,stiffness"]) == 2
    assert "--fit: unknown parameter 'stiffness' (known: latency_s, kp_scale" in \
        capsys.readouterr().err
    assert main(["sysid", str(fit_log), "--fit", "foot_friction/leg"]) == 2
    assert ("--fit: 'foot_friction/leg': foot_friction is one value for the whole robot, not "
            "one per joint") in capsys.readouterr().err
    # a log of another robot
    other = tmp_path / "a1"
    assert main(["excite", "--robot", "a1", "--body", "sim:mujoco", "--duration", "3.5",
                 "--log-dir", str(other)]) == 0
    capsys.readouterr()
    a1_log = next(other.glob("*.gflog"))
    assert main(["sysid", str(fit_log), str(a1_log)]) == 2
    assert f"{a1_log}: a log of robot 'a1', but {fit_log} is of 'servo_dog'" in \
        capsys.readouterr().err
    # a torn log is used up to its last complete tick, and says so
    torn = tmp_path / "torn.gflog"
    data = fit_log.read_bytes()
    torn.write_bytes(data[: len(data) - 1000])
    assert main(["replay", str(torn), "--out", str(tmp_path / "r")]) == 0
    assert "torn tail" in capsys.readouterr().out
    # a folder where a log is expected
    assert main(["replay", str(root)]) == 2
    assert "is a folder" in capsys.readouterr().err


def _spec():
    from gaitforge.robots.spec import load_robot_spec

    return load_robot_spec("servo_dog")


def test_a_dynamics_file_from_another_engine_is_noted(tmp_path, capsys):
    """Values identified in one engine behave differently in the other: training or
    fine-tuning there says so (and how to match them), and goes on."""
    from gaitforge.cli.cmd_train import dynamics_overrides

    fitted = tmp_path / "fitted.yaml"
    fitted.write_text(yaml.safe_dump({"kp_scale": 0.7, "provenance": {"engine": "mujoco"}}))
    sets = dynamics_overrides(str(fitted), None, ["env.sim.engine=pybullet"])
    assert any(s.startswith("env.dynamics=") for s in sets)
    err = capsys.readouterr().err
    assert "identified in mujoco and this run simulates pybullet" in err
    assert "--set env.sim.engine=mujoco" in err and "sysid --engine pybullet" in err
    dynamics_overrides(str(fitted), None, ["env.sim.engine=mujoco"])
    fitted.write_text(yaml.safe_dump({"kp_scale": 0.7}))  # written by hand: no provenance
    dynamics_overrides(str(fitted), None, ["env.sim.engine=pybullet"])
    assert capsys.readouterr().err == ""


def test_a_second_stage_fits_the_trunk_mass_from_ground_logs(tmp_path, capsys):
    """Stage 1 (hung) knows the actuators; a standing robot's log, replayed in pieces, shows
    the trunk's extra 0.3 kg. The written file keeps stage 1's values and lists what both
    stages fitted, from which logs."""
    gap = {"latency_s": 0.01, "kp_scale": 0.8, "trunk_mass_delta_kg": 0.3}
    (tmp_path / "gap.yaml").write_text(yaml.safe_dump(gap))
    assert main(["excite", "--body", "sim:mujoco", "--dynamics", str(tmp_path / "gap.yaml"),
                 "--support", "ground", "--duration", "6", "--log-dir",
                 str(tmp_path / "logs")]) == 0
    log = next((tmp_path / "logs").glob("*.gflog"))
    # replayed in 1 s pieces, as the fit will: the gap's own dynamics match the log closer
    rmse = {}
    for name, extra in (("nominal", []), ("gap", ["--dynamics", str(tmp_path / "gap.yaml")])):
        assert main(["replay", str(log), "--window", "1", "--out", str(tmp_path / name),
                     *extra]) == 0
        (entry,) = json.loads((tmp_path / name / "report.json").read_text())["logs"].values()
        assert entry["support"] == "ground" and entry["ticks"] >= 290  # every piece's rows
        rmse[name] = entry["rmse_rad_mean"]
    assert rmse["gap"] < 0.5 * rmse["nominal"]
    stage1 = tmp_path / "hung.yaml"
    stage1.write_text(yaml.safe_dump({
        "latency_s": 0.01, "kp_scale": 0.8,
        "provenance": {"support": "hung", "fit": ["latency_s", "kp_scale"],
                       "logs": {"excite.gflog": "ab" * 32}}}))
    capsys.readouterr()
    out_file = tmp_path / "dynamics.yaml"
    assert main(["sysid", str(log), "--start", str(stage1), "--fit", "trunk_mass_delta_kg",
                 "--window", "1", "--workers", "0", "--out", str(out_file),
                 "--no-progress"]) == 0
    assert "RMSE rad, start -> fitted" in capsys.readouterr().out
    fitted = load_dynamics(out_file, _spec())
    assert fitted.trunk_mass_delta_kg == pytest.approx(0.3, abs=0.05)
    assert (fitted.latency_s, fitted.kp_scale) == (0.01, 0.8)  # held at stage 1's
    provenance = read_provenance(out_file)
    assert provenance["fit"] == ["latency_s", "kp_scale", "trunk_mass_delta_kg"]
    assert list(provenance["logs"]) == ["excite.gflog", str(log)]
    assert provenance["start"]["file"] == str(stage1) and provenance["window_s"] == 1.0
    assert main(["sysid", str(log), "--start", str(tmp_path / "none.yaml")]) == 2
    assert f"--start {tmp_path / 'none.yaml'}: no such dynamics file" in capsys.readouterr().err
    assert main(["sysid", str(log), "--start", str(out_file), "--engine", "pybullet"]) == 2
    assert f"--start {out_file}: identified in mujoco, and this fit replays in pybullet" in \
        capsys.readouterr().err
