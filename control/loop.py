"""Fixed-rate loop of the deploy runtime, and the optional real-time set-up of its thread.

Tick k is due at the ABSOLUTE deadline ``t0 + k * period_s`` (never "now + period", which
drifts by every tick's wake-up error). The loop sleeps until ``busy_wait_s`` before the
deadline (the OS wakes us late by tens of microseconds) and then spins on the clock up to
the deadline. A tick that ends after the next deadline is an overrun: the loop stays on its
grid and runs next at the first grid point at or after now, counting the grid points it
skipped, instead of running several ticks back to back to catch up. Each tick gets a
``TickInfo`` (deadline, wake time, lateness, skipped); ``LoopStats`` keeps lateness and
work time for every tick. Clock and sleep are injected, so tests run on a fake clock.

``setup_realtime`` asks the OS for what a real-time thread wants (SCHED_FIFO, CPU
affinity, locked memory, 1 ns timer slack). Each step may fail (no CAP_SYS_NICE, macOS,
a container): it then says why in its ``RealtimeReport`` line and never raises.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import math
import os
import platform
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

TIMING_KEYS = ("deadline_s", "lateness_s", "work_s", "skipped")


@dataclass(frozen=True)
class TickInfo:
    """Timing of one tick, handed to the tick function (times are on the loop's clock)."""

    index: int  # grid index k (deadline = t0 + k * period); jumps when ticks are skipped
    count: int  # ticks actually run before this one
    deadline_s: float
    start_s: float  # when the loop handed over to the tick (after sleep and busy-wait)
    lateness_s: float  # start_s - deadline_s
    skipped: int  # grid points skipped right before this tick (after an overrun)


def timing_dict(info: TickInfo, work_s: float) -> dict[str, float | int]:
    """The episode logger's timing columns (``TIMING_KEYS``) for one tick."""
    return {
        "deadline_s": info.deadline_s,
        "lateness_s": info.lateness_s,
        "work_s": work_s,
        "skipped": info.skipped,
    }


@dataclass
class LoopStats:
    """Per-tick samples of one run, plus counters. ``array('d')`` keeps long runs small."""

    period_s: float
    deadline_s: array = field(default_factory=lambda: array("d"))
    lateness_s: array = field(default_factory=lambda: array("d"))  # period error
    work_s: array = field(default_factory=lambda: array("d"))
    overruns: int = 0  # ticks that ended after the next deadline
    skipped: int = 0  # grid points skipped before the ticks that ran

    @property
    def ticks(self) -> int:
        return len(self.lateness_s)

    def record(self, info: TickInfo, work_s: float) -> None:
        self.deadline_s.append(info.deadline_s)
        self.lateness_s.append(info.lateness_s)
        self.work_s.append(work_s)
        self.skipped += info.skipped

    def summary(self) -> dict[str, float | int]:
        """p50 / p99 / max of lateness and work (s; NaN before the first tick), counters."""
        out: dict[str, float | int] = {
            "period_s": self.period_s,
            "ticks": self.ticks,
            "overruns": self.overruns,
            "skipped": self.skipped,
        }
        for name, samples in (("lateness", self.lateness_s), ("work", self.work_s)):
            a = np.frombuffer(samples, dtype=np.float64) if len(samples) else None
            for tag, q in (("p50", 50.0), ("p99", 99.0), ("max", 100.0)):
                out[f"{name}_{tag}_s"] = float(np.percentile(a, q)) if a is not None else math.nan
        return out


class FixedRateLoop:
    """Calls ``tick(info)`` at ``t0 + k * period_s``; see the module docstring."""

    def __init__(
        self,
        period_s: float,
        *,
        busy_wait_s: float = 0.0005,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not (math.isfinite(period_s) and period_s > 0):
            raise ValueError(f"period_s must be > 0 and finite, got {period_s!r}")
        if not (math.isfinite(busy_wait_s) and busy_wait_s >= 0):
            raise ValueError(f"busy_wait_s must be >= 0 and finite, got {busy_wait_s!r}")
        self.period_s = float(period_s)
        self.busy_wait_s = float(busy_wait_s)
        self.clock = clock
        self._sleep = sleep

    def _wait_until(self, deadline_s: float, now_s: float) -> float:
        """Sleep to ``busy_wait_s`` before the deadline, then spin; returns the wake time."""
        remaining = deadline_s - now_s
        if remaining > self.busy_wait_s:
            self._sleep(remaining - self.busy_wait_s)
            now_s = self.clock()
        while now_s < deadline_s:
            now_s = self.clock()
        return now_s

    def run(
        self,
        tick: Callable[[TickInfo], bool],
        *,
        max_ticks: int | None = None,
        duration_s: float | None = None,
    ) -> LoopStats:
        """Run ticks until one returns a false value, ``max_ticks`` ticks have run, or the
        next deadline is ``duration_s`` or more after the first. The first tick is due at
        once (k = 0, t0 = the clock at the call). With neither limit, only the tick stops it.
        """
        if max_ticks is not None and max_ticks < 0:
            raise ValueError(f"max_ticks must be >= 0, got {max_ticks!r}")
        if duration_s is not None and not duration_s > 0:
            raise ValueError(f"duration_s must be > 0, got {duration_s!r}")
        period = self.period_s
        stats = LoopStats(period_s=period)
        now = t0 = self.clock()
        end_s = math.inf if duration_s is None else t0 + duration_s
        k = count = skipped = 0
        while max_ticks is None or count < max_ticks:
            deadline = t0 + k * period
            if deadline >= end_s:
                break
            start = self._wait_until(deadline, now)
            info = TickInfo(k, count, deadline, start, start - deadline, skipped)
            keep_going = tick(info)
            now = self.clock()
            stats.record(info, now - start)
            count += 1
            if not keep_going:
                break
            next_k = k + 1
            if now > t0 + next_k * period:  # overrun: back onto the grid, skip what passed
                stats.overruns += 1
                next_k = max(k + 2, math.ceil((now - t0) / period))
            skipped = next_k - k - 1
            k = next_k
        return stats


# ---- real-time set-up ----------------------------------------------------------------


@dataclass(frozen=True)
class RealtimeStep:
    name: str  # "sched_fifo", "affinity", "mlockall", "timer_slack"
    status: str  # "ok", "failed" or "skipped" (not asked for)
    message: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def line(self) -> str:
        return f"{self.name:<12} {self.status:<7} {self.message}"


@dataclass(frozen=True)
class RealtimeReport:
    steps: tuple[RealtimeStep, ...]

    def lines(self) -> list[str]:
        return [s.line() for s in self.steps]

    def succeeded(self) -> list[str]:
        return [s.name for s in self.steps if s.ok]

    def __str__(self) -> str:
        return "\n".join(self.lines())


_SCHED_FIX = (
    "needs CAP_SYS_NICE (root, or setcap cap_sys_nice+ep on the interpreter) or an rtprio "
    "limit in /etc/security/limits.conf (e.g. '@realtime - rtprio 95'); in a container also "
    "--cap-add=SYS_NICE and RT runtime (e.g. docker --cpu-rt-runtime)"
)
_MLOCK_FIX = (
    "needs CAP_IPC_LOCK or a memlock limit above the process size in "
    "/etc/security/limits.conf (e.g. '@realtime - memlock unlimited')"
)
_PR_SET_TIMERSLACK, _PR_GET_TIMERSLACK = 29, 30
_ZEROS = (ctypes.c_ulong(0),) * 3  # prctl's unused unsigned long arguments


def _libc():
    """The C library, or None where ctypes cannot find one."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    except OSError:
        return None


def _limit(name: str) -> str:
    """A soft resource limit by name ("RLIMIT_RTPRIO"), as text; "unknown" off Unix."""
    try:
        import resource  # Unix only
    except ImportError:
        return "unknown"
    soft, _hard = resource.getrlimit(getattr(resource, name))
    return "unlimited" if soft == resource.RLIM_INFINITY else str(soft)


def _os_error(e: OSError) -> str:
    return f"{errno.errorcode.get(e.errno, e.errno)}: {e.strerror}"


def _sched_fifo(priority: int) -> RealtimeStep:
    if not hasattr(os, "sched_setscheduler"):
        return RealtimeStep("sched_fifo", "failed", "os.sched_setscheduler is not available")
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except PermissionError as e:
        limit = _limit("RLIMIT_RTPRIO")
        msg = f"{_os_error(e)}; {_SCHED_FIX}; RLIMIT_RTPRIO is {limit}"
        return RealtimeStep("sched_fifo", "failed", msg)
    except OSError as e:
        return RealtimeStep("sched_fifo", "failed", _os_error(e))
    return RealtimeStep("sched_fifo", "ok", f"SCHED_FIFO priority {priority} (this thread)")


def _affinity(cpus: set[int] | None) -> RealtimeStep:
    if not hasattr(os, "sched_setaffinity"):
        return RealtimeStep("affinity", "failed", "os.sched_setaffinity is not available")
    if cpus is None:
        current = sorted(os.sched_getaffinity(0))
        return RealtimeStep("affinity", "skipped", f"cpus=None: left at {current}")
    try:
        os.sched_setaffinity(0, cpus)
    except (OSError, ValueError, OverflowError) as e:
        why = _os_error(e) if isinstance(e, OSError) else str(e)
        allowed = sorted(os.sched_getaffinity(0))
        return RealtimeStep("affinity", "failed", f"{why}; cpus {sorted(cpus)}, allowed {allowed}")
    return RealtimeStep("affinity", "ok", f"pinned to cpus {sorted(cpus)} (this thread)")


def _mlockall(libc) -> RealtimeStep:
    if libc is None or not hasattr(libc, "mlockall"):
        return RealtimeStep("mlockall", "failed", "mlockall is not available in the C library")
    # Linux values; powerpc and sparc number them differently.
    ppc_sparc = platform.machine().startswith(("ppc", "sparc"))
    mcl_current, mcl_future = (0x2000, 0x4000) if ppc_sparc else (1, 2)
    if libc.mlockall(mcl_current | mcl_future) != 0:
        err = ctypes.get_errno()
        msg = f"{errno.errorcode.get(err, err)}: {os.strerror(err)}"
        if err in (errno.ENOMEM, errno.EPERM, errno.EAGAIN):
            msg += f"; {_MLOCK_FIX}; RLIMIT_MEMLOCK is {_limit('RLIMIT_MEMLOCK')} bytes"
        return RealtimeStep("mlockall", "failed", msg)
    return RealtimeStep(
        "mlockall", "ok", "MCL_CURRENT|MCL_FUTURE: memory locked, later allocations too"
    )


def _timer_slack(libc, slack_ns: int) -> RealtimeStep:
    if libc is None or not hasattr(libc, "prctl") or platform.system() != "Linux":
        return RealtimeStep("timer_slack", "failed", "prctl is Linux-only")
    if libc.prctl(_PR_SET_TIMERSLACK, ctypes.c_ulong(slack_ns), *_ZEROS) != 0:
        err = ctypes.get_errno()
        msg = f"PR_SET_TIMERSLACK: {errno.errorcode.get(err, err)}: {os.strerror(err)}"
        return RealtimeStep("timer_slack", "failed", msg)
    now_ns = libc.prctl(_PR_GET_TIMERSLACK, *_ZEROS, ctypes.c_ulong(0))
    return RealtimeStep("timer_slack", "ok", f"{now_ns} ns (this thread)")


def setup_realtime(
    *,
    priority: int = 80,
    cpus: set[int] | None = None,
    lock_memory: bool = True,
    timer_slack_ns: int = 1,
) -> RealtimeReport:
    """Make the CALLING THREAD as real-time as the OS allows; never raises for a refusal.

    Call it from the thread that will run the loop, after loading the policy and
    allocating buffers: with MCL_FUTURE every later allocation is locked as well, and
    past RLIMIT_MEMLOCK it fails. ``cpus=None`` leaves the affinity alone. There is no
    undo; run it in a process of its own where that matters (tests, benches).
    """
    if not 1 <= priority <= 99:
        raise ValueError(f"priority must be in 1..99 (SCHED_FIFO), got {priority!r}")
    if cpus is not None and not cpus:
        raise ValueError("cpus must be None or a non-empty set of CPU numbers")
    if timer_slack_ns < 1:
        raise ValueError(f"timer_slack_ns must be >= 1 (0 means the default), got {timer_slack_ns}")
    libc = _libc()
    steps = [_affinity(cpus)]
    if lock_memory:
        steps.append(_mlockall(libc))
    else:
        steps.append(RealtimeStep("mlockall", "skipped", "lock_memory=False"))
    steps.append(_timer_slack(libc, timer_slack_ns))
    steps.append(_sched_fifo(priority))  # last, so the set-up itself is not run at RT
    return RealtimeReport(tuple(steps))
