"""`gaitforge logs inspect LOG`: what an episode log holds."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("logs", help="episode logs written by `gaitforge deploy`")
    logs = p.add_subparsers(dest="logs_command", required=True, metavar="ACTION")
    q = logs.add_parser("inspect", help="summary of one episode log")
    q.add_argument("path", help="a .gflog file")
    q.set_defaults(func=run_inspect)


def run_inspect(args) -> int:
    from gaitforge.control.logger import summarize

    from .logs_in import load_logs

    (entry,) = load_logs([args.path])  # refuses a folder, a missing file, a corrupt log
    print(summarize(entry.log))
    return 0
