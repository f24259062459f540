"""The `gaitforge` command: the app layer, which joins the library packages into verbs.

One module per verb (`cmd_<verb>.py`), each with `register(subparsers)` that adds its parser
and sets `func(args) -> exit status`. What the verbs share:
    run_config.py    YAML layers -> the frozen RunConfig (robot, task, engine overlays)
    run_folders.py   runs/<name>/: config, checkpoints, TensorBoard, metrics; restoring an agent
Domain logic lives in the library packages (robots, control, sim, hw_drivers, agents); a verb
parses arguments, builds the pieces and prints what they report.
"""

from __future__ import annotations

import argparse
import os
import sys

from gaitforge.robots.configio import ConfigError

from . import (
    cmd_check,
    cmd_deploy,
    cmd_envs,
    cmd_eval,
    cmd_excite,
    cmd_export,
    cmd_logs,
    cmd_plot,
    cmd_replay,
    cmd_sysid,
    cmd_train,
    cmd_virtual_robot,
)

VERBS = (cmd_envs, cmd_check, cmd_train, cmd_eval, cmd_plot, cmd_export, cmd_deploy,
         cmd_excite, cmd_replay, cmd_sysid, cmd_virtual_robot, cmd_logs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gaitforge",
        description="Train legged-robot gaits in PyBullet/MuJoCo, deploy them over serial.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for verb in VERBS:
        verb.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    os.environ.setdefault("MUJOCO_GL", "disable")  # no display; PyBullet renders offscreen
    args = build_parser().parse_args(argv)
    from gaitforge.agents.checkpoint import CheckpointError
    from gaitforge.control.bundle import BundleError
    from gaitforge.control.files import NotOursError
    from gaitforge.control.logger import LogFormatError, LogSpaceError

    try:
        return args.func(args)
    except (ConfigError, CheckpointError, BundleError, LogFormatError, LogSpaceError,
            NotOursError) as err:
        print(f"gaitforge: error: {err}", file=sys.stderr)
        return 2
