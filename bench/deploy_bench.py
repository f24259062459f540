"""Deploy-runtime costs in one run: actor inference, tick work, period error, logger.

    .venv/bin/python bench/deploy_bench.py            # full: about 20 s on 2 cores
    .venv/bin/python bench/deploy_bench.py --quick    # smoke check: about 10 s

Nothing is trained. An untrained SAC agent with the default sizes (256x256) for servo_dog's
default run config (obs 47, 12 joints), its normaliser fed random data, is exported with
`agents.export.export_actor` and published as a bundle in a temporary folder. Its output
layer is scaled by 0.1 so the untrained policy stays near the nominal trot and the sim
episodes run their full length (timing does not depend on weight values). Figures are in
microseconds and describe this machine and its load at the time; tables also go to
`bench/out/deploy_bench.json`.

1. inference: one observation (batch 1) per call of the exported actor with LiteRT and
   tf.lite (`PolicyRunner`), the same MLP in NumPy matmuls (checked against LiteRT to 1e-5
   first), and, for reference, the agent's compiled `act` and plain TF eager (a few hundred
   calls). Backends run round-robin in rounds (the order rotating), so machine noise hits
   all alike; p50/p99 are over all calls. Goal: LiteRT p99 <= 25 us.
2. tick work against a simulated body (`gaitforge.control.deploy.deploy`, simulated time).
   `work` is the runtime's own figure (read -> obs -> actor -> safety -> write, where write
   includes the physics step), over all ticks (soft start and shutdown included); `tick`
   times the whole `Deployment.tick` (also log_tick and the sim's fall-check hook).
   On policy ticks the work is split into the body's `read`, the physics `step` (timed by
   wrapping SimulatedRobot.write) and `runtime` = work - read - step (obs, actor, mapper,
   safety): the part that runs unchanged on the robot.
3. period error: lateness (wake time - absolute deadline) of FixedRateLoop at 50/200/500 Hz,
   plain and after `setup_realtime` (what this machine allows), with `bench/loop_timing.py`'s
   `measure` in a child process (the real-time set-up cannot be undone).
4. logger: `EpisodeLogger.log_tick` per call for servo_dog sizes, back to back (the writer
   thread competes for the GIL, a worst case), and amortised = (first call -> close()
   returned) / ticks, which includes everything the background writer did.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from unittest import mock

import numpy as np

OUT = Path(__file__).resolve().parent / "out" / "deploy_bench.json"
GOAL_P99_US = 25.0


def pcts(samples_s) -> dict:
    a = np.asarray(samples_s, np.float64) * 1e6
    return {"p50_us": float(np.percentile(a, 50)), "p99_us": float(np.percentile(a, 99)),
            "n": int(a.size)}


def table(title: str, header: list[str], rows: list[list]) -> None:
    cells = [[f"{c:.1f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for r in cells:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)), flush=True)


# ---- the bundle ---------------------------------------------------------------------------
def make_bundle(root: Path, output_scale: float = 0.1):
    """(agent, bundle path): an untrained default-size SAC actor for servo_dog, exported, its
    output layer's weights scaled by `output_scale` (0: the actor outputs zeros, and the gait
    prior alone walks; bench/estimator_bench.py)."""
    from gaitforge.agents import config_class, make_agent
    from gaitforge.agents.export import export_actor, normalizer_record, random_observations
    from gaitforge.cli.run_config import compose, load_run_config
    from gaitforge.control.bundle import manifest, publish_bundle
    from gaitforge.control.policy_io import ActionMapper, ObservationBuilder
    from gaitforge.robots.spec import load_robot_spec

    cfg = load_run_config()
    spec = load_robot_spec(cfg.env.robot)
    builder = ObservationBuilder(spec, cfg.env.observation, cfg.env.action.gait)
    mapper = ActionMapper(spec, cfg.env.action)
    agent = make_agent("sac", config_class("sac")(), builder.size, spec.n_joints, seed=0)
    out_w = agent.actor.params[f"l{agent.actor.n_layers - 1}/w"]
    out_w.assign(out_w * output_scale)  # see the module docstring
    agent.observe(np.random.default_rng(0).normal(0.2, 2.0, (2000, builder.size)))
    staging = root / "staging"
    staging.mkdir()
    parity = export_actor(agent, staging, random_observations(agent, 256))
    fields = manifest(spec=spec, observation_layout=builder.layout,
                      normalizer=normalizer_record(agent), action_layout=mapper.layout,
                      control_dt_s=cfg.env.sim.control_dt_s,
                      source={"run": "bench/deploy_bench.py (untrained)", "checkpoint": None,
                              "agent": "sac", "config": compose()},
                      parity=parity)
    publish_bundle(staging, root / "bundle", fields, overwrite=True)
    return agent, root / "bundle"


def numpy_actor(agent):
    """The exported actor in NumPy: normalise, clip, ReLU MLP, tanh of the mean half."""
    norm, net, act_dim = agent.obs_norm, agent.actor, agent.act_dim
    mean, inv_std, clip = norm.mean.numpy(), norm.inv_std.numpy(), np.float32(norm.clip)
    layers = [(net.params[f"l{i}/w"].numpy(), net.params[f"l{i}/b"].numpy())
              for i in range(net.n_layers)]
    assert not net.layer_norm
    *hidden, (w_out, b_out) = layers
    w_out, b_out = np.ascontiguousarray(w_out[:, :act_dim]), b_out[:act_dim]  # mean half only

    def act(obs: np.ndarray) -> np.ndarray:
        x = (obs - mean) * inv_std if norm.enabled else obs.astype(np.float32)
        np.clip(x, -clip, clip, out=x)
        for w, b in hidden:
            x = x @ w
            x += b
            np.maximum(x, 0.0, out=x)
        return np.tanh(x @ w_out + b_out)

    return act


# ---- 1. inference -------------------------------------------------------------------------
def bench_inference(agent, bundle: Path, rounds: int, calls: int, tf_calls: int) -> dict:
    import tensorflow as tf

    from gaitforge.agents.export import random_observations
    from gaitforge.control.runner import PolicyRunner

    obs = random_observations(agent, 64, seed=1)
    litert = PolicyRunner(bundle, backend="litert")
    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice
        warnings.simplefilter("ignore")
        tflite = PolicyRunner(bundle, backend="tflite")
    np_act = numpy_actor(agent)
    ref = np.stack([litert.act(o) for o in obs])
    diff = float(np.max(np.abs(np.stack([np_act(o) for o in obs]) - ref)))
    if diff > 1e-5:
        raise SystemExit(f"NumPy actor differs from LiteRT by {diff:.3g} (> 1e-5)")
    batches = obs[:, None, :]
    tf_obs = [tf.constant(b) for b in batches]
    eager_actor = agent.deterministic_actor().action  # the same computation, not compiled
    fns = {  # name -> (call(i), calls per round)
        "litert": (lambda i: litert.act(obs[i]), calls),
        "tf.lite": (lambda i: tflite.act(obs[i]), calls),
        "numpy": (lambda i: np_act(obs[i]), calls),
        "tf act (compiled)": (lambda i: agent.act(batches[i], deterministic=True), tf_calls),
        "tf eager": (lambda i: eager_actor(tf_obs[i]).numpy(), tf_calls),
    }
    for fn, _ in fns.values():  # warm-up (tracing, allocation)
        for i in range(20):
            fn(i)
    names = list(fns)
    samples = {n: [] for n in names}
    clock, n_obs = time.perf_counter_ns, len(obs)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            fn, n = fns[name]
            t = np.empty(n, np.int64)
            for k in range(n):
                t0 = clock()
                fn(k % n_obs)
                t[k] = clock() - t0
            samples[name].append(t)
    res = {n: pcts(np.concatenate(samples[n]) * 1e-9) for n in names}
    res["_numpy_vs_litert_max_abs_diff"] = diff
    res["_goal"] = {"litert_p99_us_max": GOAL_P99_US,
                    "met": res["litert"]["p99_us"] <= GOAL_P99_US}
    return res


# ---- 2. tick work -------------------------------------------------------------------------
def bench_ticks(bundle: Path, body: str, duration_s: float, log_dir: str) -> dict:
    import gaitforge.control.deploy as dep
    from gaitforge.cli.bodies import sim_robot
    from gaitforge.control.deploy import clock_and_sleep
    from gaitforge.control.runtime import deploy, load_runtime, new_log_path

    clock, sleep = clock_and_sleep(False)
    runtime = load_runtime(bundle, clock)
    robot = sim_robot(runtime.spec, body.split(":", 1)[1], runtime.control_dt_s,
                      (0.3, 0.0, 0.0), stride_hz=runtime.builder.gait.frequency_hz)
    read_s, step_s, policy, tick_s = [], [], [], []
    inner_read, inner_step = robot.body.read, robot.body.step

    def timed_read():
        t0 = time.perf_counter()
        state = inner_read()
        read_s.append(time.perf_counter() - t0)
        return state

    def timed_step(*args):
        t0 = time.perf_counter()
        inner_step(*args)
        step_s.append(time.perf_counter() - t0)

    def observe(state, action, command, phase):
        policy.append(action is not None)
        robot.observe(state, action, command, phase)

    robot.body.read, robot.body.step = timed_read, timed_step
    dep_tick, deployments = dep.Deployment.tick, []

    def tick(self, info):
        t0 = time.perf_counter()
        keep_going = dep_tick(self, info)
        tick_s.append(time.perf_counter() - t0)
        if not deployments:
            deployments.append(self)
        return keep_going

    t0 = time.perf_counter()
    with mock.patch.object(dep.Deployment, "tick", tick):
        report = deploy(runtime, robot, duration_s=duration_s, command=(0.3, 0.0, 0.0),
                        clock=clock, sleep=sleep, log_path=new_log_path(log_dir, "bench"),
                        metadata={"body": body}, on_tick=observe)
    wall_s = time.perf_counter() - t0
    robot.close()
    work_a = np.array(deployments[0].result.work_s)
    n = len(work_a)
    # safety.start() reads once before the loop; every tick then reads once and writes once
    read_a, step_a = np.array(read_s[-n:]), np.array(step_s)
    pol = np.array(policy)
    assert len(step_a) == len(pol) == n
    runtime_a = work_a - read_a - step_a
    return {"body": body, "backend": report["backend"], "ticks": n,
            "policy_ticks": int(pol.sum()), "fell": report["fell"], "wall_s": wall_s,
            "end_phase": report["end_phase"],
            "work_all": {"p50_us": report["work_p50_us"], "p99_us": report["work_p99_us"]},
            "tick_all": pcts(tick_s),
            "work_policy": pcts(work_a[pol]), "read_policy": pcts(read_a[pol]),
            "step_policy": pcts(step_a[pol]), "runtime_policy": pcts(runtime_a[pol]),
            "step_share_of_work_policy": float(step_a[pol].sum() / work_a[pol].sum())}


# ---- 3. period error (child process) ------------------------------------------------------
def loop_timing_child(seconds: float, work_us: float, spin_us: float) -> None:
    """Runs in its own process: loop_timing.measure, plain rows then real-time rows."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import loop_timing

    from gaitforge.control.loop import setup_realtime

    rows = []
    work_s, spin_s = work_us * 1e-6, spin_us * 1e-6
    for rate in loop_timing.RATES_HZ:
        rows.append({"mode": "plain", "hz": rate,
                     **loop_timing.measure(rate, seconds, work_s, spin_s)})
    report = setup_realtime(priority=80, cpus={max(os.sched_getaffinity(0))})
    mode = "rt" if len(report.succeeded()) == len(report.steps) else "rt (partial)"
    for rate in loop_timing.RATES_HZ:
        rows.append({"mode": mode, "hz": rate,
                     **loop_timing.measure(rate, seconds, work_s, spin_s)})
    print(json.dumps({"rows": rows, "realtime_setup": report.lines()}))


