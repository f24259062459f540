"""The human-readable summary of an episode log (`gaitforge logs inspect`)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .logger import EpisodeLog

def _pct(x: np.ndarray, scale: float = 1e3) -> str:
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return "n/a"
    p50, p99 = np.percentile(x, [50, 99]) * scale
    return f"p50 {p50:.3f} ms, p99 {p99:.3f} ms"


def summarize(log: EpisodeLog) -> str:
    """Human-readable report for ``gaitforge logs inspect PATH``."""
    m, t = log.metadata, log.ticks
    n = len(t["tick"])
    wake_s = t["deadline_s"] + t["lateness_s"]
    span = f"{wake_s[-1] - wake_s[0]:.3f} s" if n else "0 s"
    ticks = f"{n} (ticks {t['tick'][0]}..{t['tick'][-1]})" if n else "0"
    torn = log.torn_tail
    skipped = t["skipped"]
    events = Counter(e["kind"] for e in log.events)
    lines = [
        f"episode log: {log.path}",
        f"robot: {m.get('robot', '?')}  body: {m.get('body', '?')}  "
        f"bundle: {m.get('bundle_hash', '?')}  started: {m.get('start_time', '?')}",
        f"ticks: {ticks}  duration: {span}",
        f"status: {'complete' if log.complete else 'interrupted (no end record)'}",
        "outcome: " + (f"{log.summary.get('outcome', '?')}: {log.summary.get('reason', '')}"
                       if log.complete else "unknown: the log stops before the episode's end "
                       "(the process died, or the log could not be written)"),
        "torn tail: " + (f"{torn['bytes_skipped']} bytes skipped at byte offset {torn['offset']}"
                         if torn else "none"),
        f"period: {_pct(np.diff(wake_s))}",
        f"lateness: {_pct(t['lateness_s'])}",
        f"work: {_pct(t['work_s'])}",
        f"overruns: {int((skipped > 0).sum())} ticks, {int(skipped.sum())} ticks skipped",
        "events: " + (", ".join(f"{k} x{v}" for k, v in sorted(events.items())) or "none"),
    ]
    return "\n".join(lines)
