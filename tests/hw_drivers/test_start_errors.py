"""A robot that cannot be started says why in one sentence: a port that does not open (which
port, what to check), a servo that does not answer (its id, the port; power, id, baud), a servo
in Alert (its Hardware Error Status, bit by bit), a board that does not answer. The error keeps
its type (the deploy loop and the tests rely on it); the sentence is its note, which the CLI
prints."""

from __future__ import annotations

import errno
import os

import pytest
import serial

from gaitforge.hw_drivers.backends import hardware_error_names
from gaitforge.hw_drivers.board import BoardTimeout
from gaitforge.hw_drivers.dynamixel import HardwareError
from gaitforge.hw_drivers.dynamixel_bus import DxlStatusError, DxlTimeout
from gaitforge.hw_drivers.transport import SerialTransport, TransportError
from gaitforge.hw_drivers.virtual import parse_faults


def open_error(port) -> str:
    with pytest.raises(TransportError) as err:
        SerialTransport(port, 1_000_000)
    return str(err.value)


def test_a_port_that_does_not_open_is_named_with_what_to_check(tmp_path, monkeypatch):
    missing = tmp_path / "ttyUSB7"
    assert open_error(str(missing)) == (
        f"cannot open serial port '{missing}': no such device: is it plugged in and powered, "
        "and is the path right? (ls /dev/serial/by-id/)")
    assert open_error(str(tmp_path)).endswith(": is a folder, not a serial device")
    plain = tmp_path / "notes.txt"
    plain.write_text("not a tty")
    assert open_error(str(plain)).endswith(": not a serial device (it takes no serial "
                                           "settings): check the path")
    master, slave = os.openpty()
    try:
        held = SerialTransport(os.ttyname(slave), 1_000_000)
        assert "busy: another program has it open and locked" in open_error(os.ttyname(slave))
        held.close()
    finally:
        os.close(master)
        os.close(slave)
    assert open_error(None) == "cannot open serial port None: no port given"
    assert "not a device path or a pyserial URL" in open_error("bogus://x")

    def denied(port, **kwargs):  # the tests run as root: no real port refuses them
        raise serial.SerialException(errno.EACCES, f"could not open port {port}: denied")

    monkeypatch.setattr(serial, "serial_for_url", denied)
    assert open_error("/dev/ttyUSB0") == (
        "cannot open serial port '/dev/ttyUSB0': permission denied: add your user to the group "
        "that owns the device (often dialout), or check its mode")


def test_hardware_error_bits_are_named():
    assert hardware_error_names(HardwareError.OVERHEATING | HardwareError.OVERLOAD) == \
        "overheating, overload"
    assert hardware_error_names(0x01) == "input voltage"
    assert hardware_error_names(0x42) == "unknown bits 0x42"
    assert hardware_error_names(0) == "none"


def test_a_servo_silent_at_start_is_named_with_power_id_and_baud(rig):
    r = rig("silent:4")
    with pytest.raises(DxlTimeout) as err:
        r.body.configure()
    (note,) = err.value.__notes__
    assert note == (
        f"the robot did not start: no reply from servo 4 on {r.robot.paths['port']} (PING, 4 "
        "attempts): check the power and the cable, that its id is 4, and that the bus runs at "
        "1000000 baud (the hardware YAML's ids and baud)")
    assert not r.body.configured


def test_a_servo_in_alert_at_start_names_its_hardware_error_status(rig):
    r = rig()
    r.robot.chain.alert(5, HardwareError.OVERHEATING | HardwareError.OVERLOAD)
    with pytest.raises(DxlStatusError) as err:
        r.body.configure()
    assert err.value.dxl_id == 5 and err.value.alert
    (note,) = err.value.__notes__
    assert note == (
        f"the robot did not start: servo 5 on {r.robot.paths['port']} is in Alert: Hardware "
        "Error Status 0x24 (overheating, overload); remove the cause (supply voltage, heat, "
        "load), then power-cycle the servo to clear it")


def test_a_servo_that_goes_silent_before_activate_is_named_too(rig):
    r = rig()
    r.body.configure()
    r.robot.chain.silent_ids.add(7)
    with pytest.raises(DxlTimeout) as err:
        r.body.activate()
    assert "no reply from servo 7 on" in err.value.__notes__[0]
    assert "(SYNC_READ, 4 attempts)" in err.value.__notes__[0] and not r.body.active


@pytest.mark.parametrize("protocol", ["board", "dynamixel"])
def test_a_board_that_does_not_answer_at_start_is_named(rig, protocol):
    """The board protocol's board, or the IMU board beside a Dynamixel bus (its own port)."""
    r = rig(protocol=protocol)
    board_server = r.robot.servers[-1]
    board_server.faults = parse_faults("drop:1.0")
    with pytest.raises(BoardTimeout) as err:
        r.body.configure()
    which = "the board" if protocol == "board" else "the IMU board"
    port = board_server.port.path
    assert err.value.__notes__ == [
        f"the robot did not start: {which} on {port} did not answer (no CONFIG_ACK for seq 1 "
        "within 0.1 s): check its power and cable, the port, and that it runs at 1000000 baud"]
