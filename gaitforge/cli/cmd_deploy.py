"""`gaitforge deploy BUNDLE --body sim:ENGINE | --hw CONFIG --port PORT`: one episode of the
deploy runtime (`control.runtime`: loop, safety, logger) on a simulated body or on hardware.

The simulated body is driven like hardware (`sim.robot_adapters.SimulatedRobot`: a write
applies the command and advances physics one control period), with nominal dynamics or a
dynamics file's, and no sensor noise; tracking error and falls come from the simulator's
privileged state, which the runtime never sees. On hardware, `HardwareBody` speaks the serial
protocol of the hardware YAML, always on the wall clock.

The velocity command comes from a command source (control/commands.py): `--command` (fixed),
`--commands FILE` (a schedule), or the operator with `--teleop keyboard|gamepad`, who can also
damp, re-arm and end the episode. A live status view (rich) runs while deploying when stdout
is a terminal (`--live` / `--no-live`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from gaitforge.control.runner import MAX_EXPLORE
from gaitforge.robots.configio import ConfigError

from .argtypes import nonnegative, seconds, velocity_command
from .bodies import add_body_arguments, make_body
from .operator import Operator, add_command_arguments, command_source


def register(sub) -> None:
    p = sub.add_parser("deploy", help="run a bundle in the real-time deploy loop (read, "
                       "observation, actor, safety, write, log) against a body",
                       description="Runs the deploy runtime: soft start to the default pose, "
                       "DURATION s of policy, then damping and torque off. Every tick is "
                       "logged (see `gaitforge logs inspect`, `export`, `plot`). The command "
                       "is fixed (--command), a schedule (--commands) or the operator's "
                       "(--teleop), who can also damp, re-arm and end the episode. Exit 0 only "
                       "when the episode ran its full duration under the policy, or the "
                       "operator ended it with no fault left un-re-armed (stopped); otherwise "
                       "exit 1 and the outcome says why (fell, estop, watchdog, lost_link, "
                       "lost_input, interrupted, ...). "
                       "Exit 2: bad input, or a robot that did not start (a port that does "
                       "not open, a servo that does not answer or is in Alert); one sentence "
                       "says what to check.")
    p.add_argument("bundle", help="policy bundle folder (from `gaitforge export`)")
    p.add_argument("--duration", type=seconds,
                   help="seconds of policy control after the soft start (default 10; with "
                   "--commands the schedule's length; with --teleop 300, and the episode ends "
                   "at the latest after 2 x DURATION + 30 s in all)")
    p.add_argument("--command", type=velocity_command, default="0.3,0,0", metavar="VX,VY,YAW",
                   help="velocity command, m/s, m/s, rad/s (default 0.3,0,0)")
    add_command_arguments(p)
    p.add_argument("--log-dir", help="where episode logs go (default: next to the bundle, "
                   "deploy-logs/)")
    p.add_argument("--explore", type=nonnegative, default=0.0, metavar="SIGMA",
                   help="add Gaussian noise of this standard deviation (action units, at most "
                   f"{MAX_EXPLORE:g}) to every action, recorded in the log: episodes for "
                   "`gaitforge finetune`, whose critic learns nothing of other actions from a "
                   "deterministic policy's logs (default 0: none; 0.1 is about the policy's "
                   "own spread in training)")
    p.add_argument("--explore-seed", type=int, metavar="N", help="seed of the --explore "
                   "noise (default: a fresh one, recorded in the log)")
    add_body_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from gaitforge.control.runtime import load_runtime

    if args.explore > MAX_EXPLORE:
        raise ConfigError(f"--explore: {args.explore:g} is more than {MAX_EXPLORE:g} (action "
                          "units, where the actions span [-1, 1])")
    runtime = load_runtime(args.bundle, clock_for(args)[0], explore=args.explore,
                           explore_seed=args.explore_seed)
    folder = Path(args.log_dir) if args.log_dir else runtime.bundle.path.parent / "deploy-logs"
    with command_source(args, runtime) as operator:
        return run_episode_and_report(args, runtime, folder, operator.duration_s,
                                      operator.initial, operator=operator)


def clock_for(args):
    """(clock, sleep) the body needs (hardware and --realtime: the wall clock); kept on args
    for run_episode_and_report."""
    from gaitforge.control.deploy import clock_and_sleep

    args.clock = clock_and_sleep(bool(args.hw) or args.realtime)
    return args.clock


def run_episode_and_report(args, runtime, log_folder: Path, duration_s: float,
                           command=(0.0, 0.0, 0.0), operator: Operator | None = None) -> int:
    """Build the body, run one logged episode (with `operator`'s command source and live
    view, if any), print the report; the exit status: 0 for an episode completed, or ended by
    the operator with no fault left un-re-armed."""
    from gaitforge.control.loop import setup_realtime
    from gaitforge.control.runtime import deploy, new_log_path

    clock, sleep = args.clock
    source = operator.source if operator else None
    body = make_body(args, runtime.spec, runtime.control_dt_s,
                     command if source is None else source, runtime.builder.gait.frequency_hz)
    rt = setup_realtime() if args.hw and args.rt_setup else None
    meta = {**body.metadata, **(operator.metadata if operator else {})}
    try:
        with operator.view(runtime.control_dt_s) if operator else contextlib.nullcontext():
            report = deploy(runtime, body.robot, duration_s=duration_s, command=command,
                            clock=clock, sleep=sleep, log_path=new_log_path(log_folder, body.tag),
                            metadata=meta, on_tick=body.on_tick, commands=source,
                            status=operator.status if operator else None,
                            max_total_s=operator.max_total_s if operator else None)
    finally:
        body.close()
    if args.hw:
        report.update(body=body.metadata["body"], hardware=body.robot.counters,
                      realtime="; ".join(rt.lines()) if rt else "not requested")
    print(f"{report['outcome']}: {report['reason']}")
    for key, value in report.items():
        print(f"  {key:18s} {value:.4f}" if isinstance(value, float) else f"  {key:18s} {value}")
    return 0 if report["outcome"] in ("completed", "stopped") else 1

