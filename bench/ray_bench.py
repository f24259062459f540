"""Ray collection figures, each measured side by side in one run (these machines are noisy).

    python bench/ray_bench.py collect [--rounds 6 --seconds 8]  # 2 collectors against 1
    python bench/ray_bench.py train [--steps 12000 --warmup 4000 --train-rounds 2]
    python bench/ray_bench.py plain [--rounds 6 --seconds 8]  # the same, no Ray (baseline)
    python bench/ray_bench.py kill [--steps 9000]             # a collector SIGKILLed mid-run
    python bench/ray_bench.py walk [--budget-min 25]          # time-to-walk of the default job
    python bench/ray_bench.py                                 # collect, plain, train, kill

The job is the default `gaitforge train` (servo_dog walks in PyBullet, SAC 256x256, 4 envs
per collector), started on a local Ray (`ray.init()`: every core of this machine).

- collect: pure collection, no learning: 1 collector against 2, each with its own 4 envs and
  a copy of the actor (weights published once, so they act through TensorFlow as in
  training). Both pools are started and warmed first, then collect in turn for --seconds,
  the order alternating every round; transitions the learner received per second.
- plain: the same 2-against-1 with the collector's code in plain processes, no Ray: what the
  workload itself allows on this machine at that moment.
- train: end-to-end env steps/s of `gaitforge train` (the CLI's own builder) with the
  single-machine trainer (train.overlap, 1 worker), then on Ray with 1 and 2 collectors, same
  settings; the rate after warm-up (learning), the whole run's, and the learner's updates/s.
- kill: a Ray run whose collector 0 is SIGKILLed after warm-up: whether training went on,
  transitions lost or counted twice (the replay against the ledger of delivered batches, by
  count and sha256), and the time from the kill to the replacement's first batch.
- walk: bench/time_to_walk.py with `--set ray.enabled=true` (10-25 minutes).
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Ray starts its workers at nice 15; the single-machine trainer's env workers run at 0. Same
# footing for both (on a machine shared with other work, nice 15 collectors get its leftovers).
NICENESS = "RAY_worker_niceness"  # Ray's own spelling
os.environ.setdefault(NICENESS, "0")


def _run_config(sets: list[str]):
    from gaitforge.cli.run_config import load_run_config

    return load_run_config(None, sets)


def _learner_agent(run):
    """The default job's agent, and its one collector's vectorised env factory."""
    from gaitforge.agents import make_agent
    from gaitforge.cli.ray_train import collector_env
    from gaitforge.cli.run_config import env_fns

    factory, _ = env_fns(run)
    make = functools.partial(collector_env, factory, run.vec_env.num_envs)
    probe = make()
    critic = probe.single_critic_observation_space.shape[0]
    agent = make_agent(run.agent.name, run.agent, probe.single_observation_space.shape[0],
                       probe.single_action_space.shape[0], critic_obs_dim=critic)
    probe.close()
    return agent, make


def _warm_pool(collectors: int, agent, make):
    from gaitforge.agents.ray_collect import RayConfig, actor_state
    from gaitforge.agents.ray_trainer import CollectorPool

    spec = (agent.algo, agent.config, agent.obs_dim, agent.act_dim)
    pool = CollectorPool(make, spec, True, RayConfig(collectors=collectors), seed=collectors,
                         start_env_steps=0)
    weights = (0, pool.put(actor_state(agent)))
    for _ in range(2):  # TensorFlow loaded, the actor traced: every collector warm
        for i in range(collectors):
            pool.submit(i, weights)
        while pool.pending:
            pool.wait(timeout=120)
    return pool, weights


def _cpu_s(pids) -> float:
    """User + system CPU seconds of processes on this machine (/proc)."""
    total = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def collect_window(pool, weights, seconds: float) -> tuple[float, float, float]:
    """Over `seconds` of collection by every collector of `pool` (no learning): transitions/s,
    and the CPU seconds per 1000 transitions of the collectors and of this process."""
    pids = [b["pid"] for b in pool.describe()]
    for i in range(len(pool.actors)):
        pool.submit(i, weights)
    start, counted = time.perf_counter(), 0
    cpu0, own0 = _cpu_s(pids), time.process_time()
    while time.perf_counter() - start < seconds:
        for batch in pool.wait(timeout=0.5):
            if time.perf_counter() - start < seconds:
                counted += len(batch["rows"]["reward"])
                pool.submit(batch["collector"], weights)
    cpu, own = _cpu_s(pids) - cpu0, time.process_time() - own0
    while pool.pending:  # drain, uncounted (its CPU time above is a slight overcount)
        pool.wait(timeout=60)
    return counted / seconds, 1000 * cpu / counted, 1000 * own / counted


def _spin(seconds: float, out) -> None:
    end, n = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        n += 1
    out.put(n)


def headroom(seconds: float) -> float:
    """How much more work 2 plain CPU-bound processes do than 1 right now: the ceiling any
    2-against-1 ratio measured at the same moment can reach (2.0 on free cores)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    work = []
    for k in (1, 2):
        q = ctx.Queue()
        procs = [ctx.Process(target=_spin, args=(seconds, q)) for _ in range(k)]
        for proc in procs:
            proc.start()
        work.append(sum(q.get() for _ in procs))
        for proc in procs:
            proc.join()
    return work[1] / work[0]


