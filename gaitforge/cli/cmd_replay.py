"""`gaitforge replay LOG... [--engine E] [--dynamics FILE] [--support hung|ground]
[--window S]`: each logged episode re-simulated with its logged commands (sim/replay.py), the
gap per joint, a report.json and a replay.png. A log on the ground is replayed in pieces of
--window seconds (default 2), each from its own logged state, as `gaitforge sysid` fits it."""

from __future__ import annotations

import json
from pathlib import Path

from gaitforge.robots.configio import ConfigError

from .argtypes import nonnegative


def register(sub) -> None:
    p = sub.add_parser("replay", help="re-simulate logged episodes with their commands and "
                       "measure the gap per joint (RMSE, max error, lag)")
    p.add_argument("logs", nargs="+", metavar="LOG", help="episode logs (.gflog)")
    p.add_argument("--engine", choices=["pybullet", "mujoco"], default="mujoco")
    p.add_argument("--dynamics", metavar="FILE", help="dynamics file (default: nominal)")
    p.add_argument("--support", choices=["ground", "hung"],
                   help="override the support the log records")
    p.add_argument("--window", type=nonnegative, metavar="S", help="replay in pieces of S "
                   "seconds (default: 2 on the ground, whole logs hung; 0: whole logs)")
    p.add_argument("--out", help="folder for report.json and replay.png (default: "
                   "replay/ beside the first log)")
    p.set_defaults(func=run)


def run(args) -> int:
    from gaitforge.robots.spec import load_robot_spec
    from gaitforge.sim.dynamics import load_dynamics
    from gaitforge.sim.replay import (
        LogCommands,
        make_replay_body,
        plot,
        replay_pieces,
        summary,
        support_of,
        window_ticks,
    )

    from .logs_in import load_logs

    logs = load_logs(args.logs)
    spec = load_robot_spec(logs[0].log.metadata["robot"])
    dynamics = load_dynamics(args.dynamics, spec) if args.dynamics else None
    out = Path(args.out) if args.out else logs[0].path.parent / "replay"
    out.mkdir(parents=True, exist_ok=True)
    report = {"engine": args.engine, "dynamics_file": args.dynamics or "", "logs": {}}
    results = {}
    for entry in logs:
        if entry.note:
            print(entry.note)
        meta = entry.log.metadata
        try:
            support = support_of(meta, args.support)
            pieces = LogCommands.from_log(entry.log).windows(
                window_ticks(support, args.window, meta["control_dt_s"]))
        except ValueError as err:
            raise ConfigError(str(err)) from None
        body = make_replay_body(spec, args.engine, meta["control_dt_s"], support, dynamics)
        try:
            result = replay_pieces(body, pieces)
        finally:
            body.close()
        results[entry.path.name] = result
        report["logs"][str(entry.path)] = {"sha256": entry.sha256, "support": support,
                                           **summary(result, spec, meta["control_dt_s"])}
        _print(entry.path, report["logs"][str(entry.path)])
    (out / "report.json").write_text(json.dumps(report, indent=1))
    plot(results, spec, out / "replay.png")
    print(f"report: {out / 'report.json'}  plot: {out / 'replay.png'}")
    return 0


def _print(path: Path, r: dict) -> None:
    print(f"{path}: {r['ticks']} ticks, {r['duration_s']:.1f} s, replayed "
          f"{r['speed_x_realtime']:.0f}x real time")
    print(f"  {'joint':12s} {'RMSE rad':>10s} {'max rad':>10s} {'lag ms':>8s}")
    for name, j in r["joints"].items():
        print(f"  {name:12s} {j['rmse_rad']:10.2e} {j['max_rad']:10.2e} {j['lag_ms']:8.1f}")
    print(f"  trunk orientation: RMS {r['orientation_rmse_rad']:.2e} rad, max "
          f"{r['orientation_max_rad']:.2e} rad")
