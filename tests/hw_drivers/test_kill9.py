"""How a hardware deployment ends when its process is told to stop or dies. The deploy runtime
(here `gaitforge excite`, the same loop) runs in its own process against a virtual robot on
real ptys:
- SIGINT (Ctrl-C) and SIGTERM during the policy time end through the safety layer's shutdown:
  damping for its period, then torque off, every command logged, exit status 1, outcome
  "interrupted";
- SIGKILL leaves the devices' own watchdogs to take over: every virtual Dynamixel servo trips
  its bus watchdog (stops, holds, goals locked) and the board goes to damping, then torque off,
  within the watchdog period the host configured (100 ms)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from gaitforge.control.logger import read_log
from gaitforge.hw_drivers.dynamixel import ControlTable as CT
from gaitforge.hw_drivers.hwconfig import load_hw_config
from gaitforge.hw_drivers.virtual_robot import VirtualRobot
from gaitforge.robots.spec import load_robot_spec
from gaitforge.sim.config import SimConfig
from gaitforge.sim.env import make_body
from gaitforge.sim.robot_adapters import RealTimeSimBody

SPEC = load_robot_spec("servo_dog")
WATCHDOG_S = 0.100  # HardwareBody's default watchdog_ms, what `gaitforge excite --hw` arms
SLACK_S = 0.005  # the device server's loop wakes every millisecond; a few of them


def policy_running(robot: VirtualRobot, protocol: str) -> bool:
    if protocol == "dynamixel":
        return all(robot.chain.table(i).torque_enabled for i in robot.chain.ids)
    return robot.board.configured and robot.board.commands_applied > 150  # past soft start


@contextlib.contextmanager
def host_in_its_policy_time(tmp_path, protocol: str):
    """(virtual robot, host process) once the host's excitation is past its soft start."""
    config = load_hw_config(f"servo_dog_{protocol}", spec=SPEC)
    body = RealTimeSimBody(make_body(SPEC, SimConfig(engine="mujoco"), fixed_base=True))
    robot = VirtualRobot(body, SPEC, config, baud=config.baud)
    stop = threading.Event()
    server = threading.Thread(target=robot.serve, args=(stop, 120.0), daemon=True)
    server.start()
    args = [sys.executable, "-m", "gaitforge.cli", "excite", "--hw", f"servo_dog_{protocol}",
            "--port", robot.paths["port"], "--duration", "30", "--log-dir", str(tmp_path)]
    if protocol == "dynamixel":
        args += ["--imu-port", robot.paths["imu_port"]]
    host = subprocess.Popen(args, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not policy_running(robot, protocol):
            assert host.poll() is None, host.stderr.read()
            assert time.monotonic() < deadline, "the excitation never started"
            time.sleep(0.01)
        time.sleep(2.5)  # well into the policy time (2 s of soft start)
        yield robot, host
    finally:
        if host.poll() is None:
            host.kill()
        stop.set()
        server.join(timeout=10)
        robot.close()
        body.body.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_on_hardware_end_through_damping(tmp_path, sig):
    with host_in_its_policy_time(tmp_path, "dynamixel") as (robot, host):
        host.send_signal(sig)
        out, _ = host.communicate(timeout=20)
        assert host.returncode == 1
        assert out.startswith(f"interrupted: {sig.name} received")
        servos = [robot.chain.table(i) for i in robot.chain.ids]
        assert not any(s.torque_enabled for s in servos)  # off at the end
        assert all(s.get(CT.POSITION_P_GAIN) == 0 for s in servos)  # after damping
    log = read_log(next(tmp_path.glob("*.gflog")))
    modes = log.ticks["command_mode"]  # 0 position, 1 damping, 2 off
    last_position = int(np.flatnonzero(modes == 0)[-1])
    tail = modes[last_position + 1:]
    assert (tail[:-1] == 1).all() and tail[-1] == 2
    times = log.ticks["time_s"][last_position + 1:]  # damping lasts 0.5 s of time, not of
    assert times[-1] - times[0] >= 0.5 - 0.03        # ticks (a busy host runs fewer of them)
    assert log.complete and log.summary["outcome"] == "interrupted"


@pytest.mark.parametrize("protocol", ["dynamixel", "board"])
def test_after_kill_9_the_device_watchdogs_stop_the_robot(tmp_path, protocol):
    with host_in_its_policy_time(tmp_path, protocol) as (robot, host):
        os.kill(host.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        host.wait(timeout=10)
        time.sleep(2 * WATCHDOG_S + 0.1)
        if protocol == "dynamixel":
            servos = [robot.chain.table(i) for i in robot.chain.ids]
            assert all(s.get(CT.BUS_WATCHDOG) == -1 for s in servos)  # tripped: goals locked
            latest = max(s.tripped_at_s for s in servos)
            assert latest - killed_at <= WATCHDOG_S + 0.020 + SLACK_S  # + one 20 ms unit
            # (bytes already on the wire when the host died still arrive: wire-time slack)
            assert killed_at - 0.05 <= robot.imu_board.fed_at_s <= killed_at + SLACK_S
        else:
            board = robot.board
            # the board (docs/board_protocol.md) damps at fed + W and turns torque off at
            # fed + 2 W; the host fed it every tick until it died
            assert board.watchdog_stage == 2 and board.watchdog_trips == 1
            assert killed_at - 0.05 <= board.fed_at_s <= killed_at + SLACK_S
            assert board.applied_command(time.monotonic()).mode.value == "off"
