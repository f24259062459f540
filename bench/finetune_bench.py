"""The round trip, as a user repeats it with a real robot: deploy -> logs -> sysid -> finetune
-> export -> deploy again, against virtual robots with a reality gap.

    .venv/bin/python bench/finetune_bench.py --run RUN             # 3 gap draws, full
    .venv/bin/python bench/finetune_bench.py --run RUN --quick     # 1 draw, short everything
    .venv/bin/python bench/finetune_bench.py --run RUN --seeds 0 --reuse runs/draw0-XXXX \
        --variants 'logs only' both --tag -v2       # the fine-tunes again on logged draw 0

RUN is a trained servo_dog run (ideally trained with `--set env.critic_inputs=estimated`, so
its critic is reused; otherwise a new critic warms up first); its bundle is exported if
missing. For each seeded gap draw (latency, gains, friction, armature, trunk mass, foot
friction away from nominal; draws 0, 3, ... are bad ones, see `draw`; `--weak-leg FL=0.35` adds
one leg whose servos sysid's default fit cannot tell apart from the others, see `weak_leg`):
  1. robot time: `gaitforge virtual-robot --dynamics GAP` (a fresh process per episode: a
     person stands the robot up again) serves the gap robot on ptys; the nominal bundle is
     deployed over serial for K episodes of 20 s at vx 0.3 m/s (at most 10 x 20 s = 200 s;
     `--explore SIGMA`: with that exploration noise on its actions, `deploy --explore`),
     and one 30 s hung excitation is logged;
  2. `gaitforge sysid --engine E` on the excitation log -> fitted.yaml (the actuators;
     `--per-leg NAME`: then `--start fitted.yaml --fit NAME/leg` on the same log ->
     fitted-legs.yaml, which the next stage starts from), then on the policy logs, walking,
     `--start fitted.yaml --fit trunk_mass_delta_kg,foot_friction` -> fitted-walk.yaml (what
     a hung robot does not show), which the fine-tunes take;
  3. three fine-tunes from RUN in engine E (where the dynamics were identified: the same values
     behave differently in the other engine), side by side on the same logs: around the identified
     dynamics only (`--sim-mix 1`), on the logs only (`--sim-mix 0`), and both (`0.5`),
     half of their fresh episodes commanded as the logs were (`--logged-commands`); each
     timed, each keeping the checkpoint it evaluated best (which it says); `--truth` fine-tunes
     around the gap's true dynamics instead (what perfect identification gives);
     `--variants retrain` also trains a policy from scratch around those dynamics with RUN's
     config (`gaitforge train RUN/config.yaml --dynamics FILE`: no logs, its last checkpoint);
  4. every policy (nominal and the three) is judged on the gap robot and on the nominal one:
     `gaitforge deploy --body sim:mujoco [--dynamics GAP] --noise-seed K`, 10 episodes of 20 s
     each with sensor noise seeds 0-9 (without noise every deploy of a policy is the same one
     trajectory), tracking error (vx with its standard deviation, vy, yaw rate) and falls from
     the simulator's truth (the serial path has none), and the share of policy ticks the
     deploy's rate limit held back (gap/nominal); and the forward error on the identified
     robot (fitted-walk.yaml, no randomisation): where it differs from the gap's, sysid missed
     what matters to that policy. `--reuse FOLDER --judge-only` judges an earlier run's
     fine-tunes again.
Prints one table per draw and writes bench/out/finetune_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "finetune_bench.json"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MUJOCO_GL": "disable"}
VARIANTS = {"dynamics only": 1.0, "logs only": 0.0, "both": 0.5}  # name: --sim-mix
RETRAIN = "retrain"  # from scratch around the dynamics, the parent's config: no logs
SECOND_STAGE = "trunk_mass_delta_kg,foot_friction"


def gaitforge(*args: str, check: bool = True) -> str:
    done = subprocess.run([sys.executable, "-m", "gaitforge.cli", *args], env=ENV,
                          capture_output=True, text=True)
    if check and done.returncode not in (0, 1):
        raise RuntimeError(f"gaitforge {' '.join(args)} -> {done.returncode}\n{done.stdout}"
                           f"\n{done.stderr[-2000:]}")
    return done.stdout


def draw(seed: int) -> dict:
    """A drive train the policy never trained on: gearbox friction, heavy rotors, weak and late
    servos, a heavy trunk on slippery feet. Every third draw (0, 3, ...) is a bad one (friction
    0.2-0.25 N m, rotors 0.007-0.009 kg m^2 against the spec's 0.002, kp x0.6-0.7, 26-34 ms):
    a policy of the default job walks at about half its command there. The others are milder.
    A gap too far for any policy on the trot leaves a fine-tune nothing to find: with rotors at
    0.025 kg m^2 (the earlier draws) the trot alone did not move, and a fine-tune given the
    gap's true dynamics learned to stand."""
    rng = np.random.default_rng(100 + seed)
    bad = seed % 3 == 0
    u = rng.uniform
    return {"latency_s": 0.002 * int(rng.integers(13, 18) if bad else rng.integers(5, 16)),
            "kp_scale": float(u(0.6, 0.7) if bad else u(0.7, 0.9)),
            "kd_scale": float(u(0.8, 1.0) if bad else u(0.7, 1.3)),
            "joint_friction_nm": float(u(0.2, 0.25) if bad else u(0.05, 0.2)),
            "armature_kg_m2": float(u(0.007, 0.009) if bad else u(0.003, 0.007)),
            "trunk_mass_delta_kg": float(u(0.3, 0.5) if bad else u(0.0, 0.4)),
            "foot_friction": float(u(0.5, 0.7) if bad else u(0.5, 1.0))}


def weak_leg(arg: str | None) -> dict:
    """`--weak-leg LEG=FACTOR` as a gap entry: that leg's three servos at FACTOR x the gains and
    torque limit (`motor_strength`, one value per joint; a tired servo pack, a worn gearbox).
    sysid's default fit has no `motor_strength` and no value per joint, so the gap keeps what
    that fit cannot name (`--per-leg motor_strength` adds a stage that can)."""
    from gaitforge.robots.spec import load_robot_spec
    from gaitforge.sim.dynamics import SCHEMA
    from gaitforge.sim.sysid import legs

    if not arg:
        return {}
    spec = load_robot_spec("servo_dog")
    joints_of, (low, high) = legs(spec), (SCHEMA["motor_strength"].low,
                                          SCHEMA["motor_strength"].high)
    leg, _, factor = arg.partition("=")
    try:
        value = float(factor)
    except ValueError:
        value = 0.0
    if leg not in joints_of or not low <= value <= high:
        raise SystemExit(f"--weak-leg {arg!r}: expected LEG=FACTOR, LEG one of "
                         f"{', '.join(joints_of)} and FACTOR in [{low:g}, {high:g}] "
                         "(motor_strength's range)")
    strength = [1.0] * spec.n_joints
    for joint in joints_of[leg]:
        strength[joint] = value
    return {"motor_strength": strength}


def serve(gap: Path, support: str):
    vr = subprocess.Popen([sys.executable, "-m", "gaitforge.cli", "virtual-robot", "--protocol",
                           "dynamixel", "--engine", "mujoco", "--dynamics", str(gap),
                           "--support", support], stdout=subprocess.PIPE, text=True, env=ENV)
    paths = {}
    while "serving" not in paths:
        key, _, value = vr.stdout.readline().partition(": ")
        paths[key if value else "serving"] = value.strip()
    return vr, ["--hw", "servo_dog_dynamixel", "--port", paths["port"], "--imu-port",
                paths["imu_port"]]


def robot_time(bundle: Path, gap: Path, folder: Path, episodes: int, seconds: float,
               explore: float = 0.0) -> dict:
    """Episodes of the nominal bundle over serial on the gap robot (with `explore`: `deploy
    --explore`, episode k's noise seeded k), and one hung excitation."""
    for k in range(episodes):
        vr, hw = serve(gap, "ground")
        noise = ["--explore", str(explore), "--explore-seed", str(k)] if explore else []
        try:
            gaitforge("deploy", str(bundle), *hw, "--duration", str(seconds), "--log-dir",
                      str(folder / "policy"), *noise)
        finally:
            vr.terminate()
            vr.wait(timeout=30)
    vr, hw = serve(gap, "hung")
    try:
        gaitforge("excite", *hw, "--support", "hung", "--duration", "30", "--log-dir",
                  str(folder / "excite"))
    finally:
        vr.terminate()
        vr.wait(timeout=30)
    return {"policy_logs": sorted(map(str, (folder / "policy").glob("*.gflog"))),
            "excitation": str(next((folder / "excite").glob("*.gflog")))}


def parents_reward(run: Path) -> list[str]:
    """--set items zeroing the reward terms today's robot and task configs add to RUN's saved
    config (`train RUN/config.yaml` composes today's layers under it; a run trained before
    those terms has none of them): a retrain then trains on the parent's reward."""
    from gaitforge.cli.run_config import compose

    saved = yaml.safe_load((run / "config.yaml").read_text())["env"]["task"].get("rewards", {})
    now = compose(run / "config.yaml")["env"]["task"].get("rewards", {})
    return [a for term in sorted(set(now) - set(saved))
            for a in ("--set", f"env.task.rewards.{term}=0")]


def judge(bundle: Path, dynamics: Path | None, episodes: int, folder: Path) -> dict:
    """Mean tracking errors and falls over `episodes` 20 s deploys on a simulated body, each
    with its own sensor noise (--noise-seed: without it every deploy is the same), and the
    standard deviation of the forward error between them."""
    rows = []
    for ep in range(episodes):
        out = gaitforge("deploy", str(bundle), "--body", "sim:mujoco", "--duration", "20",
                        "--log-dir", str(folder / f"judge{ep}"), "--noise-seed", str(ep),
                        *(["--dynamics", str(dynamics)] if dynamics else []))
        values = dict(re.findall(r"^\s+(\w+)\s+(\S+)$", out, flags=re.M))
        rows.append({k: float(values[k]) for k in ("vx_tracking_error", "vy_tracking_error",
                                                   "yaw_rate_error", "vx_mean",
                                                   "rate_limited_share")}
                    | {"fell": values.get("fell") == "True"})
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} | {
        "vx_tracking_error_sd": float(np.std([r["vx_tracking_error"] for r in rows]))}