def bench_loop_timing(seconds: float, work_us: float, spin_us: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--loop-child",
           "--loop-seconds", str(seconds), "--loop-work-us", str(work_us),
           "--loop-spin-us", str(spin_us)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return {"seconds_per_row": seconds, "work_us": work_us, "busy_wait_us": spin_us,
            **json.loads(done.stdout.strip().splitlines()[-1])}


# ---- 4. logger ----------------------------------------------------------------------------
def bench_logger(n_ticks: int, folder: Path) -> dict:
    from gaitforge.control.logger import EpisodeLogger
    from gaitforge.robots.types import JointCommand, RobotState

    n, obs_dim = 12, 47
    rng = np.random.default_rng(0)
    state = RobotState(time_s=0.0, joint_pos_rad=rng.normal(size=n),
                       joint_vel_rad_s=rng.normal(size=n), imu_quat_wxyz=np.array([1.0, 0, 0, 0]),
                       gyro_rad_s=rng.normal(size=3), accel_m_s2=np.array([0, 0, 9.81]),
                       joint_torque_nm=rng.normal(size=n))
    obs, action = rng.normal(size=obs_dim).astype(np.float32), rng.uniform(-1, 1, n)
    command = JointCommand(position_rad=rng.normal(size=n), kp_nm_per_rad=np.full(n, 5.0),
                           kd_nm_s_per_rad=np.full(n, 0.2))
    timing = {"deadline_s": 0.0, "lateness_s": 1e-5, "work_s": 1e-4, "skipped": 0}
    path = folder / "logger_bench.gflog"
    logger = EpisodeLogger(path, {"robot": "servo_dog", "body": "bench"}, n_joints=n,
                           obs_dim=obs_dim)
    per_call = np.empty(n_ticks, np.int64)
    clock = time.perf_counter_ns
    t_start = clock()
    for k in range(n_ticks):
        t0 = clock()
        logger.log_tick(k, state, obs, action, command, timing)
        per_call[k] = clock() - t0
    t_close = clock()
    logger.close({"outcome": "ok"})
    t_end = clock()
    return {"ticks": n_ticks, "log_tick": pcts(per_call * 1e-9),
            "close_ms": (t_end - t_close) * 1e-6,
            "amortised_us_per_tick": (t_end - t_start) * 1e-3 / n_ticks,
            "bytes_per_tick": path.stat().st_size / n_ticks}


# ---- main ---------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short smoke-check version")
    ap.add_argument("--loop-seconds", type=float, default=None, help="length of a timing row")
    ap.add_argument("--loop-work-us", type=float, default=100.0, help="busy work per tick")
    ap.add_argument("--loop-spin-us", type=float, default=500.0, help="spin before deadline")
    ap.add_argument("--loop-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    loop_s = args.loop_seconds or (0.5 if args.quick else 2.0)
    if args.loop_child:
        return loop_timing_child(loop_s, args.loop_work_us, args.loop_spin_us)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    q = args.quick
    rounds, calls, tf_calls = (5, 200, 10) if q else (20, 500, 15)
    sim_s, log_ticks = (2.0, 5000) if q else (10.0, 20000)
    results = {"quick": q, "cpus": sorted(os.sched_getaffinity(0)),
               "loadavg_start": os.getloadavg(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    print(f"cpus {results['cpus']}, load average {results['loadavg_start']}; times in us")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="deploy_bench-") as tmp:
        agent, bundle = make_bundle(Path(tmp))
        print(f"bundle exported in {time.perf_counter() - t0:.1f} s", flush=True)

        inf = results["inference"] = bench_inference(agent, bundle, rounds, calls, tf_calls)
        table(f"1. actor inference, batch 1 ({rounds} rounds round-robin; NumPy vs LiteRT max "
              f"|diff| {inf['_numpy_vs_litert_max_abs_diff']:.1e})", ["backend", "calls",
              "p50_us", "p99_us"], [[k, v["n"], v["p50_us"], v["p99_us"]]
                                    for k, v in inf.items() if not k.startswith("_")])
        print(f"goal LiteRT p99 <= {GOAL_P99_US:g} us: "
              f"{'met' if inf['_goal']['met'] else 'NOT met'}")

        ticks = results["ticks"] = [bench_ticks(bundle, b, sim_s, tmp)
                                    for b in ("sim:pybullet", "sim:mujoco")]
        keys = ("work_all", "tick_all", "work_policy", "read_policy", "step_policy",
                "runtime_policy")
        table(f"2. tick work, {sim_s:g} s of policy time (p50 / p99 us; *_policy: policy "
              "ticks only)", ["body", "ticks", "fell", *keys, "step/work"],
              [[t["body"], t["ticks"], t["fell"],
                *(f"{t[k]['p50_us']:.0f} / {t[k]['p99_us']:.0f}" for k in keys),
                f"{t['step_share_of_work_policy']:.2f}"] for t in ticks])

        lt = results["loop_timing"] = bench_loop_timing(loop_s, args.loop_work_us,
                                                        args.loop_spin_us)
        table(f"3. period error (lateness), {loop_s:g} s per row, work {args.loop_work_us:g} "
              f"us per tick, spin {args.loop_spin_us:g} us", ["mode", "Hz", "ticks",
              "late_p50", "late_p99", "late_max", "overruns"],
              [[r["mode"], r["hz"], r["ticks"], *(f"{r[f'lateness_{p}_s'] * 1e6:.2f}"
                                                   for p in ("p50", "p99", "max")),
                r["overruns"]]
               for r in lt["rows"]])
        print("real-time set-up:\n  " + "\n  ".join(lt["realtime_setup"]))

        lg = results["logger"] = bench_logger(log_ticks, Path(tmp))
        table("4. EpisodeLogger, servo_dog sizes (12 joints, obs 47)", ["ticks", "log_tick_p50",
              "log_tick_p99", "close_ms", "amortised_us/tick", "bytes/tick"],
              [[lg["ticks"], lg["log_tick"]["p50_us"], lg["log_tick"]["p99_us"],
                lg["close_ms"], lg["amortised_us_per_tick"], f"{lg['bytes_per_tick']:.0f}"]])
    results["loadavg_end"] = os.getloadavg()
    results["total_s"] = time.perf_counter() - t0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1))
    print(f"\n{results['total_s']:.0f} s in all; load average {results['loadavg_end']}; "
          f"wrote {OUT}")


if __name__ == "__main__":
    main()
