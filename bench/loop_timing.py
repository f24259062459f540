"""Period error (lateness = wake time - absolute deadline) of FixedRateLoop at 50, 200 and
500 Hz, first as an ordinary process, then after setup_realtime (SCHED_FIFO, one pinned
CPU, mlockall, 1 ns timer slack: whatever this machine allows).

    python bench/loop_timing.py                  # 3 s per row, ~20 s in all
    python bench/loop_timing.py --seconds 1 --work-us 200

The plain rows run first because the real-time set-up cannot be undone in this process.
Each tick does ``--work-us`` of busy work, a stand-in for read -> actor -> write. The
"sleep only" rows (busy_wait_s = 0) show what the final spin buys. Figures are in
microseconds; they describe this machine and its load at the time, not the code alone.
"""

from __future__ import annotations

import argparse
import os
import time

from gaitforge.control.loop import FixedRateLoop, setup_realtime

RATES_HZ = (50, 200, 500)


def busy_tick(work_s: float):
    def tick(info) -> bool:
        end = time.perf_counter() + work_s
        while time.perf_counter() < end:
            pass
        return True

    return tick


def measure(rate_hz: int, seconds: float, work_s: float, busy_wait_s: float) -> dict:
    loop = FixedRateLoop(1.0 / rate_hz, busy_wait_s=busy_wait_s)
    return loop.run(busy_tick(work_s), duration_s=seconds).summary()


def row(mode: str, rate_hz: int, busy_wait_s: float, s: dict) -> str:
    us = 1e6
    return (
        f"{mode:<23} {rate_hz:>5} {busy_wait_s * us:>7.0f} {s['ticks']:>6} "
        f"{s['lateness_p50_s'] * us:>9.1f} {s['lateness_p99_s'] * us:>9.1f} "
        f"{s['lateness_max_s'] * us:>9.1f} {s['work_p50_s'] * us:>8.1f} "
        f"{s['overruns']:>5} {s['skipped']:>5}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="length of each run")
    ap.add_argument("--work-us", type=float, default=100.0, help="busy work per tick")
    ap.add_argument("--busy-wait-us", type=float, default=500.0, help="spin before deadline")
    ap.add_argument("--priority", type=int, default=80, help="SCHED_FIFO priority")
    args = ap.parse_args()
    work_s, spin_s = args.work_us * 1e-6, args.busy_wait_us * 1e-6

    header = (
        f"{'mode':<23} {'Hz':>5} {'spin_us':>7} {'ticks':>6} {'late_p50':>9} "
        f"{'late_p99':>9} {'late_max':>9} {'work_p50':>8} {'overr':>5} {'skip':>5}"
    )
    print(
        f"cpus {sorted(os.sched_getaffinity(0))}, {args.seconds:g} s per row, "
        f"work {args.work_us:g} us per tick; lateness and work in us"
    )
    print(header)
    for rate in RATES_HZ:
        print(row("plain", rate, spin_s, measure(rate, args.seconds, work_s, spin_s)), flush=True)
    print(row("plain sleep", 500, 0.0, measure(500, args.seconds, work_s, 0.0)), flush=True)

    cpu = max(os.sched_getaffinity(0))  # the last CPU, often the one kept quiet
    report = setup_realtime(priority=args.priority, cpus={cpu})
    short = {"affinity": "cpu", "mlockall": "mlock", "timer_slack": "slack", "sched_fifo": "fifo"}
    mode = "rt:" + ("+".join(short[n] for n in report.succeeded()) or "none")
    for rate in RATES_HZ:
        print(row(mode, rate, spin_s, measure(rate, args.seconds, work_s, spin_s)), flush=True)
    print(row("rt sleep", 500, 0.0, measure(500, args.seconds, work_s, 0.0)), flush=True)
    print(f"\nreal-time set-up ({mode}):")
    print(report)


if __name__ == "__main__":
    main()
