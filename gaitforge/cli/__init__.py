"""The `gaitforge` command: the app layer, which joins the library packages into verbs.

One module per verb (`cmd_<verb>.py`), each with `register(subparsers)` that adds its parser
and sets `func(args) -> exit status`. What the verbs share:
    run_config.py    YAML layers -> the frozen RunConfig (robot, task, engine overlays)
    run_folders.py   runs/<name>/: config, checkpoints, TensorBoard, metrics; restoring an agent
    argtypes.py      the numeric options' converters (nonsense refused at parse time)
    user_errors.py   which errors a user can cause, and the sentence `main` prints for each
Domain logic lives in the library packages (robots, control, sim, hw_drivers, agents); a verb
parses arguments, builds the pieces and prints what they report.
"""

from __future__ import annotations

import os
import sys

from . import (
    cmd_check,
    cmd_deploy,
    cmd_envs,
    cmd_eval,
    cmd_excite,
    cmd_export,
    cmd_finetune,
    cmd_logs,
    cmd_plot,
    cmd_replay,
    cmd_sysid,
    cmd_train,
    cmd_virtual_robot,
)
from .argtypes import Parser
from .user_errors import user_error_message

VERBS = (cmd_envs, cmd_check, cmd_train, cmd_eval, cmd_plot, cmd_export, cmd_deploy,
         cmd_excite, cmd_replay, cmd_sysid, cmd_finetune, cmd_virtual_robot, cmd_logs)


def build_parser() -> Parser:
    parser = Parser(
        prog="gaitforge",
        description="Train legged-robot gaits in PyBullet/MuJoCo, deploy them over serial.",
        epilog="Exit status 2: an error of input (an argument, a config, a file, a port, a "
        "robot that does not start), said in one or two lines.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for verb in VERBS:
        verb.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one verb; its exit status. Every error a user can cause (see user_errors.py), bad
    arguments included, is one or two lines on stderr and exit status 2, never a traceback."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    os.environ.setdefault("MUJOCO_GL", "disable")  # no display; PyBullet renders offscreen
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help (0), or argparse refused an argument (2)
        return stop.code if isinstance(stop.code, int) else 2
    try:
        return args.func(args)
    except BrokenPipeError:  # the reader went away (`| head`, a bench that stopped): no trace
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as err:
        message = user_error_message(err)
        if message is None:
            raise
        print(f"gaitforge: error: {message}", file=sys.stderr)
        return 2