def bench_collect(args) -> None:
    """1 and 2 collectors exist side by side (Ray CPUs are logical: 3 here) and collect in
    turn, the order alternating every round; the ratio is the median over rounds. Each round
    also measures the machine's own headroom (`headroom`), and CPU seconds per transition
    (collectors', and the learner process's) show what free cores would give."""
    import ray

    ray.init(num_cpus=3, include_dashboard=False, logging_level="WARNING")
    agent, make = _learner_agent(_run_config([]))
    pools = {n: _warm_pool(n, agent, make) for n in (1, 2)}
    out: dict[int, list[tuple]] = {1: [], 2: []}
    ceiling = []
    try:
        for r in range(args.rounds):
            for n in ((1, 2) if r % 2 == 0 else (2, 1)):
                out[n].append(collect_window(*pools[n], args.seconds))
            ceiling.append(headroom(args.seconds / 2))
    finally:
        for pool, _ in pools.values():
            pool.close()
        ray.shutdown()
    rates = {n: [x[0] for x in v] for n, v in out.items()}
    ratios = [b / a for a, b in zip(rates[1], rates[2], strict=True)]
    print(f"collection, servo_dog/PyBullet, 4 envs per collector acting through TensorFlow, "
          f"{os.cpu_count()} cores, {args.rounds} rounds of {args.seconds:g} s:")
    for n, v in out.items():
        print(f"  {n} collector(s): median {np.median(rates[n]):7.0f} transitions/s  (rounds: "
              f"{', '.join(f'{x:.0f}' for x in rates[n])}); CPU s per 1000 transitions: "
              f"collectors {np.median([x[1] for x in v]):.2f}, learner process "
              f"{np.median([x[2] for x in v]):.3f}")
    print(f"  2 against 1: median {np.median(ratios):.2f}x, best round {max(ratios):.2f}x "
          f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})")
    print(f"  the machine meanwhile: 2 plain CPU-bound processes did {np.median(ceiling):.2f}x "
          f"the work of 1 (rounds: {', '.join(f'{x:.2f}' for x in ceiling)})")
    c1, c2 = (np.median([x[1] for x in out[n]]) for n in (1, 2))
    d2 = np.median([x[2] for x in out[2]])
    free = min(2.0, 2.0 / (c2 + d2) / (1.0 / c1))  # 2 cores all ours: 2 collectors + learner
    print(f"  on 2 free cores the CPU costs above allow 2 against 1 = {free:.2f}x")


def _plain_collector(seconds: float, out, go) -> None:
    """A collector's own code in a plain process (no Ray): transitions/s once `go` is set."""
    from gaitforge.agents.ray_collect import Collector, actor_state

    agent, make = _learner_agent(_run_config([]))
    collector = Collector(0, 0, os.getpid(), make, (agent.algo, agent.config, agent.obs_dim,
                                                     agent.act_dim), True, 32, preload=False)
    weights = [actor_state(agent)]
    collector.collect(0, weights)  # TensorFlow loaded, the actor traced
    go.wait()
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        n += len(collector.collect(0, weights)["rows"]["reward"])
    out.put(n / (time.perf_counter() - start))


