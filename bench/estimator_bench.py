"""The velocity estimator's figure: RMS error of the logged estimate against the true trunk
velocity while servo_dog walks at a 0.3 m/s command, in both engines, with nominal and with
gap dynamics, through the deploy path (`control.runtime.deploy` on a `SimulatedRobot`, on
simulated time).

    .venv/bin/python bench/estimator_bench.py                  # 20 s per case, ~1-2 min
    .venv/bin/python bench/estimator_bench.py --seconds 5      # a smoke check
    .venv/bin/python bench/estimator_bench.py --bundle PATH    # a trained servo_dog policy

What walks: without --bundle, an untrained default-size SAC actor whose output layer is zero
(bench/deploy_bench.py's make_bundle with output_scale 0, exported through agents/export.py)
outputs zeros, so the gait prior of the default run config (configs/robots/servo_dog.yaml
env.action.gait) walks open loop. Each case runs `--seconds` of policy time after the safety
layer's soft start; the figure is over the policy ticks, from the episode log's
est_lin_vel_m_s and true_lin_vel_m_s (body frame): RMS of vx, vy, vz and of the norm of the
error, with the mean true vx (how fast it walked) and the share of ticks with a stance foot
used. Goal: RMS norm <= 0.05 m/s in every case.

The simulated accelerometer is exact (the trunk's velocity change over the tick) and the
gyro too; a real IMU is not. The second table repeats every case with a noisy IMU and noisy
joint rates read through the same deploy path (accelerometer white noise 0.3 m/s^2 plus a
bias of (0.1, -0.05, 0.1) m/s^2, gyro 0.02 rad/s white plus 0.01 bias, joint rates 0.1 rad/s
white, seeded), to show what the figure leans on: with the exact simulated IMU, dead
reckoning alone would be exact. The third table puts the filter next to its two halves on
the nominal case with the noisy sensors: the IMU alone (leg noise 1e6 m/s: the legs are
never heeded) and the legs alone (accelerometer noise 100 m/s^2, no gate). Results also go
to bench/out/estimator_bench.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out" / "estimator_bench.json"
COMMAND = (0.3, 0.0, 0.0)
GOAL_RMS_M_S = 0.05
CASES = {  # name -> sim/dynamics.py values on top of nominal
    "nominal": {},
    "latency 10 ms, kp x0.8": {"latency_s": 0.01, "kp_scale": 0.8},
    "friction 0.03 N m, armature 0.003": {"joint_friction_nm": 0.03, "armature_kg_m2": 0.003},
    "all four": {"latency_s": 0.01, "kp_scale": 0.8, "joint_friction_nm": 0.03,
                 "armature_kg_m2": 0.003},
}
BASELINES = {  # name -> EstimatorConfig changes (None: the defaults)
    "fused (the estimator)": {},
    "IMU only": {"leg_velocity_noise_m_s": 1e6},
    "legs only": {"accel_noise_m_s2": 100.0, "outlier_gate": 1e9},  # 1e9: no gate
}
IMU_NOISE = {"accel_m_s2": 0.3, "accel_bias_m_s2": (0.1, -0.05, 0.1), "gyro_rad_s": 0.02,
             "gyro_bias_rad_s": 0.01, "joint_vel_rad_s": 0.1}


class NoisySensors:
    """A body whose IMU and joint rates read with noise and bias (IMU_NOISE); the truth in
    `privileged` is untouched. Everything else passes through to the wrapped robot."""

    def __init__(self, robot, seed: int = 0):
        self.robot, self.rng = robot, np.random.default_rng(seed)

    def __getattr__(self, name):
        return getattr(self.robot, name)

    def read(self):
        s, n, normal = self.robot.read(), IMU_NOISE, self.rng.normal
        return dataclasses.replace(
            s, accel_m_s2=s.accel_m_s2 + n["accel_bias_m_s2"] + normal(0, n["accel_m_s2"], 3),
            gyro_rad_s=s.gyro_rad_s + n["gyro_bias_rad_s"] + normal(0, n["gyro_rad_s"], 3),
            joint_vel_rad_s=s.joint_vel_rad_s + normal(0, n["joint_vel_rad_s"],
                                                       s.joint_vel_rad_s.shape))


def run_case(bundle: Path, engine: str, gap: dict, seconds: float, noisy: bool,
             folder: Path, estimator: dict | None = None) -> dict:
    from gaitforge.control.deploy import clock_and_sleep
    from gaitforge.control.estimator import EstimatorConfig
    from gaitforge.control.logger import read_log
    from gaitforge.control.runtime import deploy, load_runtime, new_log_path
    from gaitforge.sim.config import SimConfig
    from gaitforge.sim.dynamics import nominal_dynamics
    from gaitforge.sim.env import make_body
    from gaitforge.sim.robot_adapters import SimulatedRobot

    clock, sleep = clock_and_sleep(False)
    runtime = load_runtime(bundle, clock, estimator=EstimatorConfig(**(estimator or {})))
    sim = SimConfig(engine=engine, control_dt_s=runtime.control_dt_s)
    body = make_body(runtime.spec, sim)
    body.set_dynamics(dataclasses.replace(nominal_dynamics(runtime.spec, sim), **gap))
    robot = SimulatedRobot(body, command=COMMAND)
    path = new_log_path(folder, engine)
    report = deploy(runtime, NoisySensors(robot) if noisy else robot, duration_s=seconds,
                    command=COMMAND, clock=clock, sleep=sleep, log_path=path,
                    metadata={"body": f"sim:{engine}", "dynamics": gap}, on_tick=robot.observe)
    robot.close()
    t = read_log(path).ticks
    policy = np.isfinite(t["action"]).all(axis=1)
    err = t["est_lin_vel_m_s"][policy] - t["true_lin_vel_m_s"][policy]
    rms = np.sqrt(np.mean(err * err, axis=0))
    return {"engine": engine, "outcome": report["outcome"], "fell": report.get("fell"),
            "policy_s": report["policy_s"], "vx_true_mean": float(t["true_lin_vel_m_s"][policy,
                                                                                      0].mean()),
            "rms_vx": float(rms[0]), "rms_vy": float(rms[1]), "rms_vz": float(rms[2]),
            "rms_norm": float(np.sqrt(np.mean(np.sum(err * err, axis=1)))),
            "stance_used": float(np.mean(t["est_foot_contact"][policy].any(axis=1)))}


def table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    head = f"{'case':36s} {'engine':8s} {'vx true':>7s} {'rms vx':>7s} {'rms vy':>7s} " \
           f"{'rms vz':>7s} {'norm':>7s} {'stance':>6s}  outcome"
    print(head)
    for r in rows:
        ok = "" if r["rms_norm"] <= GOAL_RMS_M_S else "  > goal"
        print(f"{r['case']:36s} {r['engine']:8s} {r['vx_true_mean']:7.3f} {r['rms_vx']:7.4f} "
              f"{r['rms_vy']:7.4f} {r['rms_vz']:7.4f} {r['rms_norm']:7.4f} "
              f"{r['stance_used']:6.2f}  {r['outcome']}{ok}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="policy time per case")
    ap.add_argument("--bundle", help="a servo_dog policy bundle (default: a zero actor)")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    results = {"seconds": args.seconds, "command": COMMAND, "imu_noise": IMU_NOISE,
               "baseline_configs": BASELINES,
               "started": time.strftime("%Y-%m-%d %H:%M:%S"), "ideal": [], "noisy": []}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="estimator_bench-") as tmp:
        if args.bundle:
            bundle = Path(args.bundle)
        else:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from deploy_bench import make_bundle

            bundle = make_bundle(Path(tmp), output_scale=0.0)[1]
        results["bundle"] = str(args.bundle or "zero actor + gait prior")
        for key, noisy in (("ideal", False), ("noisy", True)):
            for case, gap in CASES.items():
                for engine in ("pybullet", "mujoco"):
                    row = run_case(bundle, engine, gap, args.seconds, noisy, Path(tmp))
                    results[key].append({"case": case, "dynamics": gap, **row})
            title = ("simulated IMU (exact)" if not noisy else
                     "noisy IMU and joint rates (see the module docstring)")
            table(f"{title}: {args.seconds:g} s at vx {COMMAND[0]} m/s, "
                  f"{results['bundle']}; errors in m/s", results[key])
        results["baselines"] = [
            {"case": name, **run_case(bundle, engine, {}, args.seconds, True, Path(tmp), cfg)}
            for name, cfg in BASELINES.items() for engine in ("pybullet", "mujoco")]
        table("nominal dynamics, noisy sensors: the filter and its halves", results["baselines"])
    worst = max(r["rms_norm"] for r in results["ideal"])
    results["worst_rms_norm_ideal"], results["total_s"] = worst, time.perf_counter() - t0
    print(f"\nworst RMS norm (exact IMU) {worst:.4f} m/s: goal <= {GOAL_RMS_M_S} "
          f"{'met' if worst <= GOAL_RMS_M_S else 'NOT met'}; {results['total_s']:.0f} s")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
