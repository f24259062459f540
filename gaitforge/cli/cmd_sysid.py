"""`gaitforge sysid LOG... [--holdout LOG...] [--fit NAME,...] [--engine E] [--out FILE]`:
fit dynamics parameters so that replay matches the logs (sim/sysid.py, CMA-ES), report each
estimate and the per-joint gap before and after on the held-out logs, and write a dynamics
file with provenance that `train`, `deploy --body sim:E` and `virtual-robot` accept."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np

from gaitforge.robots.configio import ConfigError

from .argtypes import count, count0, nonnegative


def register(sub) -> None:
    from gaitforge.sim.sysid import DEFAULT_FIT

    p = sub.add_parser("sysid", help="fit dynamics parameters to logged episodes (CMA-ES over "
                       "replay) and write a dynamics file")
    p.add_argument("logs", nargs="+", metavar="LOG", help="excitation logs to fit")
    p.add_argument("--holdout", nargs="+", default=[], metavar="LOG",
                   help="logs kept out of the fit, to judge it")
    p.add_argument("--fit", default=",".join(DEFAULT_FIT), metavar="NAME,...",
                   help=f"parameters to fit (default {','.join(DEFAULT_FIT)})")
    p.add_argument("--engine", choices=["pybullet", "mujoco"], default="mujoco")
    p.add_argument("--out", default="dynamics.yaml", help="dynamics file to write "
                   "(default dynamics.yaml)")
    p.add_argument("--workers", type=count0, default=2, help="replay processes (default 2; "
                   "0: replay in this process)")
    p.add_argument("--generations", type=count, default=25, help="CMA-ES generations before "
                   "the least-squares polish (default 25)")
    p.add_argument("--max-latency", type=nonnegative, default=0.04, metavar="S",
                   help="largest latency searched (default 0.04 s)")
    p.add_argument("--seed", type=count0, default=0, help="CMA-ES seed (0 or more)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from gaitforge.robots.spec import load_robot_spec
    from gaitforge.sim.dynamics import save_dynamics
    from gaitforge.sim.replay import LogCommands, support_of
    from gaitforge.sim.sysid import FITTABLE, IdentificationError, Problem, fit

    if Path(args.out).is_dir():  # refused now, not after minutes of fitting
        raise ConfigError(f"--out {args.out}: is a folder; give the dynamics file's name "
                          f"(e.g. {Path(args.out) / 'dynamics.yaml'})")
    names = [n.strip() for n in args.fit.split(",") if n.strip()]
    unknown = [n for n in names if n not in FITTABLE]
    if unknown or not names:
        raise ConfigError(f"--fit: unknown parameter '{unknown[0] if unknown else ''}' "
                          f"(known: {', '.join(FITTABLE)})")
    from .logs_in import load_logs

    fit_logs = load_logs(args.logs)
    held = load_logs(args.holdout) if args.holdout else []
    spec = load_robot_spec(fit_logs[0].log.metadata["robot"])
    for entry in held:
        if entry.log.metadata.get("robot") != spec.name:
            raise ConfigError(f"{entry.path}: a log of robot "
                              f"'{entry.log.metadata.get('robot')}', the fit logs are of "
                              f"'{spec.name}'")
    for entry in fit_logs + held:
        if entry.note:
            print(entry.note)
    dt, support = _same(fit_logs + held, "control_dt_s"), _same(fit_logs + held, "support")
    try:
        commands = [LogCommands.from_log(e.log) for e in fit_logs]
        problem = Problem(spec, args.engine, dt, support_of({"support": support}), commands,
                          _nominal(), tuple(n for n in names if n != "latency_s"))
        result = fit(problem, fit_latency="latency_s" in names,
                     max_latency_s=args.max_latency, generations=args.generations,
                     workers=args.workers, seed=args.seed,
                     progress=_progress_bar(args.no_progress, args.generations))
    except (IdentificationError, ValueError) as err:
        raise ConfigError(f"sysid: {err}") from None
    judged = held or fit_logs
    before = _rmse(judged, spec, args.engine, support, problem.base)
    after = _rmse(judged, spec, args.engine, support, result.params)
    _print(result, names, spec, before, after, "held-out" if held else "fit (no --holdout)")
    provenance = {
        "tool": "gaitforge sysid",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "robot": spec.name, "engine": args.engine, "support": support, "fit": names,
        "logs": {str(e.path): e.sha256 for e in fit_logs},
        "holdout": {str(e.path): e.sha256 for e in held},
        "latency_steps": result.latency_steps, "cost_start": result.cost_start,
        "cost_fit": result.cost_fit,
        "identifiable_only_together": [list(names_) for names_, _ in result.together],
        "rmse_rad_before": before.tolist(), "rmse_rad_after": after.tolist()}
    out = Path(args.out)
    save_dynamics(out, result.params, provenance)
    _plot(out.with_suffix(".png"), spec, before, after, result.latency_costs)
    print(f"dynamics file: {out}  plot: {out.with_suffix('.png')}")
    return 0


def _nominal():
    from gaitforge.sim.dynamics import DynamicsParams

    return DynamicsParams()


def _same(entries, key: str):
    values = {entry.log.metadata.get(key) for entry in entries}
    if len(values) > 1:
        raise ConfigError(f"sysid: the logs differ in {key} ({sorted(map(str, values))}); "
                          "fit logs of one set-up at a time")
    return values.pop()


def _rmse(entries, spec, engine: str, support: str, params) -> np.ndarray:
    """Per-joint RMSE over the logs' ticks, replayed with `params`."""
    from gaitforge.sim.replay import LogCommands, make_replay_body, replay

    body = make_replay_body(spec, engine, entries[0].log.metadata["control_dt_s"], support,
                            params)
    try:
        errors = np.concatenate([replay(body, LogCommands.from_log(e.log)).error
                                 for e in entries])
    finally:
        body.close()
    return np.sqrt(np.mean(errors ** 2, axis=0))


