"""The operator's console, measured: what each command source adds to the deploy tick, how fast
an episode log exports, and what a redraw of the live view costs.

    .venv/bin/python bench/console_bench.py            # about 20 s on 2 cores
    .venv/bin/python bench/console_bench.py --quick    # smoke check, a few seconds

1. Added tick work: `Deployment.tick` runs on a body whose servos reach their target by the
   next read, with an actor that returns zeros (the actor is not what is measured), on
   simulated time, in the policy phase. The added work is the time in `Deployment._operate`
   (the source's `poll` and what the tick does with its answer), timed by wrapping it, per
   tick; the whole tick is timed too. Sources, run round-robin in rounds so machine noise hits
   all alike: fixed (`--command`), schedule (`--commands`, 100 segments), keyboard (a real
   pty, a key written 2 ms before every 10th tick, so a tenth of the polls decode one),
   gamepad (evdev's
   own InputEvent objects from a device stand-in, a stick event on every tick: a worst case;
   through /dev/uinput instead where the kernel offers it). Budget: p99 under 5 % of the
   20 ms period, 1000 us.
2. MCAP export speed: a 3000-tick servo_dog log (60 s at 50 Hz, 47 observations, 4 feet,
   estimate and truth), `export_mcap` and `export_csv` in ticks per second (best of 3).
3. Live view: one `render` + rich layout to a string, per redraw (rich redraws 4 times a
   second in its own thread).
Figures describe this machine and its load at the time of the run.
"""

from __future__ import annotations

import argparse
import errno
import os
import pty
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PERIOD_S = 0.02
KEYS_READ = [0]


def pcts(samples_s) -> tuple[float, float]:
    a = np.asarray(samples_s) * 1e6
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


class Body:
    def __init__(self, spec):
        self.spec, self.q, self.t = spec, spec.default_pose_rad.copy(), 0.0

    def configure(self): ...

    def activate(self): ...

    def deactivate(self): ...

    def read(self):
        from gaitforge.robots.types import RobotState

        return RobotState(time_s=self.t, joint_pos_rad=self.q.copy(),
                          joint_vel_rad_s=np.zeros(12), imu_quat_wxyz=np.array([1.0, 0, 0, 0]),
                          gyro_rad_s=np.zeros(3), accel_m_s2=np.array([0, 0, 9.81]))

    def write(self, command):
        self.t += PERIOD_S


class ZeroActor:
    def check_body(self, *args): ...

    def act(self, obs):
        return np.zeros(12, np.float32)


class PadDevice:
    """An evdev InputDevice's surface: a left-stick event (and SYN) on every read."""

    path = "bench-pad"

    def __init__(self, evdev):
        self.evdev, self.k = evdev, 0

    def absinfo(self, code):
        return self.evdev.AbsInfo(0, -32768, 32767, 0, 0, 0)

    def read(self):
        e = self.evdev.ecodes
        self.k += 1
        return iter([self.evdev.InputEvent(0, 0, e.EV_ABS, e.ABS_Y, -(self.k * 97 % 32768)),
                      self.evdev.InputEvent(0, 0, e.EV_SYN, 0, 0)])

    def close(self): ...


