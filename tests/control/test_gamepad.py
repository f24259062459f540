"""The gamepad as a command source, through evdev's own event objects (InputEvent, AbsInfo) on
a fake device, and through a kernel virtual device where /dev/uinput exists; the sticks' dead
zone and inversion worked out by hand; a lost pad reported and reopened on a fake clock."""

from __future__ import annotations

import errno
import os
import time

import numpy as np
import pytest

from gaitforge.robots.configio import ConfigError

# The gamepad -----------------------------------------------------------------------------------
evdev = pytest.importorskip("evdev", reason="the gamepad needs evdev (the `console` extra)")
E = evdev.ecodes


class FakePad:
    """An InputDevice's surface: absinfo, read() of queued evdev.InputEvent objects (raising
    BlockingIOError when none, as evdev does), and reads that fail once it is unplugged."""

    path = "/dev/input/event-fake"

    def __init__(self, lo=-32768, hi=32767, at=0):
        self.lo, self.hi, self.at = lo, hi, at
        self.queue: list = []
        self.gone = False

    def absinfo(self, code):
        return evdev.AbsInfo(value=self.at, min=self.lo, max=self.hi, fuzz=0, flat=0,
                             resolution=0)

    def send(self, ev_type, code, value):
        self.queue.append(evdev.InputEvent(0, 0, ev_type, code, value))

    def read(self):
        if self.gone:
            raise OSError(errno.ENODEV, "No such device")
        if not self.queue:
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        events, self.queue = self.queue, []
        return iter(events)

    def close(self):
        pass


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _pad(*pads, clock=None):
    from gaitforge.control.gamepad import GamepadTeleop

    opened = []

    def open_device(path, mapping):
        if not pads[len(opened):]:
            raise OSError(errno.ENOENT, "No such file or directory")
        opened.append(pads[len(opened)])
        return opened[-1]

    return GamepadTeleop(None, clock=clock or Clock(), open_device=open_device), opened


def test_sticks_dead_zone_and_inversion_by_hand():
    """xpad range -32768..32767, dead zone 0.1, limits 0.3 m/s, 0.15 m/s, 0.5 rad/s.
    ABS_Y -32768 (stick fully up): u = -1, beyond the zone (1 - 0.1) / 0.9 = 1, inverted +1:
    vx = +0.3. ABS_RX -16384: u = 2 x 16384 / 65535 - 1 = -0.49999237; (0.49999237 - 0.1) / 0.9
    = 0.44443597, inverted +: yaw = 0.5 x 0.44443597 = 0.22221798. ABS_X 3000: u = 2 x 35768 /
    65535 - 1 = 0.09156939, inside the zone: vy = 0."""
    from gaitforge.control.gamepad import scaled

    pad = FakePad()
    src, _ = _pad(pad)
    np.testing.assert_array_equal(src.poll(0.0).command, [0, 0, 0])  # centred: 2/65535 in zone
    pad.send(E.EV_ABS, E.ABS_Y, -32768)
    pad.send(E.EV_ABS, E.ABS_RX, -16384)
    pad.send(E.EV_ABS, E.ABS_X, 3000)
    pad.send(E.EV_SYN, 0, 0)
    given = src.poll(0.02)
    u = 2 * 16384 / 65535 - 1
    np.testing.assert_allclose(given.command, [0.3, 0.0, 0.5 * (abs(u) - 0.1) / 0.9], atol=1e-12)
    assert given.command[2] == pytest.approx(0.22221798, abs=1e-8)
    assert scaled(128, 0, 255, 0.1) == 0.0  # a DualShock's centre (u = 1/255)
    assert scaled(255, 0, 255, 0.1) == 1.0 and scaled(0, 0, 255, 0.1) == -1.0


