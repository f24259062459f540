"""`gaitforge logs inspect|export|plot LOG`: what an episode log holds, the log in the tools
robotics people use (MCAP for Foxglove Studio and PlotJuggler, CSV for spreadsheets), and a
PNG of it."""

from __future__ import annotations

import time
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("logs", help="episode logs written by `gaitforge deploy`: inspect, "
                       "export (MCAP, CSV), plot")
    logs = p.add_subparsers(dest="logs_command", required=True, metavar="ACTION")
    q = logs.add_parser("inspect", help="summary of one episode log")
    q.add_argument("path", help="a .gflog file")
    q.set_defaults(func=run_inspect)
    e = logs.add_parser("export", help="write the log as MCAP (Foxglove Studio, PlotJuggler: "
                        "one channel per kind, JSON schemas, the log's timestamps) or CSV "
                        "(one row per tick; events in NAME.events.csv)")
    e.add_argument("path", help="a .gflog file")
    e.add_argument("--format", choices=["mcap", "csv"], default="mcap",
                   help="mcap (default; needs the `logs` extra) or csv")
    e.add_argument("--out", metavar="PATH", help="where to write (default: beside the log, "
                   "LOG.mcap or LOG.csv)")
    e.set_defaults(func=run_export)
    g = logs.add_parser("plot", help="a PNG of the log: targets against measured positions "
                        "per joint, the velocity command, tick timing, events on the time axis")
    g.add_argument("path", help="a .gflog file")
    g.add_argument("--out", metavar="PATH", help="default: beside the log, LOG.png")
    g.set_defaults(func=run_plot)


def _load(path: str, note: bool = True):
    from .logs_in import load_logs

    (entry,) = load_logs([path])  # refuses a folder, a missing file, a corrupt log
    if note and entry.note:
        print(f"gaitforge: {entry.note}")
    return entry.log


def run_inspect(args) -> int:
    from gaitforge.control.log_summary import summarize

    print(summarize(_load(args.path, note=False)))  # it tells of a torn tail
    return 0


def run_export(args) -> int:
    from gaitforge.control import log_export

    log = _load(args.path)
    out = Path(args.out) if args.out else Path(args.path).with_suffix(f".{args.format}")
    start = time.perf_counter()
    if args.format == "mcap":
        counts = log_export.export_mcap(log, out)
        what = ", ".join(f"{topic} {n}" for topic, n in counts.items() if n)
    else:
        _, events = log_export.export_csv(log, out)
        what = f"{len(log)} rows; events in {events}"
    took = time.perf_counter() - start
    print(f"{out}: {len(log)} ticks in {took:.2f} s ({what})")
    return 0


def run_plot(args) -> int:
    from .log_plot import plot_log

    out = Path(args.out) if args.out else Path(args.path).with_suffix(".png")
    print(plot_log(_load(args.path), out))
    return 0
