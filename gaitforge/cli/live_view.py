"""The live status view of `gaitforge deploy` in the terminal (`rich`, optional extra `console`).

The deploy tick keeps a `control.deploy.LiveStatus` up to date (a few assignments per tick);
rich's own thread redraws this view from it a few times a second, so the control loop never
waits for the terminal. Shown: the safety phase, the command in force, policy time, tick
timing over the last ticks (work, lateness: p50 / p99 / max; overruns), re-arms, a lost
input device, the last events, and the keys.
"""

from __future__ import annotations

import contextlib

import numpy as np

PHASE_STYLE = {"policy": "bold green", "soft_start": "bold yellow", "damping": "bold red",
               "estop": "bold white on red", "off": "bold red", "shutdown": "magenta",
               "finished": "magenta", "idle": "dim"}


def _ms(samples: np.ndarray) -> str:
    x = samples[np.isfinite(samples)]
    if not x.size:
        return "-"
    p50, p99, top = np.percentile(x, [50, 99, 100]) * 1e3
    return f"{p50:6.3f} / {p99:6.3f} / {top:6.3f} ms"


def render(status, *, title: str, period_s: float, keys: str = ""):
    """The view of `status` (a LiveStatus) as a rich renderable."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    s = status
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold cyan", justify="right")
    grid.add_column()
    phase = Text(s.phase, style=PHASE_STYLE.get(s.phase, ""))
    if s.lost:
        phase.append(f"   input lost: {s.lost}", style="bold red")
    grid.add_row("safety", phase)
    vx, vy, yaw = (float(c) for c in s.command)
    grid.add_row("command", f"vx {vx:+.2f} m/s   vy {vy:+.2f} m/s   yaw {yaw:+.2f} rad/s")
    grid.add_row("policy", f"{s.policy_s:7.2f} s   tick {s.tick}   re-arms {s.rearms}")
    grid.add_row("work", f"{_ms(s.work_s)}  (p50 / p99 / max, last {s.window} ticks; "
                 f"period {period_s * 1e3:.0f} ms)")
    grid.add_row("lateness", f"{_ms(s.lateness_s)}   overruns {s.overruns}")
    events = Table.grid(padding=(0, 1))
    for tick, kind, detail in list(s.events)[::-1]:
        style = "red" if kind in ("tilt_estop", "watchdog_damping", "watchdog_off",
                                  "input_lost", "non_finite", "rearm_refused") else ""
        events.add_row(f"{tick:>7}", Text(kind, style=style or "yellow"),
                       Text(detail[:70], style="dim"))
    parts = [grid, Text("last events", style="bold cyan"), events]
    if keys:
        parts.append(Text(keys, style="dim"))
    return Panel(Group(*parts), title=title, border_style="blue")


@contextlib.contextmanager
def live_view(status, *, title: str, period_s: float, keys: str = "", console=None):
    """Redraw the view of `status` a few times a second while the block runs."""
    from rich.live import Live

    def view():
        return render(status, title=title, period_s=period_s, keys=keys)

    with Live(get_renderable=view, refresh_per_second=4, console=console,
              redirect_stdout=False, redirect_stderr=False, transient=False):
        yield