def test_buttons_act_on_press_only():
    pad = FakePad()
    src, _ = _pad(pad)
    for value in (1, 2, 0):  # press, auto-repeat, release
        pad.send(E.EV_KEY, E.BTN_EAST, value)
    pad.send(E.EV_KEY, E.BTN_START, 1)
    pad.send(E.EV_KEY, E.BTN_SOUTH, 1)  # not mapped
    pad.send(E.EV_KEY, E.BTN_SELECT, 1)
    assert src.poll(0.0).requests == ("damp", "rearm", "stop")
    assert src.poll(0.02).requests == ()


def test_a_lost_gamepad_is_reported_and_reopened_every_reconnect_s():
    clock = Clock()
    first, second = FakePad(), FakePad(at=-32768)  # the second comes back stick fully up
    src, opened = _pad(first, second, clock=clock)
    first.send(E.EV_ABS, E.ABS_Y, -32768)
    assert src.poll(0.0).command[0] == pytest.approx(0.3)
    first.gone = True
    given = src.poll(0.02)
    assert given.lost == f"gamepad {FakePad.path}: No such device"
    np.testing.assert_array_equal(given.command, [0, 0, 0])  # no stick: no command
    clock.now += 0.49  # reconnect_s 0.5: not yet
    assert src.poll(0.04).lost and len(opened) == 1
    clock.now += 0.01
    given = src.poll(0.06)
    assert given.lost == "" and len(opened) == 2
    assert given.command[0] == pytest.approx(0.3)  # the sticks start where they are


def test_a_mapping_with_a_missing_button_is_refused(tmp_path):
    from gaitforge.control.gamepad import load_gamepad_map

    path = tmp_path / "pad.yaml"
    path.write_text("axes: {vx: {code: ABS_Y}, vy: {code: ABS_X}, yaw: {code: ABS_RX}}\n"
                    "buttons: {damp: BTN_EAST, rearm: BTN_START}\n")
    with pytest.raises(ConfigError, match="buttons: expected damp, rearm, stop"):
        load_gamepad_map(path)
    assert load_gamepad_map().dead_zone == 0.1  # the shipped default loads


def test_gamepad_through_a_kernel_virtual_device():
    """The whole input layer: a uinput device the kernel publishes under /dev/input, read by
    GamepadTeleop through evdev; then unplugged."""
    if not os.path.exists("/dev/uinput") or not os.access("/dev/uinput", os.W_OK):
        pytest.skip("no writable /dev/uinput on this machine (a container without the uinput "
                    "module): the gamepad is tested through evdev's own InputEvent objects "
                    "above")
    from gaitforge.control.gamepad import GamepadTeleop

    info = evdev.AbsInfo(value=0, min=-32768, max=32767, fuzz=0, flat=0, resolution=0)
    caps = {E.EV_ABS: [(E.ABS_X, info), (E.ABS_Y, info), (E.ABS_RX, info)],
            E.EV_KEY: [E.BTN_EAST, E.BTN_START, E.BTN_SELECT]}
    ui = evdev.UInput(caps, name="gaitforge-test-pad")
    try:
        time.sleep(0.2)  # udev publishes the node
        src = GamepadTeleop(ui.device.path)
        ui.write(E.EV_ABS, E.ABS_Y, -32768)
        ui.write(E.EV_KEY, E.BTN_EAST, 1)
        ui.syn()
        time.sleep(0.05)
        given = src.poll(0.0)
        assert given.command[0] == pytest.approx(0.3) and given.requests == ("damp",)
    finally:
        ui.close()
    time.sleep(0.1)
    assert src.poll(0.02).lost


def test_an_unknown_input_code_is_refused():
    from gaitforge.control.gamepad import AxisMap, GamepadMap, GamepadTeleop

    mapping = GamepadMap(axes={"vx": AxisMap("ABS_Y"), "vy": AxisMap("ABS_X"),
                               "yaw": AxisMap("ABS_TWIST_KNOB")},
                         buttons={"damp": "BTN_EAST", "rearm": "BTN_START", "stop": "BTN_NOPE"})
    with pytest.raises(ConfigError, match="unknown input code.*ABS_TWIST_KNOB, BTN_NOPE"):
        GamepadTeleop(None, mapping, open_device=lambda path, m: FakePad())