def sources(stack):
    """name -> (source, per-tick hook)."""
    from gaitforge.control.commands import CommandSchedule, FixedCommand, Segment

    out = {"fixed": (FixedCommand((0.3, 0, 0)), None),
           "schedule": (CommandSchedule([Segment(0.5, (0.01 * k, 0, 0)) for k in range(100)]),
                        None)}
    from gaitforge.control.keyboard import KeyboardTeleop

    master, slave = pty.openpty()
    stack.append(lambda: (os.close(master), os.close(slave)))
    keys = KeyboardTeleop(slave)
    stack.append(keys.close)
    count, read = [0], keys.keys.read

    def counted() -> bytes:
        data = read()
        KEYS_READ[0] += bool(data)
        return data

    keys.keys.read = counted

    def type_a_key():  # the key arrives 2 ms before the poll, as a key between ticks would
        count[0] += 1
        if count[0] % 10 == 0:
            os.write(master, b"wsad"[count[0] // 10 % 4:][:1])
            time.sleep(0.002)

    out["keyboard"] = (keys, type_a_key)
    try:
        import evdev
    except ImportError:
        print("gamepad: skipped (evdev is not installed: pip install 'gaitforge[console]')")
        return out
    from gaitforge.control.gamepad import GamepadTeleop

    if os.access("/dev/uinput", os.W_OK):
        out["gamepad (uinput)"] = _uinput_pad(evdev, stack)
    else:
        print("gamepad: no writable /dev/uinput here; evdev InputEvent objects from a stand-in "
              "device instead")
        out["gamepad"] = (GamepadTeleop(None, open_device=lambda p, m: PadDevice(evdev)), None)
    return out


def _uinput_pad(evdev, stack):
    from gaitforge.control.gamepad import GamepadTeleop

    e = evdev.ecodes
    info = evdev.AbsInfo(0, -32768, 32767, 0, 0, 0)
    ui = evdev.UInput({e.EV_ABS: [(e.ABS_X, info), (e.ABS_Y, info), (e.ABS_RX, info)],
                       e.EV_KEY: [e.BTN_EAST, e.BTN_START, e.BTN_SELECT]}, name="bench-pad")
    stack.append(ui.close)
    time.sleep(0.2)
    pad = GamepadTeleop(ui.device.path)
    k = [0]

    def move():
        k[0] += 1
        ui.write(e.EV_ABS, e.ABS_Y, -(k[0] * 97 % 32768))
        ui.syn()

    return pad, move


def deployment(source):
    from gaitforge.control.deploy import Deployment, VirtualClock
    from gaitforge.control.policy_io import ActionMapper, ObservationBuilder
    from gaitforge.control.safety import SafetyConfig, SafetyLayer
    from gaitforge.robots.spec import load_robot_spec

    spec = load_robot_spec("servo_dog")
    clock = VirtualClock()
    safety = SafetyLayer(spec, SafetyConfig(soft_start_s=0.0), clock=clock)
    body = Body(spec)
    d = Deployment(body, ZeroActor(), ObservationBuilder(spec), ActionMapper(spec), safety,
                   control_dt_s=PERIOD_S, commands=source)
    d.policy_limit = 10**9
    safety.start(body.read())
    spent: list[float] = []
    inner = d._operate

    def timed(info, state):
        t0 = time.perf_counter()
        out = inner(info, state)
        spent.append(time.perf_counter() - t0)
        return out

    d._operate = timed
    return d, clock, spent


def bench_sources(rounds: int, per_round: int) -> dict:
    from gaitforge.control.loop import TickInfo

    stack: list = []
    try:
        runs = {name: (*deployment(src), hook, []) for name, (src, hook) in
                sources(stack).items()}
        k = 0
        for r in range(rounds):
            names = list(runs)
            for name in names[r % len(names):] + names[:r % len(names)]:
                d, clock, spent, hook, ticks = runs[name]
                for _ in range(per_round):
                    if hook:
                        hook()
                    info = TickInfo(k, k, clock.now_s, clock.now_s, 0.0, 0)
                    t0 = time.perf_counter()
                    d.tick(info)
                    ticks.append(time.perf_counter() - t0)
                    clock.sleep(PERIOD_S)
                    k += 1
        print(f"\n1. added tick work per command source ({rounds} rounds x {per_round} ticks; "
              f"budget: p99 < 5 % of {PERIOD_S * 1e3:.0f} ms = {PERIOD_S * 0.05 * 1e6:.0f} us)")
        print(f"{'source':18s} {'added p50 us':>13s} {'added p99 us':>13s} {'p99/period':>11s}"
              f" {'tick p50 us':>12s} {'tick p99 us':>12s}")
        table = {}
        for name, (_, _, spent, _, ticks) in runs.items():
            a50, a99 = pcts(spent)
            t50, t99 = pcts(ticks)
            table[name] = {"added_p50_us": a50, "added_p99_us": a99, "tick_p50_us": t50,
                           "tick_p99_us": t99}
            print(f"{name:18s} {a50:13.2f} {a99:13.2f} {a99 / (PERIOD_S * 1e6):10.3%}"
                  f" {t50:12.1f} {t99:12.1f}")
        print(f"(the keyboard source read a key on {KEYS_READ[0]} polls)")
        assert KEYS_READ[0] > 0, "no key reached the keyboard source"
        return table
    finally:
        for close in reversed(stack):
            try:
                close()
            except OSError as err:
                if err.errno != errno.EBADF:
                    raise


def make_log(folder: Path, n_ticks: int) -> Path:
    from gaitforge.control.estimator import VelocityEstimate
    from gaitforge.control.logger import EpisodeLogger
    from gaitforge.robots.types import JointCommand, PrivilegedState, RobotState

    rng = np.random.default_rng(0)
    path = folder / "bench.gflog"
    with EpisodeLogger(path, {"robot": "servo_dog", "command": [0.3, 0, 0]}, n_joints=12,
                       obs_dim=47, n_feet=4) as log:
        for k in range(n_ticks):
            s = RobotState(time_s=k * PERIOD_S, joint_pos_rad=rng.normal(size=12),
                           joint_vel_rad_s=rng.normal(size=12), imu_quat_wxyz=rng.normal(size=4),
                           gyro_rad_s=rng.normal(size=3), accel_m_s2=rng.normal(size=3),
                           joint_torque_nm=rng.normal(size=12))
            s.privileged = PrivilegedState(rng.normal(size=3), rng.normal(size=3),
                                           rng.normal(size=3), rng.random(4) > 0.5, 0.8, False,
                                           0.2, 0.0)
            log.log_tick(k, s, rng.normal(size=47), rng.uniform(-1, 1, 12),
                         JointCommand(rng.normal(size=12), kp_nm_per_rad=np.ones(12),
                                      kd_nm_s_per_rad=np.ones(12)),
                         {"deadline_s": k * PERIOD_S, "lateness_s": 1e-5, "work_s": 1e-3,
                          "skipped": 0},
                         VelocityEstimate(rng.normal(size=3), np.ones(4)), [0.3, 0.0, 0.1])
            if k % 100 == 0:
                log.log_event(k, "rate_limit", "FL_calf", k * PERIOD_S)
    return path


def bench_export(n_ticks: int) -> dict:
    from gaitforge.control import log_export
    from gaitforge.control.logger import read_log

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = make_log(Path(tmp), n_ticks)
        t0 = time.perf_counter()
        log = read_log(path)
        out["read_log"] = n_ticks / (time.perf_counter() - t0)
        jobs = {"csv": lambda: log_export.export_csv(log, Path(tmp) / "b.csv")}
        try:
            import mcap  # noqa: F401
            jobs["mcap"] = lambda: log_export.export_mcap(log, Path(tmp) / "b.mcap")
        except ImportError:
            print("mcap: skipped (pip install 'gaitforge[logs]')")
        for name, job in jobs.items():
            best = min(_timed(job) for _ in range(3))
            out[name] = n_ticks / best
        if "mcap" in jobs:
            out["mcap_bytes_per_tick"] = (Path(tmp) / "b.mcap").stat().st_size / n_ticks
    print(f"\n2. export speed, a {n_ticks}-tick servo_dog log (best of 3)")
    for name, value in out.items():
        unit = "bytes/tick" if name.endswith("per_tick") else "ticks/s"
        print(f"{name:22s} {value:12.0f} {unit}")
    return out


def _timed(job) -> float:
    t0 = time.perf_counter()
    job()
    return time.perf_counter() - t0


def bench_view(n: int) -> float | None:
    try:
        from rich.console import Console
    except ImportError:
        return None
    from gaitforge.cli.live_view import render
    from gaitforge.control.deploy import LiveStatus
    from gaitforge.control.loop import TickInfo

    status = LiveStatus()
    for k in range(600):
        status.update(TickInfo(k, k, 0.02 * k, 0.02 * k, 1e-5, 0), 1e-3, "policy",
                      np.array([0.3, 0, 0.1]), 0.02 * k, 0, "")
        if k % 50 == 0:
            status.events.append((k, "rate_limit", "FL_calf, FR_calf"))
    console = Console(file=open(os.devnull, "w"), width=110)  # noqa: SIM115
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        console.print(render(status, title="bench", period_s=0.02, keys="q: end"))
        times.append(time.perf_counter() - t0)
    p50, p99 = pcts(times)
    print(f"\n3. live view: one redraw p50 {p50 / 1e3:.2f} ms, p99 {p99 / 1e3:.2f} ms "
          f"(4 a second in rich's thread: {4 * p50 / 1e4:.2f} % of a core)")
    return p50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds, per_round, ticks, views = (4, 250, 500, 20) if args.quick else (20, 500, 3000, 200)
    bench_sources(rounds, per_round)
    bench_export(ticks)
    bench_view(views)


if __name__ == "__main__":
    main()