def _progress_bar(disabled: bool, generations: int):
    from tqdm import tqdm

    bar = tqdm(total=generations, unit="gen", disable=disabled, dynamic_ncols=True)

    def progress(stage: str, generation: int, best: float) -> None:
        bar.update(max(0, min(generation, generations) - bar.n))
        bar.set_postfix_str(f"cost {best:.3f}", refresh=False)

    return progress


def _print(result, names, spec, before, after, judged_on: str) -> None:
    from gaitforge.sim.dynamics import SCHEMA

    together = {}
    for group, _ in result.together:
        for name in group:
            together.setdefault(name, []).extend(n for n in group if n != name)
    print(f"fitted in {result.evaluations} replays; cost {result.cost_start:.3f} -> "
          f"{result.cost_fit:.3f}")
    for name in names:
        value = getattr(result.params, name)
        shown = f"{value * 1e3:.1f} ms ({result.latency_steps} physics steps)" \
            if name == "latency_s" else f"{value:.4g} {SCHEMA[name].unit}"
        note = f"  (identifiable only together with {', '.join(together[name])})" \
            if name in together else ""
        print(f"  {name:28s} {shown}{note}")
    print(f"per joint on the {judged_on} logs: RMSE rad, nominal -> fitted")
    for i, joint in enumerate(spec.joint_names):
        ratio = before[i] / after[i] if after[i] > 0 else float("inf")
        print(f"  {joint:12s} {before[i]:10.2e} -> {after[i]:10.2e}   {ratio:6.1f}x")


def _plot(path: Path, spec, before, after, latency_costs: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4), gridspec_kw={"width_ratios": [3, 1]})
    x = np.arange(spec.n_joints)
    axes[0].bar(x - 0.2, before, 0.4, label="nominal")
    axes[0].bar(x + 0.2, after, 0.4, label="fitted")
    axes[0].set_xticks(x, spec.joint_names, rotation=45, fontsize=8)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("replay RMSE (rad)")
    axes[0].legend()
    if latency_costs:
        steps = sorted(latency_costs)
        axes[1].plot(steps, [latency_costs[s] for s in steps], marker="o")
    axes[1].set_xlabel("latency (physics steps)")
    axes[1].set_ylabel("cost")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
