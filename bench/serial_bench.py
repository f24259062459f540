"""Serial figures of issue 5: loop rate, tick work and lost ticks over the virtual Dynamixel bus.

    python bench/serial_bench.py               # ~2.5 min: 15 s per clean rate, <= 60 s a fault row
    python bench/serial_bench.py --quick       # < 30 s, same tables, fewer ticks
    python bench/serial_bench.py --profile     # also cProfile the host side of the 1 Mbps run

One tick is what the deploy loop does to the joints of a pure Dynamixel bus, without the IMU:
`DynamixelJoints.read()` (one sync read of present current + velocity + position for the 12
servos of servo_dog, then their 12 status packets) and `DynamixelJoints.goal()` (one sync
write of goal positions), through `DynamixelBus` over a `SerialTransport` on a real
pseudo-terminal. Ticks run back to back. The device side is a `VirtualServoChain` served by
`VirtualDeviceServer` (wire time emulated from the baud rate) in a separate process started with
multiprocessing (spawn), so host and device do not share one GIL. The chain has no physics
body behind it: present values are fixed (and checked during warm-up), return delay is 0.

Figures (also written to bench/out/serial_bench.json):
1. rate   ticks/s achieved against the wire-time bound, baud / (bytes of one tick x 10 bits).
          The bytes are counted on packets built by the real codec; the host's byte counters
          (B in / B out per tick) cross-check them. Goal: >= 80 % of the bound at 1 Mbps.
          "host cpu" / "dev cpu": CPU time (user + sys) per tick of each process.
2. work   duration of one tick (read + goal), p50 / p99 / max in microseconds; back to back,
          so ticks/s ~ 1 / mean(work).
3. faults `corrupt:P` flips one bit of a status packet with probability P per reply (the
          device never corrupts what the host sends). Row "1 % of replies" is `--fault
          corrupt:0.01` as the virtual device defines it; row "1 % of bytes" uses
          P = 1 - 0.99**21 (21-byte status). A tick is lost when its sync read still misses a
          servo after the bus's retries (DxlTimeout). Per 10,000 ticks: lost ticks, retries
          (re-sent sync reads), CRC errors seen by the host decoder, and attempts that ended
          in the reply timeout (a damaged header or length hides which servo answered, so the
          bus waits out `--timeout-ms`). Each fault row runs 10,000 ticks or 60 s, if sooner.
Numbers describe this machine and its load at the time (it may be shared), not the code alone.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import multiprocessing as mp
import os
import platform
import pstats
import threading
import time
from pathlib import Path

import numpy as np

from gaitforge.hw_drivers import dynamixel as dxl
from gaitforge.hw_drivers.backends import (
    PRESENT_BYTES,
    PRESENT_START,
    REPLY_RETRIES,
    REPLY_TIMEOUT_S,
    DynamixelJoints,
)
from gaitforge.hw_drivers.dynamixel import ControlTable as CT
from gaitforge.hw_drivers.dynamixel_bus import DxlTimeout, DynamixelBus
from gaitforge.hw_drivers.hwconfig import load_hw_config
from gaitforge.hw_drivers.transport import SerialTransport
from gaitforge.hw_drivers.virtual import BITS_PER_BYTE, PtyPort, VirtualDeviceServer, parse_faults
from gaitforge.hw_drivers.virtual_dynamixel import VirtualServoChain
from gaitforge.robots.spec import load_robot_spec

OUT = Path(__file__).resolve().parent / "out" / "serial_bench.json"
ROBOT, HW = "servo_dog", "servo_dog_dynamixel"
WARMUP = 20  # ticks before timing starts


def present_values(k: int) -> tuple[int, int, int]:
    """(position ticks, velocity units, current units) the k-th servo reports."""
    return 2048 + 37 * (k - 6), 5 * (k - 6), 11 * (k - 6)


def status_params(k: int) -> bytes:
    pos, vel, cur = present_values(k)
    return b"".join(dxl.encode_value(item, v) for item, v in
                    ((CT.PRESENT_CURRENT, cur), (CT.PRESENT_VELOCITY, vel),
                     (CT.PRESENT_POSITION, pos)))


def tick_bytes(ids, goal_ticks) -> dict[str, int]:
    """Bytes on the wire for one tick, from the packets the codec builds."""
    read = dxl.sync_read(PRESENT_START, PRESENT_BYTES, ids)
    replies = [dxl.status(i, 0, status_params(k)) for k, i in enumerate(ids)]
    goals = {i: dxl.encode_value(CT.GOAL_POSITION, int(t))
             for i, t in zip(ids, goal_ticks, strict=True)}
    write = dxl.sync_write(CT.GOAL_POSITION, CT.GOAL_POSITION.size, goals)
    out = {"sync_read": len(read), "status_each": len(replies[0]),
           "status_all": sum(map(len, replies)), "sync_write": len(write)}
    out["total"] = out["sync_read"] + out["status_all"] + out["sync_write"]
    return out


# Device process -----------------------------------------------------------------------------
def serve_device(conn, ids, baud: int, fault: str | None, seed: int) -> None:
    """Serve a chain of servos on a new pty until the parent says stop; send back counters."""
    chain = VirtualServoChain(ids)
    for k, i in enumerate(ids):
        pos, vel, cur = present_values(k)
        servo = chain.table(i)
        servo.set(CT.PRESENT_POSITION, pos)
        servo.set(CT.PRESENT_VELOCITY, vel)
        servo.set(CT.PRESENT_CURRENT, cur)
    port = PtyPort()
    server = VirtualDeviceServer(chain, port, baud=baud, faults=parse_faults(fault), seed=seed)
    stop = threading.Event()
    conn.send(port.path)
    threading.Thread(target=lambda: (conn.recv(), stop.set()), daemon=True).start()
    cpu0 = time.process_time()
    try:
        server.serve(stop)
    finally:
        conn.send({"faults_injected": server.counts, "bytes_received": len(server.received),
                   "instructions": chain.instructions_received,
                   "device_crc_errors": chain.crc_errors, "cpu_s": time.process_time() - cpu0})
        port.close()


# Host side ----------------------------------------------------------------------------------
def counters(bus: DynamixelBus) -> tuple[int, ...]:
    t = bus.transport.counters
    return bus.retries_used, bus.crc_errors, bus.timeouts, t.bytes_in, t.bytes_out


def run_case(label: str, cal, *, baud: int, fault: str | None, seconds: float,
             max_ticks: int | None, timeout_s: float, wire: dict, profile: bool) -> dict:
    ids = list(cal.ids)
    ctx = mp.get_context("spawn")
    conn, child = ctx.Pipe()
    proc = ctx.Process(target=serve_device, args=(child, ids, baud, fault, 1), daemon=True)
    proc.start()
    if not conn.poll(60):
        raise RuntimeError("the virtual device process did not report its pty")
    transport = SerialTransport(conn.recv(), baud, timeout_s=timeout_s)
    bus = DynamixelBus(transport, timeout_s=timeout_s, retries=REPLY_RETRIES)
    joints = DynamixelJoints(bus, cal, watchdog_ms=100)
    phase = np.linspace(0, 2 * np.pi, 100, endpoint=False)[:, None]
    goals = cal.spec.default_pose_rad + 0.05 * np.sin(phase + np.arange(len(ids)))
    expect_q = cal.ticks_to_rad([present_values(k)[0] for k in range(len(ids))])
    for _ in range(WARMUP):  # warm-up, and check the data is what the device serves
        try:
            q, _, _ = joints.read()
        except DxlTimeout:
            continue
        if not np.allclose(q, expect_q):
            raise RuntimeError(f"{label}: read {q}, the device serves {expect_q}")
        joints.goal(goals[0])
    c0 = counters(bus)
    work, lost, n = [], 0, 0
    prof = cProfile.Profile() if profile else None
    if prof:
        prof.enable()
    start, cpu0 = time.perf_counter(), time.process_time()
    end = start + seconds
    while True:
        t0 = time.perf_counter()
        if t0 >= end or (max_ticks is not None and n >= max_ticks):
            break
        try:
            joints.read()
        except DxlTimeout:
            lost += 1
        joints.goal(goals[n % len(goals)])
        work.append(time.perf_counter() - t0)
        n += 1
    elapsed, cpu_s = time.perf_counter() - start, time.process_time() - cpu0
    if prof:
        prof.disable()
    c1 = counters(bus)
    conn.send("stop")
    device = conn.recv() if conn.poll(10) else {}
    proc.join(5)
    if proc.is_alive():
        proc.terminate()
    transport.close()
    retries, crc, timeouts, b_in, b_out = (b - a for a, b in zip(c0, c1, strict=True))
    w = np.array(work) * 1e6
    bound_hz = baud / (wire["total"] * BITS_PER_BYTE)
    per10k = 1e4 / max(n, 1)
    return {
        "case": label, "baud": baud, "fault": fault, "ticks": n, "seconds": elapsed,
        "ticks_per_s": n / elapsed, "bound_hz": bound_hz, "of_bound": n / elapsed / bound_hz,
        "work_p50_us": float(np.percentile(w, 50)), "work_p99_us": float(np.percentile(w, 99)),
        "work_max_us": float(w.max()), "lost": lost, "lost_per_10k": lost * per10k,
        "retries_per_10k": retries * per10k, "crc_errors_per_10k": crc * per10k,
        "timeouts_per_10k": timeouts * per10k, "bus_retries": bus.retries,
        "host_cpu_per_tick_us": cpu_s / max(n, 1) * 1e6, "host_bytes_in_per_tick": b_in / max(n, 1),
        "host_bytes_out_per_tick": b_out / max(n, 1), "device": device,
        "device_cpu_per_tick_us": device.get("cpu_s", float("nan")) / (n + WARMUP) * 1e6,
        "profile": profile_text(prof) if prof else None,
    }


def profile_text(prof: cProfile.Profile, top: int = 18) -> str:
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="< 30 s: 2.5 s a rate, 1,000 fault ticks")
    ap.add_argument("--seconds", type=float, help="length of each clean run (default 15)")
    ap.add_argument("--fault-ticks", type=int, help="ticks per fault run (default 10,000)")
    ap.add_argument("--fault-cap-s", type=float, help="time cap of a fault run (default 60)")
    ap.add_argument("--fault-baud", type=int, default=1_000_000, help="baud of the fault runs")
    ap.add_argument("--timeout-ms", type=float, default=REPLY_TIMEOUT_S * 1e3,
                    help="bus reply timeout (default: HardwareBody's)")
    ap.add_argument("--profile", action="store_true", help="cProfile the host, 1 Mbps run")
    args = ap.parse_args()
    seconds = args.seconds or (2.5 if args.quick else 15.0)
    fault_ticks = args.fault_ticks or (1000 if args.quick else 10_000)
    fault_cap_s = args.fault_cap_s or (6.0 if args.quick else 60.0)

    spec = load_robot_spec(ROBOT)
    cal = load_hw_config(HW, spec=spec).calibration(spec)
    wire = tick_bytes(cal.ids, cal.rad_to_ticks(spec.default_pose_rad))
    p_reply = 1 - 0.99 ** wire["status_each"]  # a reply with at least one bad byte, 1 % a byte
    cases = [("clean", 1_000_000, None), ("clean", 4_000_000, None),
             ("1 % of replies", args.fault_baud, "corrupt:0.01"),
             ("1 % of bytes", args.fault_baud, f"corrupt:{p_reply:.4f}")]
    print(f"{ROBOT}, {len(cal.ids)} servos; one tick on the wire: sync read "
          f"{wire['sync_read']} B + {len(cal.ids)} status x {wire['status_each']} B = "
          f"{wire['status_all']} B + sync write {wire['sync_write']} B = {wire['total']} B "
          f"= {wire['total'] * BITS_PER_BYTE} bit times (8N1)")
    print(f"device: VirtualDeviceServer in a separate process (multiprocessing spawn); host: "
          f"nice {os.nice(0)}, {os.cpu_count()} CPUs, load "
          f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    rows = []
    for label, baud, fault in cases:
        clean = fault is None
        r = run_case(label, cal, baud=baud, fault=fault,
                     seconds=seconds if clean else fault_cap_s,
                     max_ticks=None if clean else fault_ticks,
                     timeout_s=args.timeout_ms / 1e3, wire=wire,
                     profile=args.profile and clean and baud == 1_000_000)
        rows.append(r)
        print(f"  {label:<15} {baud / 1e6:g} Mbps: {r['ticks']} ticks in {r['seconds']:.1f} s",
              flush=True)

    print(f"\n1-2. loop rate and tick work, no faults (bound = baud / ({wire['total']} B x 10)); "
          "us per tick")
    print(f"{'baud':>9} {'ticks':>6} {'ticks/s':>8} {'bound Hz':>9} {'of bound':>9} "
          f"{'p50':>6} {'p99':>6} {'max':>6} {'wire':>6} {'host cpu':>8} {'dev cpu':>8} "
          f"{'B in':>6} {'B out':>6}")
    for r in rows[:2]:
        print(f"{r['baud']:>9} {r['ticks']:>6} {r['ticks_per_s']:>8.1f} {r['bound_hz']:>9.1f} "
              f"{r['of_bound']:>9.1%} {r['work_p50_us']:>6.0f} {r['work_p99_us']:>6.0f} "
              f"{r['work_max_us']:>6.0f} {1e6 / r['bound_hz']:>6.0f} "
              f"{r['host_cpu_per_tick_us']:>8.0f} {r['device_cpu_per_tick_us']:>8.0f} "
              f"{r['host_bytes_in_per_tick']:>6.1f} {r['host_bytes_out_per_tick']:>6.1f}")
    goal = rows[0]["of_bound"] >= 0.8
    print(f"goal >= 80 % of the bound at 1 Mbps: {'met' if goal else 'NOT met'}")

    print(f"\n3. corrupted replies at {args.fault_baud / 1e6:g} Mbps, per 10,000 ticks (bus "
          f"retries {rows[2]['bus_retries']}, reply timeout {args.timeout_ms:g} ms)")
    print(f"{'corruption':<15} {'fault':<18} {'ticks':>6} {'lost':>6} {'retries':>8} "
          f"{'CRC err':>8} {'timeouts':>8} {'ticks/s':>8} {'p99 us':>7}")
    for r in rows[2:]:
        print(f"{r['case']:<15} {r['fault']:<18} {r['ticks']:>6} {r['lost_per_10k']:>6.1f} "
              f"{r['retries_per_10k']:>8.1f} {r['crc_errors_per_10k']:>8.1f} "
              f"{r['timeouts_per_10k']:>8.1f} {r['ticks_per_s']:>8.1f} {r['work_p99_us']:>7.0f}")
    for r in rows:
        if r["profile"]:
            print(f"\nhost profile, {r['case']} at {r['baud'] / 1e6:g} Mbps (tottime):")
            print(r["profile"])

    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({
        "robot": ROBOT, "hw": HW, "servos": len(cal.ids), "tick_bytes": wire,
        "device": "VirtualDeviceServer + VirtualServoChain, separate process (spawn)",
        "machine": {"cpus": os.cpu_count(), "nice": os.nice(0), "python": platform.python_version(),
                    "load_after": os.getloadavg()},
        "quick": args.quick, "goal_80pct_at_1mbps_met": goal, "rows": rows,
    }, indent=2))
    print(f"\nwritten: {OUT}")


if __name__ == "__main__":
    main()