def run_draw(seed: int, run: str, bundle: Path, runs: Path, args) -> dict:
    if args.reuse:  # an earlier run's robot time and sysid, for the fine-tunes again
        folder, robot_s = Path(args.reuse), 0.0
        gap = folder / "gap.yaml"
        logs = {"policy_logs": sorted(map(str, (folder / "policy").glob("*.gflog")))}
    else:
        folder = Path(tempfile.mkdtemp(prefix=f"draw{seed}-", dir=runs))
        gap = folder / "gap.yaml"
        gap.write_text(yaml.safe_dump(draw(seed) | weak_leg(args.weak_leg)))
        t0 = time.perf_counter()
        logs = robot_time(bundle, gap, folder, args.episodes, args.seconds, args.explore)
        robot_s = time.perf_counter() - t0
        gaitforge("sysid", logs["excitation"], "--out", str(folder / "fitted.yaml"),
                  "--engine", args.engine, "--no-progress")
        if args.per_leg:  # the healthy legs set the whole robot's values; then each leg's
            gaitforge("sysid", logs["excitation"], "--start", str(folder / "fitted.yaml"),
                      "--fit", f"{args.per_leg}/leg", "--out", str(folder / "fitted-legs.yaml"),
                      "--engine", args.engine, "--no-progress")
    hung = folder / "fitted-legs.yaml"  # where there was a stage per leg
    if not hung.is_file():
        hung = folder / "fitted.yaml"
    dynamics = gap if args.truth else folder / "fitted-walk.yaml"
    if not dynamics.is_file():  # a reused draw from before the second stage gets it now
        t0 = time.perf_counter()
        gaitforge("sysid", *logs["policy_logs"], "--start", str(hung),
                  "--fit", SECOND_STAGE, "--generations", "12", "--out", str(dynamics),
                  "--engine", args.engine, "--no-progress")
        print(f"  second-stage sysid: {time.perf_counter() - t0:.0f} s", flush=True)
    result = {"seed": seed, "gap": yaml.safe_load(gap.read_text()), "robot_wall_s": robot_s,
              "explore": _explored(logs["policy_logs"]),
              "finetune_set": args.set, "reused": args.reuse or "",
              "logged_commands": ("the command's default" if args.logged_commands is None
                                  else args.logged_commands),
              "walking_stage_from": hung.name,
              "around": "the gap's true dynamics" if args.truth else "sysid's fit",
              "policy_seconds_logged": args.episodes * args.seconds,
              "identified": _identified(folder / "fitted-walk.yaml"), "policies": {}}
    bodies = {"gap": gap, "nominal": None, "fitted": folder / "fitted-walk.yaml"}

    def judged(policy: Path, tag: str) -> dict:  # on the gap, nominal and identified robots
        return {body: judge(policy, dyn, args.judge, folder / f"j-{tag}-{body}")
                for body, dyn in bodies.items()}

    result["policies"]["nominal"] = judged(bundle, "nominal")
    for name in args.variants:
        tag = f"ft{seed}-{name.replace(' ', '-')}{args.tag}"
        t0 = time.perf_counter()
        if args.judge_only:
            said = "(judged again: fine-tuned earlier)"
        elif name == RETRAIN:
            gaitforge("train", str(Path(run) / "config.yaml"), "--dynamics", str(dynamics),
                      "--name", tag, "--no-progress", "--set", f"env.sim.engine={args.engine}",
                      "--set", f"train.total_env_steps={args.retrain_steps}",
                      *parents_reward(Path(run)))
            said = f"policy: its last checkpoint, {args.retrain_steps} steps from scratch"
        else:
            said = gaitforge("finetune", run, "--logs", *logs["policy_logs"], "--dynamics",
                             str(dynamics), "--sim-mix", str(VARIANTS[name]), "--steps",
                             str(args.steps), "--critic-warmup", str(args.critic_warmup),
                             "--name", tag, "--no-progress", "--set",
                             f"env.sim.engine={args.engine}",
                             *([] if args.logged_commands is None else
                               ["--logged-commands", str(args.logged_commands)]),
                             *[a for kv in args.set for a in ("--set", kv)])
        tune_s = time.perf_counter() - t0  # judged again only: nothing ran, ~0
        if not args.judge_only:
            gaitforge("export", tag)
        tuned = runs / tag / "bundle"
        result["policies"][name] = {
            "finetune_wall_s": tune_s, "chosen": said.strip().splitlines()[-1],
            **judged(tuned, tag)}
    return result


