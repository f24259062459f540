"""`gaitforge excite (--hw CONFIG --port P | --body sim:ENGINE) [--support hung|ground]`: an
identification routine (control/excitation.py: per-joint chirps, then steps, ramped in and out,
inside the limits minus the margin and the rate limit) through the same deploy runtime, safety
layer and logger as a policy. Its logs are ordinary episode logs tagged `kind: excitation`,
ready for `gaitforge replay` and `gaitforge sysid`."""

from __future__ import annotations

from pathlib import Path

from .argtypes import count0, positive, seconds
from .bodies import add_body_arguments
from .cmd_deploy import clock_for, run_episode_and_report


def register(sub) -> None:
    p = sub.add_parser("excite", help="run an identification routine (chirps and steps) on a "
                       "body and log it, for replay and system identification")
    p.add_argument("--robot", default="servo_dog", help="robot name (default servo_dog)")
    p.add_argument("--duration", type=seconds, default=30.0,
                   help="seconds of excitation, ramps included (default 30)")
    p.add_argument("--amplitude", type=positive, metavar="RAD", help="largest joint excursion "
                   "from the default pose (default 0.4 hung, 0.1 on the ground; cut to fit the "
                   "limits and the rate limit)")
    p.add_argument("--seed", type=count0, default=0,
                   help="order of the step levels (0 or more; default 0)")
    p.add_argument("--control-dt", type=seconds, default=0.02, metavar="S",
                   help="control period (default 0.02 s)")
    p.add_argument("--log-dir", default="excite-logs", help="where the logs go "
                   "(default excite-logs/)")
    add_body_arguments(p, default_support="hung")
    p.set_defaults(func=run)


def run(args) -> int:
    from gaitforge.control.excitation import ExcitationConfig
    from gaitforge.control.runtime import excitation_runtime
    from gaitforge.robots.configio import ConfigError
    from gaitforge.robots.spec import load_robot_spec

    amplitude = args.amplitude or (0.4 if args.support == "hung" else 0.1)
    try:
        config = ExcitationConfig(duration_s=args.duration, amplitude_rad=amplitude,
                                  seed=args.seed)
    except ValueError as err:
        raise ConfigError(f"excite: {err}") from None
    spec = load_robot_spec(args.robot)
    runtime, duration_s = excitation_runtime(spec, config, args.control_dt, clock_for(args)[0])
    return run_episode_and_report(args, runtime, Path(args.log_dir), duration_s)
