"""`gaitforge sysid LOG... [--holdout LOG...] [--fit NAME,...] [--start FILE] [--window S]
[--engine E] [--out FILE]`: fit dynamics parameters so that replay matches the logs
(sim/sysid.py, CMA-ES), report each estimate and the per-joint gap before and after on the
held-out logs, and write a dynamics file with provenance that `train`, `deploy --body sim:E`
and `virtual-robot` accept.

Two stages, as a user with a robot does it: a hung excitation shows the actuators (latency,
gains, friction, rotor inertia) but not the trunk's mass nor the feet's friction; the policy's
own walking logs show those, once the actuators are known:

    gaitforge sysid excite.gflog --out hung.yaml
    gaitforge sysid walk*.gflog --start hung.yaml --fit trunk_mass_delta_kg,foot_friction \
        --out dynamics.yaml

`--start` holds every parameter not in --fit at the file's value (and starts the search
there); the written file's provenance lists what both stages fitted, from which logs. Walking
(ground) logs are replayed in pieces of --window seconds (default 2), each from its own
logged state: a whole walking episode replayed open loop drifts off the log within seconds."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np

from gaitforge.robots.configio import ConfigError

from .argtypes import count, count0, nonnegative


def register(sub) -> None:
    from gaitforge.sim.replay import GROUND_WINDOW_S
    from gaitforge.sim.sysid import DEFAULT_FIT

    p = sub.add_parser("sysid", help="fit dynamics parameters to logged episodes (CMA-ES over "
                       "replay) and write a dynamics file")
    p.add_argument("logs", nargs="+", metavar="LOG", help="logs to fit: excitations (hung), "
                   "or walking deploys for a second stage with --start")
    p.add_argument("--holdout", nargs="+", default=[], metavar="LOG",
                   help="logs kept out of the fit, to judge it")
    p.add_argument("--fit", default=",".join(DEFAULT_FIT), metavar="NAME,...",
                   help=f"parameters to fit (default {','.join(DEFAULT_FIT)}); NAME/leg fits "
                   "one value per leg of a per-joint parameter (kp_scale/leg: a leg whose "
                   "servos are weaker than the others')")
    p.add_argument("--start", metavar="FILE", help="dynamics file (an earlier stage's fit): "
                   "the parameters not fitted keep its values (default: nominal)")
    p.add_argument("--window", type=nonnegative, metavar="S", help="replay ground logs in "
                   f"pieces of S seconds (default {GROUND_WINDOW_S:g}; hung logs whole); "
                   "0: whole logs")
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
    from gaitforge.sim.dynamics import save_dynamics
    from gaitforge.sim.replay import support_of, window_ticks
    from gaitforge.sim.sysid import FITTABLE, IdentificationError, Problem, expand_fit, fit

    if Path(args.out).is_dir():  # refused now, not after minutes of fitting
        raise ConfigError(f"--out {args.out}: is a folder; give the dynamics file's name "
                          f"(e.g. {Path(args.out) / 'dynamics.yaml'})")
    names = [n.strip() for n in args.fit.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"--fit: no parameter named (known: {', '.join(FITTABLE)})")
    fit_logs, held, spec = _load(args)
    try:
        coordinates = expand_fit(names, spec)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    dt, support = _same(fit_logs + held, "control_dt_s"), _same(fit_logs + held, "support")
    start, earlier = _start(args.start, spec, args.engine)
    try:
        support = support_of({"support": support})
        ticks = window_ticks(support, args.window, dt)
        commands = _pieces(fit_logs, ticks)
        problem = Problem(spec, args.engine, dt, support, commands, start,
                          tuple(n for n in coordinates if n != "latency_s"))
        result = fit(problem, fit_latency="latency_s" in names,
                     max_latency_s=args.max_latency, generations=args.generations,
                     workers=args.workers, seed=args.seed,
                     progress=_progress_bar(args.no_progress, args.generations))
    except (IdentificationError, ValueError) as err:
        raise ConfigError(f"sysid: {err}") from None
    judged = _pieces(held, ticks) if held else commands
    before = _rmse(judged, spec, args.engine, support, dt, problem.base)
    after = _rmse(judged, spec, args.engine, support, dt, result.params)
    base_name = "start" if args.start else "nominal"
    _print(result, coordinates, spec, before, after, "held-out" if held else "fit (no --holdout)",
           base_name)
    provenance = {
        "tool": "gaitforge sysid",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "robot": spec.name, "engine": args.engine, "support": support,
        **_stages(args.start, earlier, names, fit_logs),
        "holdout": {str(e.path): e.sha256 for e in held},
        "window_s": ticks * dt,
        "latency_steps": result.latency_steps, "cost_start": result.cost_start,
        "cost_fit": result.cost_fit,
        "identifiable_only_together": [list(names_) for names_, _ in result.together],
        "rmse_rad_before": before.tolist(), "rmse_rad_after": after.tolist()}
    out = Path(args.out)
    save_dynamics(out, result.params, provenance)
    _plot(out.with_suffix(".png"), spec, before, after, result.latency_costs)
    print(f"dynamics file: {out}  plot: {out.with_suffix('.png')}")
    return 0


def _start(path: str | None, spec, engine: str) -> tuple:
    """The dynamics the fit starts from and holds fixed outside --fit (the file's, or nominal),
    and the file's provenance ({} without one). A file identified in the other engine is
    refused (its values mean other dynamics here)."""
    from gaitforge.sim.dynamics import DynamicsParams, load_dynamics, read_provenance

    if not path:
        return DynamicsParams(), {}
    if not Path(path).is_file():
        raise ConfigError(f"--start {path}: no such dynamics file")
    params, provenance = load_dynamics(path, spec), read_provenance(path)
    identified_in = provenance.get("engine", engine)
    if identified_in != engine:
        raise ConfigError(f"--start {path}: identified in {identified_in}, and this fit "
                          f"replays in {engine}; fit both stages in one engine (--engine "
                          f"{identified_in})")
    return params, provenance


def _load(args):
    """The fit and held-out logs (of one robot) and that robot's spec."""
    from gaitforge.robots.spec import load_robot_spec

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
    return fit_logs, held, spec


def _stages(start: str | None, earlier: dict, names: list[str], fit_logs) -> dict:
    """Provenance of what every stage so far fitted, from which logs: the --start file's
    own (`earlier`: its `fit` and `logs`) and this fit's, and which file this stage started
    from."""
    from gaitforge.control.bundle import file_sha256

    out = {"fit": list(dict.fromkeys([*earlier.get("fit", []), *names])),
           "logs": {**earlier.get("logs", {}), **{str(e.path): e.sha256 for e in fit_logs}}}
    if start:
        out["start"] = {"file": str(start), "sha256": file_sha256(start),
                        "support": earlier.get("support"), "fit": earlier.get("fit")}
    return out


def _pieces(entries, ticks: int) -> list:
    """Each log's replay commands, cut into pieces of `ticks` rows (0: whole)."""
    from gaitforge.sim.replay import LogCommands

    return [piece for e in entries for piece in LogCommands.from_log(e.log).windows(ticks)]


def _same(entries, key: str):
    values = {entry.log.metadata.get(key) for entry in entries}
    if len(values) > 1:
        raise ConfigError(f"sysid: the logs differ in {key} ({sorted(map(str, values))}); "
                          "fit logs of one set-up at a time")
    return values.pop()


def _rmse(pieces, spec, engine: str, support: str, control_dt_s: float,
          params) -> np.ndarray:
    """Per-joint RMSE over the pieces' ticks, replayed with `params`."""
    from gaitforge.sim.replay import make_replay_body, replay_pieces

    body = make_replay_body(spec, engine, control_dt_s, support, params)
    try:
        return replay_pieces(body, pieces).rmse_rad()
    finally:
        body.close()


def _progress_bar(disabled: bool, generations: int):
    from tqdm import tqdm

    bar = tqdm(total=generations, unit="gen", disable=disabled, dynamic_ncols=True)

    def progress(stage: str, generation: int, best: float) -> None:
        bar.update(max(0, min(generation, generations) - bar.n))
        bar.set_postfix_str(f"cost {best:.3f}", refresh=False)

    return progress


def _print(result, names, spec, before, after, judged_on: str, base_name: str) -> None:
    from gaitforge.sim.dynamics import SCHEMA
    from gaitforge.sim.sysid import legs

    together = {}
    for group, _ in result.together:
        for name in group:
            together.setdefault(name, []).extend(n for n in group if n != name)
    print(f"fitted in {result.evaluations} replays; cost {result.cost_start:.3f} -> "
          f"{result.cost_fit:.3f}")
    for name in names:
        field_name, _, leg = name.partition("/")
        value = result.params.joint_values(field_name, spec)[legs(spec)[leg][0]] if leg \
            else getattr(result.params, name)
        shown = f"{value * 1e3:.1f} ms ({result.latency_steps} physics steps)" \
            if name == "latency_s" else f"{value:.4g} {SCHEMA[field_name].unit}".removesuffix(
                " 1")  # a scale has no unit
        note = f"  (identifiable only together with {', '.join(together[name])})" \
            if name in together else ""
        print(f"  {name:28s} {shown}{note}")
    print(f"per joint on the {judged_on} logs: RMSE rad, {base_name} -> fitted")
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
