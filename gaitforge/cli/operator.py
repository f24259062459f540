"""Where `gaitforge deploy` takes its velocity command from, and what it shows while it runs:
the command-source options (`--commands FILE`, `--teleop keyboard|gamepad`, `--gamepad`,
`--gamepad-map`), the live view (`--live` / `--no-live`), and the `Operator` that bundles
them for one episode."""

from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import dataclass, field

from gaitforge.robots.configio import ConfigError

TELEOP_DURATION_S = 300.0


def add_command_arguments(p) -> None:
    p.add_argument("--commands", metavar="FILE", help="a command schedule (YAML): segments: "
                   "[{duration_s: 5, command: [0.3, 0, 0]}, ...], on policy time; zero after "
                   "the last segment (instead of --command)")
    p.add_argument("--teleop", choices=["keyboard", "gamepad"], help="the operator drives: "
                   "keyboard (this terminal: w/s or up/down vx, a/d or left/right yaw, z/c vy, "
                   "x zero, space damping, r re-arm, q end) or gamepad (Linux evdev, needs the "
                   "`console` extra; mapping in configs/teleop/gamepad.yaml). A fault waits in "
                   "damping for a re-arm instead of ending the episode")
    p.add_argument("--gamepad", metavar="DEVICE", help="with --teleop gamepad: the input "
                   "device (default: the first with the mapping's stick and buttons)")
    p.add_argument("--gamepad-map", metavar="FILE", help="with --teleop gamepad: the axis and "
                   "button mapping and dead zone (default configs/teleop/gamepad.yaml)")
    p.add_argument("--live", action=argparse.BooleanOptionalAction, default=None,
                   help="a live status view in the terminal (safety phase, command, tick "
                   "timing, events; needs `rich`, the `console` extra); default: on when "
                   "stdout is a terminal")


@dataclass
class Operator:
    """The command source of one episode and what goes with it."""

    source: object  # a control.commands.CommandSource
    initial: tuple  # the command the log's metadata records
    duration_s: float
    metadata: dict
    max_total_s: float | None = None
    keys: str = ""
    live: bool = False
    status: object = None  # control.deploy.LiveStatus, with a live view
    title: str = field(default="gaitforge deploy")

    def view(self, period_s: float):
        if not self.live:
            if self.keys:
                print(f"keys: {self.keys}", flush=True)
            return contextlib.nullcontext()
        from .live_view import live_view

        return live_view(self.status, title=self.title, period_s=period_s, keys=self.keys)


def _limits(runtime):
    """The operator's command limits: the training command ranges the bundle records (the
    largest magnitude of each), else the defaults."""
    from gaitforge.control.commands import CommandLimits

    try:
        ranges = runtime.bundle.manifest["source"]["config"]["env"]["task"]["command"]
        vx, vy, yaw = (max(abs(float(v)) for v in ranges[k])
                       for k in ("vx_m_s", "vy_m_s", "yaw_rad_s"))
    except (AttributeError, KeyError, TypeError, ValueError):
        return CommandLimits()
    if not min(vx, vy, yaw) > 0:
        return CommandLimits()
    return CommandLimits(max_m_s=(vx, vy), max_yaw_rad_s=yaw)


def _make_source(args, runtime):
    """(source, duration_s, metadata, keys)."""
    from gaitforge.control import commands

    if args.commands:
        schedule = commands.load_schedule(args.commands)
        meta = {"command_source": "schedule", "commands_file": str(args.commands),
                "segments": [{"duration_s": g.duration_s, "command": list(g.command)}
                             for g in schedule.segments]}
        return schedule, args.duration or schedule.total_s, meta, ""
    duration = args.duration or TELEOP_DURATION_S
    limits = _limits(runtime)
    meta = {"command_source": args.teleop, "command_limits": {
        "max_m_s": list(limits.max_m_s), "max_yaw_rad_s": limits.max_yaw_rad_s}}
    if args.teleop == "keyboard":
        from gaitforge.control.keyboard import HELP, KeyboardTeleop

        if not sys.stdin.isatty():
            raise ConfigError("--teleop keyboard reads the keys of a terminal, but standard "
                              "input is not one (a pipe or a file): run it in a terminal")
        return KeyboardTeleop(sys.stdin.fileno(), limits), duration, meta, HELP
    from gaitforge.control.gamepad import GamepadTeleop, load_gamepad_map

    mapping = load_gamepad_map(args.gamepad_map)
    pad = GamepadTeleop(args.gamepad, mapping, limits)
    meta.update(gamepad=str(pad.path), gamepad_map=str(args.gamepad_map or "default"))
    keys = (f"sticks: vx/vy ({mapping.axes['vx'].code}/{mapping.axes['vy'].code}), yaw "
            f"({mapping.axes['yaw'].code}); {mapping.buttons['damp']}: damping, "
            f"{mapping.buttons['rearm']}: re-arm, {mapping.buttons['stop']}: end")
    return pad, duration, meta, keys


@contextlib.contextmanager
def command_source(args, runtime):
    """The Operator the arguments ask for; the source is closed (a terminal restored) after."""
    from gaitforge.control.deploy import LiveStatus

    if args.commands and args.teleop:
        raise ConfigError("--commands and --teleop both give the command: choose one")
    if (args.gamepad or args.gamepad_map) and args.teleop != "gamepad":
        raise ConfigError("--gamepad and --gamepad-map go with --teleop gamepad")
    if not (args.commands or args.teleop):
        source, meta, keys = None, {"command_source": "fixed"}, ""
        duration = args.duration or 10.0
    else:
        source, duration, meta, keys = _make_source(args, runtime)
    live = sys.stdout.isatty() if args.live is None else args.live
    if live:
        from gaitforge.control.optional import require

        try:
            require("rich", "console", "the live view (--live)")
        except ConfigError as err:
            if args.live:
                raise
            print(f"gaitforge: no live view: {err}", file=sys.stderr)
            live = False
    initial = tuple(float(c) for c in source.current) if source is not None else args.command
    op = Operator(source, initial, duration, meta, keys=keys, live=live,
                  status=LiveStatus() if live else None,
                  max_total_s=2 * duration + 30.0 if getattr(source, "can_rearm", False)
                  else None,
                  title=f"gaitforge deploy {args.bundle}")
    try:
        yield op
    finally:
        if source is not None:
            source.close()
