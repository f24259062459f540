"""End-to-end training throughput of our SAC/TD3 against Stable-Baselines3 and TF-Agents.

    .venv/bin/python bench/peer_throughput.py [--steps 30000 --warmup 10000 --eval-every 10000]
        [--only ours|peers|all] [--algos sac,td3] [--peer-venvs ~/peer-venvs] [--out-dir DIR]

One invocation runs every (system, algo) pair ONE AFTER ANOTHER, each in its own process
(never two at once: each system uses both cores), then prints one comparison table and
writes it to <out-dir>/summary.md (+ summary.json; one JSON and one log per run).

The work, the same for every system: dm-control quadruped-walk (78-D obs, 12-D action,
1000-step episodes), one env, seed 0, --steps env steps IN TOTAL, of which the first
--warmup are uniform-random actions; after that one env step + one gradient update per
iteration (UTD 1). Networks 2x256, batch 256, buffer 1e6. SAC: lr 3e-4, tau 0.005, gamma
0.99, learned temperature. TD3: lr 1e-3, tau 0.005, gamma 0.99, policy delay 2, exploration
noise N(0, 0.1), target noise 0.2 clipped at 0.5. Deterministic evaluation, 5 episodes on a
separate env instance, every --eval-every env steps (warm-up steps count).

Peers: /work/shared/peers/{sb3,tfagents}_bench.py run with their own venvs (see that
folder's README); their JSON is read back. Ours: our real Trainer (gaitforge.agents.trainer)
on VecEnv([external_env_factory("dmc:quadruped-walk")], workers=0), TensorFlow threads as
`gaitforge train` sets them (intra-op 1, inter-op 2), our default observation normaliser on.

Measured (same definitions as the peers' scripts):
  learn sps    (steps - warmup) / wall-clock of the learning phase, evaluation excluded.
               The phase starts after the last warm-up env step. Ours also excludes the
               checkpoint the Trainer always writes at the end (timed, reported apart).
  learn sps+ev the same with the evaluations at env step >= warmup included.
  warm-up sps  warmup / wall-clock of the warm-up (random actions, replay adds).
  env-only sps 5000 random steps on the env object the system trains on (ours: the VecEnv).
  returns      mean deterministic return at each evaluation.
  other CPU    cores kept busy by other processes during the run (/proc/stat minus the
               run's own CPU time). Above ~0.1 the run was disturbed: torch in particular
               slows down many times over when its 2 threads have to share the 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV = "dmc_quadruped_walk"
HERE = Path(__file__).resolve().parent
PEERS = {"sb3": ("stable-baselines3", "sb3_bench.py"), "tfa": ("tf-agents", "tfagents_bench.py")}
SAC_HP = dict(actor_lr=3e-4, critic_lr=3e-4, alpha_lr=3e-4, tau=0.005, gamma=0.99,
              learn_alpha=True)
TD3_HP = dict(actor_lr=1e-3, critic_lr=1e-3, tau=0.005, gamma=0.99, policy_delay=2,
              exploration_noise=0.1, target_noise=0.2, target_noise_clip=0.5)


# ---------------------------------------------------------------- ours (runs in a child process)
def run_ours(algo: str, a: argparse.Namespace, out: Path) -> None:
    from gaitforge.cli.run_folders import configure_tensorflow as _configure_tensorflow

    _configure_tensorflow()  # before any TensorFlow op, as the CLI does
    import numpy as np
    import tensorflow as tf

    from gaitforge.agents import make_agent
    from gaitforge.agents.trainer import TrainConfig, Trainer
    from gaitforge.sim.evaluation import evaluate_returns
    from gaitforge.sim.external import external_env_factory
    from gaitforge.sim.vec_env import VecEnv

    factory = external_env_factory("dmc:quadruped-walk")
    bench_env = VecEnv([external_env_factory("dmc:quadruped-walk")], workers=0)
    env_only = _env_only(bench_env, a.env_bench_steps, a.seed + 100, np)
    bench_env.close()

    class TimedTrainer(Trainer):  # the real Trainer; only timing marks added around its hooks
        t0 = warm_end = None
        eval_s = eval_s_at_warm_end = ckpt_s = 0.0

        def _record_step(self, *args):
            super()._record_step(*args)
            if self.warm_end is None and self.env_steps >= self.config.warmup_steps:
                self.warm_end, self.eval_s_at_warm_end = time.perf_counter(), self.eval_s

        def _evaluate(self):
            t = time.perf_counter()
            so_far = t - self.t0 - self.eval_s - self.ckpt_s
            super()._evaluate()
            dt = time.perf_counter() - t
            self.eval_s += dt
            self.history[-1].update(eval_seconds=dt, grad_updates=self.updates,
                                    train_seconds_so_far_excl_eval=so_far)

        def save_checkpoint(self):
            t = time.perf_counter()
            path = super().save_checkpoint()
            self.ckpt_s += time.perf_counter() - t
            return path

    workers = 1 if a.overlap else 0
    env = VecEnv([factory], workers=workers)
    hp = SAC_HP if algo == "sac" else TD3_HP
    agent_cfg = dict(actor_hidden=(256, 256), critic_hidden=(256, 256), batch_size=256, **hp)
    agent = make_agent(algo, agent_cfg, env.single_observation_space.shape[0],
                       env.single_action_space.shape[0], seed=a.seed)
    cfg = TrainConfig(total_env_steps=a.steps, overlap=a.overlap, warmup_steps=a.warmup,
                      replay_capacity=1_000_000, eval_every_steps=a.eval_every,
                      eval_episodes=a.eval_episodes, checkpoint_every_steps=10**12,
                      seed=a.seed, utd=1)
    evaluate = lambda ag: evaluate_returns(  # noqa: E731
        lambda o: ag.act(o, deterministic=True), factory, episodes=a.eval_episodes)
    with tempfile.TemporaryDirectory(prefix="peer-tp-") as ckpt:
        tr = TimedTrainer(agent, env, cfg, ckpt, evaluate=evaluate)
        tr.t0 = time.perf_counter()
        tr.train()
        t_end = time.perf_counter()
    env.close()
    wall = t_end - tr.t0 - tr.ckpt_s  # incl eval, excl the final checkpoint
    warm_s = tr.warm_end - tr.t0 - tr.eval_s_at_warm_end
    learn_s = t_end - tr.warm_end - (tr.eval_s - tr.eval_s_at_warm_end) - tr.ckpt_s
    learn_steps = a.steps - a.warmup
    evals = [{"env_steps": h["env_steps"], "mean_return": h["return"],
              "std_return": h["return_std"], **{k: h[k] for k in (
                  "eval_seconds", "grad_updates", "train_seconds_so_far_excl_eval")}}
             for h in tr.history]
    result = {
        "peer": "gaitforge", "algo": algo, "env": ENV, "seed": a.seed,
        "total_env_steps": a.steps, "warmup_steps": a.warmup,
        "versions": {"python": platform.python_version(), "tensorflow": tf.__version__,
                     "numpy": np.__version__, "git": _git_rev()},
        "threads": {"os.cpu_count": os.cpu_count(),
                    "tf.intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                    "tf.inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
        "hyperparams": {**{k: getattr(agent.config, k) for k in agent_cfg}, "utd": cfg.utd,
                        "normalize_obs": agent.config.normalize_obs, "buffer_size": 1_000_000},
        "env_only": env_only,
        "train": {
            "wall_clock_s_incl_eval": wall,
            "wall_clock_s_excl_eval": wall - tr.eval_s,
            "eval_seconds_total": tr.eval_s,
            "final_checkpoint_seconds_excluded": tr.ckpt_s,
            "env_steps_per_s_overall_excl_eval": a.steps / (wall - tr.eval_s),
            "warmup_seconds": warm_s,
            "warmup_env_steps_per_s": a.warmup / warm_s if a.warmup else None,
            "learning_phase_seconds": learn_s,
            "learning_phase_env_steps": learn_steps,
            "learning_phase_env_steps_per_s": learn_steps / learn_s,
            "grad_updates": tr.updates,
            "updates_per_s": tr.updates / learn_s,
            "train_episodes_finished": tr.episodes,
        },
        "evals": evals,
        "eval_returns_by_step": {str(e["env_steps"]): e["mean_return"] for e in evals},
    }
    out.write_text(json.dumps(result, indent=2, default=str))


def _env_only(venv, n: int, seed: int, np) -> dict:
    rng = np.random.default_rng(seed)
    venv.reset(seed=seed)
    t = time.perf_counter()
    for _ in range(n):  # VecEnv autoresets, so resets are included as in the peers'
        venv.step(rng.uniform(-1, 1, (1, venv.single_action_space.shape[0])).astype(np.float32))
    dt = time.perf_counter() - t
    return {"steps": n, "seconds": dt, "steps_per_s": n / dt}


def _git_rev() -> str:
    try:
        return subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


# ---------------------------------------------------------------- driver
def run_one(system: str, algo: str, a: argparse.Namespace) -> dict:
    stem = f"{system}_{algo}_n{a.steps}_w{a.warmup}_s{a.seed}"
    out, log = a.out_dir / f"{stem}.json", a.out_dir / f"{stem}.log"
    common = ["--algo", algo, "--steps", str(a.steps), "--warmup", str(a.warmup),
              "--eval-every", str(a.eval_every), "--eval-episodes", str(a.eval_episodes),
              "--env-bench-steps", str(a.env_bench_steps), "--seed", str(a.seed),
              "--out", str(out)]
    if system in ("ours", "ours-overlap"):
        cmd = [sys.executable, __file__, "--child-ours", *common]
        if system == "ours-overlap":
            cmd.append("--overlap")
    else:
        cmd = [str(a.peer_venvs / system / "bin" / "python"),
               str(a.peers_dir / PEERS[system][1]), "--env", ENV, *common]
    env = {**os.environ, "MUJOCO_GL": "disable", "TF_CPP_MIN_LOG_LEVEL": "2"}
    out.unlink(missing_ok=True)
    print(f"[{time.strftime('%H:%M:%S')}] {system} {algo} -> {log}", flush=True)
    t, busy, child = time.perf_counter(), _busy_cpu_s(), _children_cpu_s()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    wall = time.perf_counter() - t
    # cores kept busy by OTHER processes during the run (machine-wide busy CPU minus ours)
    other = max(0.0, _busy_cpu_s() - busy - (_children_cpu_s() - child)) / wall if busy else None
    row = {"system": system, "algo": algo, "rc": rc, "seconds": wall,
           "other_cpu_cores": other, "json": str(out), "log": str(log)}
    if rc == 0 and out.exists():
        r = json.loads(out.read_text())
        tr, evals = r["train"], r["evals"]
        learn_eval = sum(e["eval_seconds"] for e in evals if e["env_steps"] >= a.warmup)
        row.update(learn_sps=tr["learning_phase_env_steps_per_s"],
                   learn_sps_incl_eval=tr["learning_phase_env_steps"]
                   / (tr["learning_phase_seconds"] + learn_eval),
                   warmup_sps=tr["warmup_env_steps_per_s"], updates=tr["grad_updates"],
                   env_only_sps=r["env_only"]["steps_per_s"],
                   wall_incl_eval=tr["wall_clock_s_incl_eval"],
                   wall_excl_eval=tr["wall_clock_s_excl_eval"],
                   returns={e["env_steps"]: e["mean_return"] for e in evals})
    print(f"    rc={rc}  {row.get('learn_sps', float('nan')):.1f} learn sps  "
          f"({row['seconds']:.0f} s)", flush=True)
    return row


def _busy_cpu_s() -> float:
    """Machine-wide non-idle CPU seconds from /proc/stat (0.0 where there is none)."""
    try:
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def table(rows: list[dict]) -> str:
    ours = {r["algo"]: r.get("learn_sps") for r in rows if r["system"] == "ours"}
    overlap = {r["algo"]: r.get("learn_sps") for r in rows if r["system"] == "ours-overlap"}
    names = {"ours": "gaitforge", "ours-overlap": "gaitforge, overlap",
             **{k: v[0] for k, v in PEERS.items()}}
    lines = ["| system | algo | learn sps | learn sps incl eval | ours / this | ours overlap / "
             "this | warm-up sps | env-only sps | updates | wall s excl/incl eval | eval returns "
             "| other CPU |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    f = lambda x, p=1: "-" if x is None else f"{x:.{p}f}"  # noqa: E731
    for r in sorted(rows, key=lambda r: (r["algo"], r["system"] != "ours", r["system"])):
        if "learn_sps" not in r:
            lines.append(f"| {names[r['system']]} | {r['algo']} | FAILED rc={r['rc']}, see "
                         f"{r['log']} |" + " |" * 9)
            continue
        mine = ours.get(r["algo"])
        ratio = "-" if r["system"] == "ours" or not mine else f"{mine / r['learn_sps']:.2f}x"
        ov = overlap.get(r["algo"])
        ov_ratio = "-" if r["system"] == "ours-overlap" or not ov else \
            f"{ov / r['learn_sps']:.2f}x"
        rets = "; ".join(f"{s / 1000:g}k: {v:.1f}" for s, v in sorted(r["returns"].items()))
        lines.append(
            f"| {names[r['system']]} | {r['algo']} | {f(r['learn_sps'])} | "
            f"{f(r['learn_sps_incl_eval'])} | {ratio} | {ov_ratio} | {f(r['warmup_sps'], 0)} | "
            f"{f(r['env_only_sps'], 0)} | {r['updates']} | {f(r['wall_excl_eval'], 0)} / "
            f"{f(r['wall_incl_eval'], 0)} | {rets} | {f(r['other_cpu_cores'], 2)} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30_000, help="total env steps incl. warm-up")
    p.add_argument("--warmup", type=int, default=10_000)
    p.add_argument("--eval-every", type=int, default=10_000)
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--env-bench-steps", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", choices=["ours", "peers", "all"], default="all")
    p.add_argument("--algos", default="sac,td3")
    p.add_argument("--peer-venvs", type=Path,
                   default=Path(os.environ.get("PEERS_VENVS", "~/peer-venvs")).expanduser())
    p.add_argument("--peers-dir", type=Path, default=HERE.parent.parent / "shared" / "peers")
    p.add_argument("--out-dir", type=Path, default=HERE / "out")
    p.add_argument("--overlap", action="store_true", help="also run ours with the env in a "
                   "worker process stepping while the agent learns (train.overlap)")
    p.add_argument("--child-ours", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--algo", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child_ours:
        return run_ours(a.algo, a, a.out)
    algos = [x.strip() for x in a.algos.split(",") if x.strip()]
    if not algos or set(algos) - {"sac", "td3"}:
        p.error(f"--algos: choose from sac,td3, got {a.algos!r}")
    if not 0 <= a.warmup < a.steps:
        p.error("need 0 <= --warmup < --steps")
    systems = {"ours": ["ours"], "peers": ["sb3", "tfa"], "all": ["ours", "sb3", "tfa"]}[a.only]
    if a.overlap and a.only != "peers":
        systems.insert(1, "ours-overlap")
    for s in systems:
        if not s.startswith("ours") and not (a.peer_venvs / s / "bin" / "python").exists():
            p.error(f"no {a.peer_venvs / s}/bin/python: create the venvs as in "
                    f"{a.peers_dir / 'README.md'}, or pass --peer-venvs")
    a.out_dir.mkdir(parents=True, exist_ok=True)
    rows = [run_one(s, algo, a) for algo in algos for s in systems]
    text = (f"dm-control quadruped-walk, {a.steps} env steps incl. {a.warmup} random warm-up, "
            f"UTD 1, 2x256, batch 256, eval every {a.eval_every} ({a.eval_episodes} episodes), "
            f"seed {a.seed}; sps = env steps/s; other CPU = cores used by other processes "
            f"during the run (> ~0.1: the figures are disturbed)\n\n"
            + table(rows))
    print("\n" + text)
    (a.out_dir / "summary.md").write_text(text + "\n")
    (a.out_dir / "summary.json").write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