def _explored(paths: list[str]) -> dict | None:
    """The exploration noise the policy logs were deployed with (`deploy --explore`), if any."""
    from gaitforge.control.logger import read_log

    return read_log(paths[0]).metadata.get("explore") if paths else None


def _identified(path: Path) -> dict:
    """The fitted values of a dynamics file (its provenance left out); none when absent."""
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text())
    fitted = {name.partition("/")[0] for name in data["provenance"]["fit"]}  # kp_scale/leg
    return {k: v for k, v in data.items() if k in fitted}


def report(r: dict) -> None:
    print(f"\ndraw {r['seed']}: gap {r['gap']}")
    print(f"  fine-tuned around {r['around']}")
    if "identified" in r:
        print(f"  identified: {r['identified']}")
    print(f"  robot time: {r['policy_seconds_logged']:.0f} s of policy logged " + (
        f"(reused: {r['reused']})" if r.get("reused") else
        f"({r['robot_wall_s']:.0f} s wall, excitation included)")
        + (f", explored: {r['explore']}" if r.get("explore") else ""))
    print(f"  {'policy':14s} {'gap: vx err (sd)':>16s} {'vy err':>7s} {'yaw err':>8s} {'falls':>6s}"
          f" {'nominal: vx err':>16s} {'vy err':>7s} {'yaw err':>8s} {'falls':>6s}"
          f" {'rate-limited':>12s} {'fine-tune s':>12s} {'fitted: vx err':>15s}")
    for name, p in r["policies"].items():
        g, n = p["gap"], p["nominal"]
        sd = f"({g['vx_tracking_error_sd']:.3f})"
        print(f"  {name:14s} {g['vx_tracking_error']:8.3f}{sd:>8s} {g['vy_tracking_error']:7.3f} "
              f"{g['yaw_rate_error']:8.3f} {g['fell']:6.2f} {n['vx_tracking_error']:16.3f} "
              f"{n['vy_tracking_error']:7.3f} {n['yaw_rate_error']:8.3f} {n['fell']:6.2f} "
              f"{g['rate_limited_share']:5.3f}/{n['rate_limited_share']:5.3f} "
              f"{p.get('finetune_wall_s', 0):12.0f} {p['fitted']['vx_tracking_error']:15.3f}")
        if "chosen" in p:
            print(f"  {'':14s} {p['chosen']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a trained servo_dog run (name or folder)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--draws", type=int)
    ap.add_argument("--seeds", type=int, nargs="+",
                    help="these draws only (0, 3, ... are bad ones)")
    ap.add_argument("--engine", choices=["mujoco", "pybullet"], default="mujoco",
                    help="identify and fine-tune in this engine (default mujoco: its replay is "
                    "fast, sysid takes 1-2 minutes; in pybullet over 15). The virtual robot is "
                    "MuJoCo, so with mujoco what is left of the gap is what sysid missed")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting of every fine-tune (gaitforge finetune --set), e.g. "
                    "env.task.yaw_rate_window_s=0.4")
    ap.add_argument("--logged-commands", type=float, metavar="F",
                    help="gaitforge finetune --logged-commands: that share of the fresh "
                    "episodes commanded as the logs were (default: the command's, 0.5; the "
                    "README's tables before it ran with 0)")
    ap.add_argument("--steps", type=int, help="steps of every fine-tune (default 80000; "
                    "--quick 2000)")
    ap.add_argument("--variants", nargs="+", choices=[*VARIANTS, RETRAIN],
                    default=list(VARIANTS), metavar="NAME", help="these fine-tunes only: "
                    + ", ".join(f"'{v}'" for v in VARIANTS) + f"; or '{RETRAIN}': train "
                    "from scratch around the dynamics with RUN's config (not a fine-tune, "
                    "no logs; not by default)")
    ap.add_argument("--retrain-steps", type=int, help="env steps of 'retrain' (default "
                    "140000, --quick 2000)")
    ap.add_argument("--reuse", metavar="FOLDER", help="a draw folder of an earlier run (its "
                    "gap.yaml, policy logs and fitted.yaml): no robot time, no sysid (but "
                    "the second stage when it has none), the fine-tunes again (with --seeds "
                    "naming its draw)")
    ap.add_argument("--judge-only", action="store_true", help="with --reuse: judge the "
                    "fine-tunes of an earlier run again (their runs, named by --tag, must "
                    "exist; their bundles are judged as they are), fine-tuning nothing")
    ap.add_argument("--judge", type=int, help="deploys per policy and body, each with its own "
                    "sensor noise (default 10; --quick 1)")
    ap.add_argument("--truth", action="store_true", help="fine-tune around the gap's true "
                    "dynamics, not sysid's fit: what a perfect identification would give")
    ap.add_argument("--tag", default="", help="suffix of the fine-tune run names")
    ap.add_argument("--weak-leg", metavar="LEG=FACTOR", help="add to each drawn gap one leg "
                    "(FR, FL, RR, RL) whose servos have FACTOR x the gains and torque limit: "
                    "a gap sysid's default fit cannot name (no motor_strength, nothing per leg)")
    ap.add_argument("--per-leg", metavar="NAME", help="after the hung fit, fit NAME per leg "
                    "on the same excitation (e.g. motor_strength: a robot whose legs differ)")
    ap.add_argument("--explore", type=float, default=0.0, metavar="SIGMA", help="robot time "
                    "deploys with `--explore SIGMA` (exploration noise, logged; default 0)")
    args = ap.parse_args()
    args.episodes, args.seconds = (2, 10.0) if args.quick else (10, 20.0)
    args.steps = args.steps or (2000 if args.quick else 80_000)
    args.retrain_steps = args.retrain_steps or (2000 if args.quick else 140_000)
    args.judge = args.judge or (1 if args.quick else 10)
    if (args.weak_leg or args.per_leg) and args.reuse:
        ap.error("--weak-leg and --per-leg shape a new draw's gap and fit; a reused draw "
                 "keeps its gap.yaml and fits (fitted-legs.yaml where it has one)")
    weak_leg(args.weak_leg)  # a malformed one fails before any robot time
    if args.judge_only and not args.reuse:
        ap.error("--judge-only needs --reuse (the draw whose fine-tunes are judged again)")
    args.critic_warmup = 500 if args.quick else 5000
    runs = Path(os.environ.get("GAITFORGE_RUNS", "runs")).resolve()
    ENV["GAITFORGE_RUNS"] = str(runs)
    run_dir = Path(args.run) if Path(args.run).is_dir() else runs / args.run
    bundle = run_dir / "bundle"
    if not (bundle / "bundle.json").is_file():
        gaitforge("export", str(run_dir))
    results = []
    for seed in args.seeds or range(args.draws or (1 if args.quick else 3)):
        results.append(run_draw(seed, str(run_dir), bundle, runs, args))
        report(results[-1])
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(results, indent=1))  # after every draw: a long run's so far
    print(f"\nwritten: {OUT}")


if __name__ == "__main__":
    main()
