"""loop: absolute deadlines, sleep-then-spin wake-up, overruns skip grid points instead of
bunching, stop conditions, stats, and the real-time set-up report.

Numbers are powers of two, so every time below is exact in floating point:
period P = 2^-6 s (15.625 ms), busy-wait B = 2^-9 s, a spinning clock read R = 2^-14 s.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from gaitforge.control import loop as loop_mod
from gaitforge.control.loop import (
    TIMING_KEYS,
    FixedRateLoop,
    LoopStats,
    RealtimeReport,
    TickInfo,
    setup_realtime,
    timing_dict,
)

P = 2.0**-6
B = 2.0**-9
R = 2.0**-14
T0 = 1.0


class FakeTime:
    """Time moves only when something happens: ``sleep(d)`` moves it by d plus the next
    injected oversleep, ``work(d)`` by d, and a read that directly follows another read
    (a spinning reader) by ``read_step_s``. A read after a sleep or work sees that
    moment exactly."""

    def __init__(self, start_s=T0, read_step_s=R, oversleep_s=()):
        self.now_s = start_s
        self.read_step_s = read_step_s
        self.oversleep_s = list(oversleep_s)
        self.sleeps: list[float] = []
        self._last_was_read = False

    def clock(self) -> float:
        if self._last_was_read:
            self.now_s += self.read_step_s
        self._last_was_read = True
        return self.now_s

    def sleep(self, d: float) -> None:
        assert d > 0
        self.sleeps.append(d)
        self.now_s += d + (self.oversleep_s.pop(0) if self.oversleep_s else 0.0)
        self._last_was_read = False

    def work(self, d: float) -> None:
        self.now_s += d
        self._last_was_read = False


def make_loop(fake: FakeTime, busy_wait_s: float = B) -> FixedRateLoop:
    return FixedRateLoop(P, busy_wait_s=busy_wait_s, clock=fake.clock, sleep=fake.sleep)


def recorder(fake: FakeTime, work_s=lambda info: 0.0):
    infos: list[TickInfo] = []

    def tick(info: TickInfo) -> bool:
        infos.append(info)
        fake.work(work_s(info))
        return True

    return infos, tick


def test_deadlines_are_absolute_and_busy_wait_lands_on_them():
    fake = FakeTime()
    work = [0.0, 2.0**-10, 2.0**-8, 3 * 2.0**-10, 0.0]
    infos, tick = recorder(fake, lambda info: work[info.count])
    stats = make_loop(fake).run(tick, max_ticks=5)
    assert [i.index for i in infos] == [0, 1, 2, 3, 4]
    assert [i.count for i in infos] == [0, 1, 2, 3, 4]
    assert [i.deadline_s for i in infos] == [T0 + k * P for k in range(5)]
    # the busy-wait reaches each deadline exactly: zero lateness, start == deadline
    assert [i.start_s for i in infos] == [i.deadline_s for i in infos]
    assert list(stats.lateness_s) == [0.0] * 5
    assert list(stats.work_s) == work
    # tick 0 is due at once; then sleep until B before the deadline: P - B - work
    assert fake.sleeps == [P - B - w for w in work[:4]]
    assert [i.skipped for i in infos] == [0] * 5
    assert (stats.overruns, stats.skipped, stats.ticks) == (0, 0, 5)


def test_oversleep_within_the_busy_wait_is_absorbed_beyond_it_is_lateness():
    # 4 ticks, 3 sleeps: oversleep 0, B/2 (absorbed by the spin), 2B (lateness 2B - B = B)
    fake = FakeTime(oversleep_s=[0.0, B / 2, 2 * B])
    infos, tick = recorder(fake)
    make_loop(fake).run(tick, max_ticks=4)
    assert [i.lateness_s for i in infos] == [0.0, 0.0, 0.0, B]
    assert infos[3].start_s == T0 + 3 * P + B


def test_oversleep_off_the_read_grid_ends_the_spin_at_the_first_read_past_the_deadline():
    # woken 3.5 reads before the deadline: reads at -3.5R, -2.5R, ..., +0.5R -> lateness R/2
    fake = FakeTime(oversleep_s=[B - 3.5 * R])
    infos, tick = recorder(fake)
    make_loop(fake).run(tick, max_ticks=2)
    assert infos[1].lateness_s == R / 2


def test_without_busy_wait_lateness_is_the_oversleep():
    fake = FakeTime(oversleep_s=[3 * R, 5 * R])
    infos, tick = recorder(fake)
    make_loop(fake, busy_wait_s=0.0).run(tick, max_ticks=3)
    assert fake.sleeps == [P, P - 3 * R]  # sleeps aim at the absolute deadline, not now + P
    assert [i.lateness_s for i in infos] == [0.0, 3 * R, 5 * R]


def test_short_remaining_time_spins_without_sleeping():
    # work P - B/2 leaves less than B before the next deadline: no sleep, spin only
    fake = FakeTime()
    infos, tick = recorder(fake, lambda info: P - B / 2 if info.count == 0 else 0.0)
    make_loop(fake).run(tick, max_ticks=2)
    assert fake.sleeps == []
    assert infos[1].start_s == T0 + P


def test_overrun_skips_grid_points_and_never_bunches():
    # tick 1 works 2.5 periods: it ends at T0 + 3.5P, so grid points 2 and 3 are skipped and
    # the next tick runs at grid point 4 (T0 + 4P), after sleeping 0.5P - B
    fake = FakeTime()
    infos, tick = recorder(fake, lambda info: 2.5 * P if info.count == 1 else 0.0)
    stats = make_loop(fake).run(tick, max_ticks=4)
    assert [i.index for i in infos] == [0, 1, 4, 5]
    assert [i.skipped for i in infos] == [0, 0, 2, 0]
    assert [i.deadline_s for i in infos] == [T0, T0 + P, T0 + 4 * P, T0 + 5 * P]
    assert [i.lateness_s for i in infos] == [0.0] * 4
    assert fake.sleeps == [P - B, 0.5 * P - B, P - B]
    assert (stats.overruns, stats.skipped, stats.ticks) == (1, 2, 4)
    starts = np.array([i.start_s for i in infos])
    assert np.diff(starts).min() >= P


def test_overrun_ending_exactly_on_a_grid_point_runs_at_once():
    # work of exactly 2P ends on grid point 2: one point (1) skipped, tick 2 runs with no wait
    fake = FakeTime()
    infos, tick = recorder(fake, lambda info: 2 * P if info.count == 0 else 0.0)
    stats = make_loop(fake).run(tick, max_ticks=2)
    assert [(i.index, i.skipped, i.lateness_s) for i in infos] == [(0, 0, 0.0), (2, 1, 0.0)]
    assert stats.overruns == 1


def test_late_wake_past_the_next_deadline_counts_as_overrun():
    # oversleep 1.5P on the first sleep: tick 1 starts at T0 + 2.5P - B, past grid point 2
    fake = FakeTime(oversleep_s=[1.5 * P])
    infos, tick = recorder(fake)
    stats = make_loop(fake).run(tick, max_ticks=3)
    assert infos[1].lateness_s == 1.5 * P - B
    assert (infos[2].index, infos[2].skipped, infos[2].lateness_s) == (3, 1, 0.0)
    assert stats.overruns == 1


def test_stop_on_max_ticks_duration_and_false():
    fake = FakeTime()
    infos, tick = recorder(fake)
    assert make_loop(fake).run(tick, max_ticks=0).ticks == 0
    # duration 4P: deadlines T0 .. T0 + 3P run, T0 + 4P is not before the end
    assert make_loop(FakeTime()).run(lambda info: True, duration_s=4 * P).ticks == 4
    assert make_loop(FakeTime()).run(lambda info: True, duration_s=4 * P + R).ticks == 5
    fake = FakeTime()
    stats = make_loop(fake).run(lambda info: info.count < 2, max_ticks=10)
    assert stats.ticks == 3  # the tick that said stop still ran and was recorded
    # max_ticks counts ticks run, not grid points
    fake = FakeTime()
    infos, tick = recorder(fake, lambda info: 2.5 * P if info.count == 0 else 0.0)
    assert make_loop(fake).run(tick, max_ticks=2).ticks == 2
    assert infos[-1].index == 3


def test_duration_counts_grid_time_not_ticks_run():
    # tick 0 works 2.5P: grid points 1 and 2 are skipped; duration 4P leaves only tick 3
    fake = FakeTime()
    infos, tick = recorder(fake, lambda info: 2.5 * P if info.count == 0 else 0.0)
    stats = make_loop(fake).run(tick, duration_s=4 * P)
    assert [i.index for i in infos] == [0, 3]
    assert (stats.ticks, stats.skipped, stats.overruns) == (2, 2, 1)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"period_s": 0.0}, "period_s"),
        ({"period_s": -0.01}, "period_s"),
        ({"period_s": float("nan")}, "period_s"),
        ({"period_s": float("inf")}, "period_s"),
        ({"period_s": 0.01, "busy_wait_s": -1e-4}, "busy_wait_s"),
    ],
)
def test_constructor_rejects_bad_values(kwargs, field):
    with pytest.raises(ValueError, match=field):
        FixedRateLoop(**kwargs)


def test_run_rejects_bad_limits():
    fake = FakeTime()
    with pytest.raises(ValueError, match="max_ticks"):
        make_loop(fake).run(lambda info: True, max_ticks=-1)
    with pytest.raises(ValueError, match="duration_s"):
        make_loop(fake).run(lambda info: True, duration_s=0.0)


def test_summary_percentiles_hand_computed():
    stats = LoopStats(period_s=P)
    for i, lateness in enumerate([0.001, 0.002, 0.003, 0.004, 0.005]):
        info = TickInfo(i, i, i * P, i * P + lateness, lateness, skipped=i % 2)
        stats.record(info, work_s=2 * lateness)
    stats.overruns = 1
    s = stats.summary()
    assert (s["ticks"], s["overruns"], s["skipped"], s["period_s"]) == (5, 1, 2, P)
    # numpy's linear percentile: p99 sits at position 0.99 * 4 = 3.96 of the sorted samples
    assert s["lateness_p50_s"] == pytest.approx(0.003, abs=1e-15)
    assert s["lateness_p99_s"] == pytest.approx(0.004 + 0.96 * 0.001, abs=1e-15)
    assert s["lateness_max_s"] == 0.005
    assert s["work_p50_s"] == pytest.approx(0.006, abs=1e-15)
    assert s["work_max_s"] == 0.010


def test_summary_of_no_ticks_is_nan():
    s = LoopStats(period_s=P).summary()
    assert s["ticks"] == 0
    assert np.isnan(s["lateness_p50_s"]) and np.isnan(s["work_max_s"])


def test_timing_dict_has_the_logger_keys():
    info = TickInfo(7, 5, 1.25, 1.2501, 0.0001, skipped=2)
    d = timing_dict(info, work_s=0.003)
    assert tuple(d) == TIMING_KEYS
    assert d == {"deadline_s": 1.25, "lateness_s": 0.0001, "work_s": 0.003, "skipped": 2}


def test_real_clock_short_run_has_monotone_deadlines():
    infos: list[TickInfo] = []
    stats = FixedRateLoop(1 / 200).run(lambda info: infos.append(info) is None, max_ticks=50)
    assert stats.ticks == len(infos) == 50
    assert np.all(np.diff([i.deadline_s for i in infos]) > 0)
    assert np.all(np.diff([i.index for i in infos]) >= 1)
    assert list(stats.deadline_s) == [i.deadline_s for i in infos]
    assert all(i.start_s >= i.deadline_s for i in infos)  # the spin never hands over early


# ---- real-time set-up --------------------------------------------------------------------

_CHILD = (
    "import json, os; from gaitforge.control.loop import setup_realtime; "
    "r = setup_realtime(priority=1, cpus={min(os.sched_getaffinity(0))}); "
    "print(json.dumps([[s.name, s.status, s.message] for s in r.steps])); print(r)"
)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux scheduling calls")
def test_setup_realtime_on_this_machine_reports_every_step():
    # In a child process: whatever succeeds (FIFO, locked memory) must not leak into pytest.
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=60, check=True
    ).stdout.splitlines()
    steps = json.loads(out[0])
    assert [name for name, _, _ in steps] == ["affinity", "mlockall", "timer_slack", "sched_fifo"]
    for name, status, message in steps:
        assert status in ("ok", "failed"), (name, status, message)
        assert message
    assert len(out) == 1 + 4  # the printed report: one line per step


def test_setup_realtime_explains_refusals(monkeypatch):
    def refuse(*args):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    class Libc:  # mlockall refused for the memlock limit, prctl refused
        def mlockall(self, flags):
            ctypes.set_errno(errno.ENOMEM)
            return -1

        def prctl(self, *args):
            ctypes.set_errno(errno.EINVAL)
            return -1

    monkeypatch.setattr(os, "sched_setscheduler", refuse, raising=False)
    monkeypatch.setattr(os, "sched_setaffinity", refuse, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(loop_mod, "_libc", Libc)
    monkeypatch.setattr(loop_mod.platform, "system", lambda: "Linux")
    report = setup_realtime(cpus={1})
    assert isinstance(report, RealtimeReport)
    assert report.succeeded() == []
    by_name = {s.name: s for s in report.steps}
    assert "CAP_SYS_NICE" in by_name["sched_fifo"].message
    assert "rtprio" in by_name["sched_fifo"].message
    assert "EPERM" in by_name["sched_fifo"].message
    assert "EPERM" in by_name["affinity"].message
    assert "ENOMEM" in by_name["mlockall"].message
    assert "memlock" in by_name["mlockall"].message
    assert "EINVAL" in by_name["timer_slack"].message
    assert len(report.lines()) == 4 and all("failed" in line for line in report.lines())


def test_setup_realtime_without_os_support(monkeypatch):
    monkeypatch.delattr(os, "sched_setscheduler", raising=False)
    monkeypatch.delattr(os, "sched_setaffinity", raising=False)
    monkeypatch.setattr(loop_mod, "_libc", lambda: None)
    report = setup_realtime(cpus={0}, lock_memory=False)
    assert [(s.name, s.status) for s in report.steps] == [
        ("affinity", "failed"),
        ("mlockall", "skipped"),
        ("timer_slack", "failed"),
        ("sched_fifo", "failed"),
    ]
    assert "not available" in message_of(report, "sched_fifo")


def message_of(report: RealtimeReport, name: str) -> str:
    return next(s.message for s in report.steps if s.name == name)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"priority": 0}, "priority"),
        ({"priority": 100}, "priority"),
        ({"cpus": set()}, "cpus"),
        ({"timer_slack_ns": 0}, "timer_slack_ns"),
    ],
)
def test_setup_realtime_rejects_bad_arguments(kwargs, field):
    with pytest.raises(ValueError, match=field):
        setup_realtime(**kwargs)