def bench_plain(args) -> None:
    """The same 2-against-1 with the collector's code in plain processes, without Ray: what
    the workload itself allows on this machine now."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    rates: dict[int, list[float]] = {1: [], 2: []}
    for k in (1, 2) * (args.rounds // 2):
        out, go = ctx.Queue(), ctx.Event()
        procs = [ctx.Process(target=_plain_collector, args=(args.seconds, out, go))
                 for _ in range(k)]
        for proc in procs:
            proc.start()
        time.sleep(30)  # start-up, apart from the measured window
        go.set()
        rates[k].append(sum(out.get() for _ in procs))
        for proc in procs:
            proc.join()
    print("the same collectors in plain processes (no Ray), same settings:")
    for k, values in rates.items():
        print(f"  {k} process(es): median {np.median(values):7.0f} transitions/s  (rounds: "
              f"{', '.join(f'{x:.0f}' for x in values)})")
    print(f"  2 against 1: {np.median(rates[2]) / np.median(rates[1]):.2f}x")


def _train_sets(args, mode: str) -> list[str]:
    sets = [f"train.total_env_steps={args.steps}", f"train.warmup_steps={args.warmup}",
            "train.eval_every_steps=100000000", "train.checkpoint_every_steps=100000000",
            "train.log_every_steps=1000"]
    if mode != "single":
        sets += ["ray.enabled=true", f"ray.collectors={mode[-1]}"]
    return sets


def train_rate(args, mode: str, folder: Path, on_progress=None):
    """(trainer, {rate_learning, rate_all, updates_per_s}) of one `gaitforge train` run."""
    from gaitforge.cli.cmd_train import _build_trainer
    from gaitforge.cli.run_config import env_fns
    from gaitforge.cli.run_folders import RunLogger
    from gaitforge.sim.vec_env import VecEnv

    run = _run_config(_train_sets(args, mode))
    folder.mkdir(parents=True)
    workers = 0 if run.ray.enabled else run.vec_env.workers  # as `gaitforge train` builds it
    env = VecEnv([env_fns(run)[0]] * run.vec_env.num_envs, workers=workers)
    trainer, session = _build_trainer(run, env, folder, "bench")
    logger = trainer.logger = RunLogger(folder)
    marks = {}

    def tick(t):
        if t.env_steps >= args.warmup and "warm" not in marks:
            marks["warm"] = (time.perf_counter(), t.env_steps, t.updates)
        if on_progress is not None:
            on_progress(t)

    start = time.perf_counter()
    try:
        trainer.train(progress=tick)
    finally:
        env.close()
        logger.close()
        if session is not None:
            session.close()
    end = time.perf_counter()
    t0, steps0, updates0 = marks["warm"]
    return trainer, {"rate_learning": (trainer.env_steps - steps0) / (end - t0),
                     "rate_all": trainer.env_steps / (end - start),
                     "updates_per_s": (trainer.updates - updates0) / (end - t0)}


def bench_train(args) -> None:
    """Each mode once per round, the order reversed every other round; medians."""
    modes = ("single", "ray1", "ray2")
    rates: dict[str, list[dict]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.train_rounds):
            for mode in (modes if r % 2 == 0 else modes[::-1]):
                _, result = train_rate(args, mode, Path(tmp) / f"{mode}-{r}")
                rates[mode].append(result)

    def med(mode, key):
        return float(np.median([x[key] for x in rates[mode]]))

    print(f"end-to-end training, default job, {args.steps} env steps ({args.warmup} warm-up), "
          f"{os.cpu_count()} cores, median of {args.train_rounds} round(s):")
    for mode in modes:
        print(f"  {mode:7s} learning {med(mode, 'rate_learning'):7.0f} steps/s   whole run "
              f"{med(mode, 'rate_all'):7.0f} steps/s   learner "
              f"{med(mode, 'updates_per_s'):6.0f} updates/s   (learning, by round: "
              + ", ".join(f"{x['rate_learning']:.0f}" for x in rates[mode]) + ")")
    for mode in ("ray1", "ray2"):
        print(f"  {mode} against single machine (learning): "
              f"{med(mode, 'rate_learning') / med('single', 'rate_learning'):.2f}x")


def bench_kill(args) -> None:
    from gaitforge.agents.ray_collect import rows_checksum

    killed = {}

    def kill(t):
        if not killed and t.env_steps >= (args.warmup + args.steps) // 2:
            killed.update(t=time.perf_counter(), steps=t.env_steps, updates=t.updates,
                          entry=[e for e in t.ledger if e["collector"] == 0][-1])
            os.kill(killed["entry"]["pid"], signal.SIGKILL)

    with tempfile.TemporaryDirectory() as tmp:
        trainer, _ = train_rate(args, "ray2", Path(tmp) / "kill", on_progress=kill)
    state = trainer.replay.get_state()
    rows = {f: state[f"main/{f}"] for f in trainer.replay.shapes}
    start, bad = 0, 0
    for entry in trainer.ledger:
        chunk = {f: v[start:start + entry["n"]] for f, v in rows.items()}
        bad += rows_checksum(chunk) != entry["checksum"]
        start += entry["n"]
    keys = {(e["collector"], e["incarnation"], e["index"]) for e in trainer.ledger}
    delivered = sum(e["n"] for e in trainer.ledger)
    restart = trainer.restarts[0] if trainer.restarts else {}
    back = [e for e in trainer.ledger if e["incarnation"] > killed["entry"]["incarnation"]
            and e["collector"] == 0]
    print(f"collector 0 SIGKILLed at {killed['steps']} env steps ({killed['updates']} updates):")
    print(f"  training went on to {trainer.env_steps} env steps, {trainer.updates} updates; "
          f"restarts {len(trainer.restarts)} ({restart.get('error', '-')})")
    print(f"  delivered {delivered} transitions in {len(trainer.ledger)} batches; replay holds "
          f"{trainer.replay.size()}; batches counted twice {len(trainer.ledger) - len(keys)} "
          f"(refused {trainer.duplicates}); checksum mismatches {bad}")
    if restart.get("recover_s") is not None:
        print(f"  kill -> failure seen {restart['at'] - killed['t']:.2f} s; failure seen -> "
              f"replacement's first batch {restart['recover_s']:.2f} s (it loads TensorFlow); "
              f"its batches {len(back)}")


def bench_walk(args) -> None:
    script = Path(__file__).with_name("time_to_walk.py")
    subprocess.run([sys.executable, str(script), "--budget-min", str(args.budget_min),
                    "--set", "ray.enabled=true"], check=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", nargs="?", default="all",
                   choices=["all", "collect", "plain", "train", "kill", "walk"])
    p.add_argument("--seconds", type=float, default=8.0, help="collect: seconds per window")
    p.add_argument("--rounds", type=int, default=6, help="collect: rounds")
    p.add_argument("--steps", type=int, default=12_000, help="train, kill: env steps")
    p.add_argument("--warmup", type=int, default=4_000, help="train, kill: warm-up steps")
    p.add_argument("--train-rounds", type=int, default=2, help="train: rounds")
    p.add_argument("--budget-min", type=float, default=25.0, help="walk: time budget")
    args = p.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores); "
          f"{NICENESS}={os.environ[NICENESS]}")
    if os.getloadavg()[0] > 0.5 * os.cpu_count():
        print("warning: the machine is busy with other work; with autogroup scheduling a "
              "session's processes share one slice of the CPU, so ratios of parallel work "
              "measured now say little")
    steps = {"collect": bench_collect, "plain": bench_plain, "train": bench_train,
             "kill": bench_kill, "walk": bench_walk}
    for name in (["collect", "plain", "train", "kill"] if args.what == "all" else [args.what]):
        steps[name](args)
        print(f"load average after {name}: {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
