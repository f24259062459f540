"""System identification against robots with a reality gap, over a real pty, as a user runs it.

    .venv/bin/python bench/sysid_bench.py            # 5 draws, 30 s + 20 s of excitation each
    .venv/bin/python bench/sysid_bench.py --quick    # 2 draws, 10 s + 8 s: a smoke check

For each seeded draw of dynamics away from nominal (latency 0..30 ms in whole physics steps,
kp and kd scales 0.6..1.4, Coulomb friction 0.01..0.08 N m, armature 0.001..0.006 kg m^2):
  1. `gaitforge virtual-robot --dynamics GAP --support hung` serves the gap robot on ptys;
  2. `gaitforge excite --hw servo_dog_dynamixel --support hung` logs a fit run (seed 0) and a
     held-out run (seed 1) over the serial path (at most 60 s of excitation in all);
  3. `gaitforge sysid FIT --holdout HELD` fits latency_s, kp_scale, kd_scale,
     joint_friction_nm and armature_kg_m2, timed on the wall clock.
It prints, per draw, each parameter's truth, estimate and error; the latency in physics steps;
the held-out replay RMSE per joint with nominal and with fitted dynamics; and the fit time.
Then the null replay: a hung simulated log replayed in the same engine with the same dynamics
(max per-joint RMSE, and replay speed as a multiple of real time), in both engines.
Results also go to bench/out/sysid_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "sysid_bench.json"
FIT = ("latency_s", "kp_scale", "kd_scale", "joint_friction_nm", "armature_kg_m2")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MUJOCO_GL": "disable"}


def gaitforge(*args: str, check: bool = True) -> str:
    done = subprocess.run([sys.executable, "-m", "gaitforge.cli", *args], env=ENV,
                          capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"gaitforge {' '.join(args)} -> {done.returncode}\n{done.stdout}"
                           f"\n{done.stderr}")
    return done.stdout


def draw(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"latency_s": 0.002 * int(rng.integers(0, 16)),
            "kp_scale": float(rng.uniform(0.6, 1.4)), "kd_scale": float(rng.uniform(0.6, 1.4)),
            "joint_friction_nm": float(rng.uniform(0.01, 0.08)),
            "armature_kg_m2": float(rng.uniform(0.001, 0.006))}


def run_draw(seed: int, fit_s: float, held_s: float, folder: Path) -> dict:
    gap = draw(seed)
    (folder / "gap.yaml").write_text(yaml.safe_dump(gap))
    vr = subprocess.Popen([sys.executable, "-m", "gaitforge.cli", "virtual-robot", "--protocol",
                           "dynamixel", "--engine", "mujoco", "--dynamics",
                           str(folder / "gap.yaml"), "--support", "hung"],
                          stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        paths = {}
        while "serving" not in paths:
            key, _, value = vr.stdout.readline().partition(": ")
            paths[key if value else "serving"] = value.strip()
        logs = []
        for s, duration in ((0, fit_s), (1, held_s)):
            gaitforge("excite", "--hw", "servo_dog_dynamixel", "--port", paths["port"],
                      "--imu-port", paths["imu_port"], "--support", "hung", "--duration",
                      str(duration), "--seed", str(s), "--log-dir", str(folder / f"logs{s}"))
            logs.append(next((folder / f"logs{s}").glob("*.gflog")))
    finally:
        vr.terminate()
        vr.wait(timeout=30)
    t0 = time.perf_counter()
    gaitforge("sysid", str(logs[0]), "--holdout", str(logs[1]), "--fit", ",".join(FIT),
              "--out", str(folder / "fitted.yaml"), "--no-progress")
    fit_wall_s = time.perf_counter() - t0
    fitted = yaml.safe_load((folder / "fitted.yaml").read_text())
    prov = fitted.pop("provenance")
    before, after = np.array(prov["rmse_rad_before"]), np.array(prov["rmse_rad_after"])
    return {"seed": seed, "truth": gap, "fitted": {k: fitted[k] for k in FIT},
            "together": prov["identifiable_only_together"],
            "latency_steps": {"truth": round(gap["latency_s"] / 0.002),
                              "fitted": prov["latency_steps"]},
            "rmse_before": before.tolist(), "rmse_after": after.tolist(),
            "joints_3x_better": int(np.sum(before >= 3 * after)), "fit_wall_s": fit_wall_s}


def null_replay(folder: Path) -> dict:
    out = {}
    for engine in ("mujoco", "pybullet"):
        logs = folder / f"null-{engine}"
        gaitforge("excite", "--body", f"sim:{engine}", "--support", "hung", "--duration",
                  "20", "--log-dir", str(logs))
        log = next(logs.glob("*.gflog"))
        gaitforge("replay", str(log), "--engine", engine, "--out", str(logs / "replay"))
        (entry,) = json.loads((logs / "replay" / "report.json").read_text())["logs"].values()
        out[engine] = {"max_joint_rmse_rad": max(j["rmse_rad"] for j in
                                                  entry["joints"].values()),
                       "speed_x_realtime": entry["speed_x_realtime"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 draws, short logs")
    ap.add_argument("--draws", type=int)
    args = ap.parse_args()
    n = args.draws or (2 if args.quick else 5)
    fit_s, held_s = (10.0, 8.0) if args.quick else (30.0, 20.0)
    results = {"null_replay": None, "draws": []}
    with tempfile.TemporaryDirectory(prefix="sysid_bench-") as tmp:
        results["null_replay"] = null_replay(Path(tmp))
        print("null replay (hung, same engine, same dynamics):")
        for engine, r in results["null_replay"].items():
            print(f"  {engine:9s} max joint RMSE {r['max_joint_rmse_rad']:.1e} rad, "
                  f"{r['speed_x_realtime']:.0f}x real time")
        for seed in range(n):
            folder = Path(tmp) / f"draw{seed}"
            folder.mkdir()
            r = run_draw(seed, fit_s, held_s, folder)
            results["draws"].append(r)
            report(r)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1))
    print(f"\nwritten: {OUT}")


def report(r: dict) -> None:
    lat = r["latency_steps"]
    exact = "exact" if lat["truth"] == lat["fitted"] else "MISSED"
    print(f"\ndraw {r['seed']}: fit took {r['fit_wall_s']:.0f} s; latency {lat['truth']} -> "
          f"{lat['fitted']} physics steps ({exact}); only together: {r['together'] or 'none'}")
    print(f"  {'parameter':28s} {'truth':>10s} {'fitted':>10s} {'error':>8s}")
    for name in FIT[1:]:
        t, f = r["truth"][name], r["fitted"][name]
        print(f"  {name:28s} {t:10.4g} {f:10.4g} {100 * (f - t) / t:7.1f}%")
    before, after = np.array(r["rmse_before"]), np.array(r["rmse_after"])
    print(f"  held-out RMSE (rad) nominal -> fitted, per joint; {r['joints_3x_better']}/12 "
          "joints at least 3x lower")
    print("   " + " ".join(f"{b:.1e}->{a:.1e}" for b, a in zip(before, after, strict=True)))


if __name__ == "__main__":
    main()
