"""Board protocol: CRC, COBS, the worked examples of docs/board_protocol.md byte for byte, the
stream decoder, the board watchdog on an injected clock, and BoardLink against VirtualBoard.

Watchdog numbers: CONFIG at t = 1 s with W = 100 ms, so damping from 1.1 s and torque off from
1.2 s after the last valid frame; the board counts integer µs, so 1.099999 s is still armed.
"""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gaitforge.hw_drivers.board import (
    BoardError,
    BoardLink,
    BoardTimeout,
    VirtualBoard,
    to_robot_state,
)
from gaitforge.hw_drivers.board_codec import (
    HOST_TYPES,
    MAX_JOINTS,
    Command,
    Config,
    ConfigAck,
    Error,
    ErrorCode,
    FrameDecoder,
    Heartbeat,
    ProtocolError,
    State,
    Status,
    encode,
    encode_body,
)
from gaitforge.hw_drivers.board_framing import (
    MAX_BODY_BYTES,
    MAX_COBS_BYTES,
    CobsError,
    cobs_decode,
    cobs_encode,
    crc16_ccitt,
    frame,
)
from gaitforge.robots.types import CommandMode, JointCommand, RobotState

DOC = Path(__file__).resolve().parents[2] / "docs" / "board_protocol.md"
N = 12
POSE = (0.0, 0.8, -1.5) * 4
HEARTBEAT_FRAME = "00 04 01 01 01 03 75 f6 00"
COMMAND_FRAME = """
00 04 01 02 02 04 01 03 0c 01 01 01 01 05 cd cc 4c 3f 01 03 c0 bf 01 01 01 05 cd cc 4c 3f 01 03
c0 bf 01 01 01 05 cd cc 4c 3f 01 03 c0 bf 01 01 01 05 cd cc 4c 3f 01 03 c0 bf 01 03 80 40 01 03
80 40 01 03 80 40 01 03 80 40 01 03 80 40 01 03 80 40 01 03 80 40 01 03 80 40 01 03 80 40 01 03
80 40 01 03 80 40 01 35 80 40 8f c2 75 3d 8f c2 75 3d 8f c2 75 3d 8f c2 75 3d 8f c2 75 3d 8f c2
75 3d 8f c2 75 3d 8f c2 75 3d 8f c2 75 3d 8f c2 75 3d 8f c2 75 3d 8f c2 75 3d 9b fd 00"""
EXAMPLE_COMMAND = Command(2, CommandMode.POSITION, POSE, kp_nm_per_rad=(4.0,) * N,
                          kd_nm_s_per_rad=(0.06,) * N)


def crc_bitwise(data: bytes) -> int:
    """The C routine of the spec, bit by bit."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def raw_frame(version: int, mtype: int, seq: int, payload: bytes) -> bytes:
    """A frame built by hand from the spec's layout (good CRC), bypassing the message classes."""
    data = struct.pack("<BBH", version, mtype, seq) + payload
    return frame(data + struct.pack("<H", crc_bitwise(data)))


def command_payload(n: int, positions, mode: int = 1, fields: int = 0, extra=()) -> bytes:
    floats = (*positions, *extra)
    return struct.pack("<BBBB", mode, fields, n, 0) + struct.pack(f"<{len(floats)}f", *floats)


def state_msg(seq: int = 7, n: int = N) -> State:
    return State(seq, 2**40 + 5, 3, 4, Status.CONFIGURED | Status.TORQUE_MEASURED,
                 CommandMode.POSITION, 0b101, 1, 2, (1.0, 0.0, 0.0, 0.0), (0.5, -0.25, 0.125),
                 (0.0, 0.0, 9.75), (0.5,) * n, (0.25,) * n, (-1.0,) * n)


ALL_MESSAGES = [
    Heartbeat(1), EXAMPLE_COMMAND,
    Command(3, CommandMode.DAMPING, (0.5,) * 3, torque_ff_nm=(-1.0, 2.0, 3.0)),
    Command(4, CommandMode.OFF, (0.0,)), Config(5, N, 100, 50, (0.06,) * N),
    ConfigAck(6, 5, N, 100, 50), Error(7, ErrorCode.BAD_VALUE, 2, 9, 16), state_msg(8),
]


# CRC and COBS ------------------------------------------------------------------------------------
def test_crc_check_value_and_matches_the_bitwise_routine():
    assert crc16_ccitt(b"123456789") == 0x29B1
    assert crc16_ccitt(b"") == 0xFFFF
    assert crc_bitwise(b"123456789") == 0x29B1


@given(st.binary(max_size=300))
def test_crc_equals_reference(data):
    assert crc16_ccitt(data) == crc_bitwise(data)


@pytest.mark.parametrize(("raw", "encoded"), [
    ("", "01"), ("00", "01 01"), ("00 00", "01 01 01"), ("11 22 00 33", "03 11 22 02 33"),
    ("11 22 33 44", "05 11 22 33 44"), ("11 00 00 00", "02 11 01 01 01"),
])
def test_cobs_known_vectors(raw, encoded):
    assert cobs_encode(bytes.fromhex(raw)) == bytes.fromhex(encoded)
    assert cobs_decode(bytes.fromhex(encoded)) == bytes.fromhex(raw)


def test_cobs_long_runs_use_0xff_blocks():
    run = bytes(range(1, 255))  # 254 non-zero bytes
    assert cobs_encode(run) == b"\xff" + run  # canonical: no trailing 01
    assert cobs_encode(b"\x00" + run) == b"\x01\xff" + run
    assert cobs_encode(run + b"\x00") == b"\xff" + run + b"\x01\x01"
    assert cobs_decode(b"\xff" + run + b"\x01") == run  # the non-canonical form is accepted


@given(st.binary(max_size=1200))
def test_cobs_round_trip_and_no_zero_inside(data):
    enc = cobs_encode(data)
    assert 0 not in enc
    assert len(enc) <= len(data) + max(1, math.ceil(len(data) / 254))
    assert cobs_decode(enc) == data


@pytest.mark.parametrize("bad", ["00", "03 11", "03 11 00", "02 11 05 01"])
def test_cobs_decode_rejects_malformed(bad):
    with pytest.raises(CobsError):
        cobs_decode(bytes.fromhex(bad))


# Worked examples -------------------------------------------------------------------------------
def _doc_hex(label: str) -> bytes:
    """The hex block after `label` in the spec, e.g. 'frame (157):'."""
    text = DOC.read_text()
    block = text[text.index(label) + len(label):].split("```")[0]
    lines = [ln for ln in block.splitlines() if re.fullmatch(r"\s*([0-9a-f]{2} ?)+\s*", ln)]
    return bytes.fromhex(" ".join(lines))


def test_worked_examples_byte_for_byte():
    assert encode(Heartbeat(1)) == bytes.fromhex(HEARTBEAT_FRAME)
    assert encode_body(Heartbeat(1)) == bytes.fromhex("01 01 01 00 75 f6")
    assert encode(EXAMPLE_COMMAND) == bytes.fromhex(COMMAND_FRAME)
    for wire in (encode(Heartbeat(1)), encode(EXAMPLE_COMMAND)):
        assert wire[0] == wire[-1] == 0 and 0 not in wire[1:-1]
    body = encode_body(EXAMPLE_COMMAND)
    assert len(body) == 154 and body[-2:] == bytes.fromhex("9b fd")
    assert body[:8] == bytes.fromhex("01 02 02 00 01 03 0c 00")
    assert body[12:16] == struct.pack("<f", 0.8) == bytes.fromhex("cd cc 4c 3f")
    # the spec shows the same bytes
    assert _doc_hex("frame (9):") == bytes.fromhex(HEARTBEAT_FRAME)
    assert _doc_hex("frame (157):") == bytes.fromhex(COMMAND_FRAME)
    assert _doc_hex("body (154):") == body
    assert FrameDecoder().feed(bytes.fromhex(COMMAND_FRAME)) == [
        Command(2, CommandMode.POSITION, struct.unpack("<12f", body[8:56]),
                kp_nm_per_rad=(4.0,) * N, kd_nm_s_per_rad=struct.unpack("<12f", body[104:152]))]


def test_every_message_round_trips():
    wire = b"".join(encode(m) for m in ALL_MESSAGES)
    decoder = FrameDecoder()
    assert decoder.feed(wire) == ALL_MESSAGES
    assert (decoder.frames_ok, decoder.crc_errors, decoder.bad_frames) == (8, 0, 0)
    assert [len(encode(m)) for m in (Heartbeat(0), state_msg(0), Config(0, N, 100, 0, (0,) * N))
            ] == [9, 217, 65]  # the sizes table of the spec


# Stream decoder --------------------------------------------------------------------------------
STREAM = [Heartbeat(1), EXAMPLE_COMMAND, state_msg(9)]
WIRE = b"".join(encode(m) for m in STREAM)


def test_decoder_split_at_every_offset():
    for cut in range(len(WIRE) + 1):
        decoder = FrameDecoder()
        assert decoder.feed(WIRE[:cut]) + decoder.feed(WIRE[cut:]) == STREAM, cut
    decoder = FrameDecoder()
    assert [m for b in WIRE for m in decoder.feed(bytes([b]))] == STREAM


def test_garbage_and_stray_zeros_between_frames():
    decoder = FrameDecoder()
    garbage = bytes([0x55, 0xAA, 0x13, 0x07, 0xFF])
    wire = b"\x00\x00" + garbage + encode(Heartbeat(1)) + b"\x00" * 5 + garbage + WIRE + b"\x00"
    assert decoder.feed(wire) == [Heartbeat(1), *STREAM]
    assert decoder.frames_ok == 4
    assert decoder.crc_errors + decoder.bad_frames == 2  # one per garbage run, zeros not counted
    # without its leading zero a frame glued to garbage is lost; the next one is not
    decoder = FrameDecoder()
    assert decoder.feed(garbage + encode(Heartbeat(1))[1:] + encode(Heartbeat(2))) == [Heartbeat(2)]


def test_bad_crc_and_oversize_frames_are_dropped_and_counted():
    body = bytearray(encode_body(Heartbeat(5)))
    body[2] ^= 0x04
    decoder = FrameDecoder()
    assert decoder.feed(frame(bytes(body)) + b"\x11" * (MAX_COBS_BYTES + 1) + b"\x00") == []
    assert (decoder.crc_errors, decoder.bad_frames) == (1, 1)
    assert decoder.feed(encode(Heartbeat(6))) == [Heartbeat(6)]



def test_frame_size_limits_fit_the_largest_command():
    """The framing layer's size limits are those of a MAX_JOINTS COMMAND with every field:
    body 522 bytes, COBS form 525 (docs/board_protocol.md, section 2)."""
    n = MAX_JOINTS
    largest = Command(1, CommandMode.POSITION, (0.5,) * n, (1.0,) * n, (0.1,) * n, (0.2,) * n)
    body = encode_body(largest)
    assert len(body) == MAX_BODY_BYTES == 522 and MAX_COBS_BYTES == 525
    assert len(encode(largest)) - 2 <= MAX_COBS_BYTES
    assert FrameDecoder().feed(encode(largest)) == [largest]

@pytest.mark.parametrize(("wire", "code", "detail"), [
    (raw_frame(2, 0x01, 9, b""), ErrorCode.UNSUPPORTED_VERSION, 1),
    (raw_frame(1, 0x7F, 9, b""), ErrorCode.UNKNOWN_TYPE, 0x7F),
    (raw_frame(1, 0x81, 9, b""), ErrorCode.UNKNOWN_TYPE, 0x81),  # a STATE sent to the board
    (raw_frame(1, 0x01, 9, b"\x00"), ErrorCode.BAD_LENGTH, 0),
    (raw_frame(1, 0x02, 9, b"\x01\x00"), ErrorCode.BAD_LENGTH, 4),
    (raw_frame(1, 0x02, 9, command_payload(12, POSE)[:-4]), ErrorCode.BAD_LENGTH, 52),
    (raw_frame(1, 0x02, 9, command_payload(0, ())), ErrorCode.BAD_VALUE, 2),
    (raw_frame(1, 0x02, 9, command_payload(3, (0, 0, 0), fields=0x08)), ErrorCode.BAD_VALUE, 1),
    (raw_frame(1, 0x02, 9, command_payload(3, (0, 0, 0), mode=3)), ErrorCode.BAD_VALUE, 0),
    (raw_frame(1, 0x02, 9, command_payload(3, (0, math.nan, 0))), ErrorCode.BAD_VALUE, 8),
    (raw_frame(1, 0x02, 9, command_payload(2, (0, 0), fields=0x03, extra=(1, 1, 1, -0.5))),
     ErrorCode.BAD_VALUE, 24),  # kd of joint 1 < 0
    (raw_frame(1, 0x02, 9, command_payload(2, (0, 0), fields=0x04, extra=(1, math.inf))),
     ErrorCode.BAD_VALUE, 16),
    (raw_frame(1, 0x03, 9, struct.pack("<BBHHHf", 1, 0, 5, 0, 0, 0.1)), ErrorCode.BAD_VALUE, 2),
    (raw_frame(1, 0x03, 9, struct.pack("<BBHHHf", 1, 0, 100, 1001, 0, 0.1)),
     ErrorCode.BAD_VALUE, 4),
    (raw_frame(1, 0x03, 9, struct.pack("<BBHHHf", 1, 0, 100, 0, 0, -0.1)),
     ErrorCode.BAD_VALUE, 8),
])
def test_protocol_errors_carry_the_error_fields(wire, code, detail):
    decoder = FrameDecoder(HOST_TYPES)
    [err] = decoder.feed_detailed(wire)
    assert isinstance(err, ProtocolError)
    assert (err.code, err.seq, err.detail) == (code, 9, detail)
    assert decoder.bad_frames == 1 and decoder.feed(wire) == []


def test_messages_refuse_what_may_not_reach_the_wire():
    with pytest.raises(ValueError, match="position_rad"):
        Command(1, CommandMode.POSITION, (0.0, math.nan))
    with pytest.raises(ValueError, match="kp_nm_per_rad"):
        Command(1, CommandMode.POSITION, (0.0, 0.0), kp_nm_per_rad=(1.0, -1.0))
    with pytest.raises(ValueError, match="torque_ff_nm"):
        Command(1, CommandMode.POSITION, (0.0, 0.0), torque_ff_nm=(1.0,))
    with pytest.raises(ValueError, match="watchdog_ms"):
        Config(1, 2, 5, 0, (0.1, 0.1))
    with pytest.raises(ValueError, match="seq"):
        Heartbeat(65536)


# Virtual board ---------------------------------------------------------------------------------
def config_frame(seq: int, watchdog_ms: int = 100, stream_hz: int = 0, n: int = N) -> bytes:
    return encode(Config(seq, n, watchdog_ms, stream_hz, (0.25,) * n))


def command_frame(seq: int, mode: CommandMode = CommandMode.POSITION, **optional) -> bytes:
    return encode(Command(seq, mode, POSE, **optional))


def answers(board: VirtualBoard, wire: bytes, now_s: float) -> list:
    """What the board sends back, decoded (a host decoder, so a bad reply would show)."""
    decoder = FrameDecoder()
    out = decoder.feed(b"".join(board.feed(wire, now_s)))
    assert (decoder.crc_errors, decoder.bad_frames) == (0, 0)
    return out


def modes(board: VirtualBoard, *times: float) -> list[CommandMode]:
    return [board.applied_command(t).mode for t in times]


def test_unconfigured_board_is_off_and_refuses_commands():
    board = VirtualBoard(N)
    [state] = answers(board, encode(Heartbeat(1)), 0.0)
    assert state.status == Status(0) and state.output_mode is CommandMode.OFF
    assert state.ack_seq == 1 and state.seq == 0
    err, state = answers(board, command_frame(2), 0.5)
    assert err == Error(1, ErrorCode.NOT_CONFIGURED, 0x02, 2, 0)
    assert state.seq == 2 and state.ack_seq == 2 and not state.status & Status.COMMAND_APPLIED
    assert modes(board, 10.0) == [CommandMode.OFF] and board.commands_refused == 1
    [err] = answers(board, config_frame(3, n=6), 1.0)
    assert (err.code, err.offending_seq, err.detail) == (ErrorCode.JOINT_COUNT, 3, N)
    assert not board.configured and board.rx_dropped == 1


def test_watchdog_timeline_damping_at_w_off_at_2w_latched_until_config():
    board = VirtualBoard(N)
    [ack] = answers(board, config_frame(1), 1.0)
    assert ack == ConfigAck(0, 1, N, 100, 0)
    assert modes(board, 1.0) == [CommandMode.DAMPING]  # armed, no command yet
    [state] = answers(board, command_frame(2, kp_nm_per_rad=(3.0,) * N), 1.0)
    assert state.status == Status.CONFIGURED | Status.COMMAND_APPLIED
    cmd = board.applied_command(1.099999)
    assert cmd.mode is CommandMode.POSITION and cmd.kd_nm_s_per_rad is None
    np.testing.assert_allclose(cmd.position_rad, np.float32(POSE))
    np.testing.assert_allclose(cmd.kp_nm_per_rad, 3.0)
    damping = board.applied_command(1.1)  # exactly W after the last valid frame
    assert damping.mode is CommandMode.DAMPING and board.watchdog_stage == 1
    np.testing.assert_array_equal(damping.kd_nm_s_per_rad, 0.25)
    assert modes(board, 1.199999, 1.2) == [CommandMode.DAMPING, CommandMode.OFF]
    assert board.watchdog_stage == 2 and board.watchdog_trips == 1
    # latched: a valid command is refused (and answered), heartbeats do not re-arm
    err, state = answers(board, command_frame(3), 1.3)
    assert err.code is ErrorCode.WATCHDOG_LATCHED and err.offending_seq == 3
    assert state.status & Status.WATCHDOG_OFF and state.output_mode is CommandMode.OFF
    assert state.last_command_seq == 2 and state.ack_seq == 3
    answers(board, encode(Heartbeat(4)), 1.31)
    assert modes(board, 5.0) == [CommandMode.OFF]
    # CONFIG re-arms: damping until the first command, then position again
    [ack] = answers(board, config_frame(5), 6.0)
    assert ack.config_seq == 5 and board.watchdog_stage == 0
    [state] = answers(board, encode(Heartbeat(6)), 6.05)
    assert state.status == Status.CONFIGURED and state.output_mode is CommandMode.DAMPING
    answers(board, command_frame(7), 6.1)
    assert modes(board, 6.199999, 6.2) == [CommandMode.POSITION, CommandMode.DAMPING]


def test_host_traffic_after_a_trip_holds_damping_and_late_frames_count_as_late():
    board = VirtualBoard(N)
    answers(board, config_frame(1), 0.6)
    answers(board, command_frame(2), 0.6)
    # a command arriving exactly at t_fed + W is too late (0.7 - 0.6 is not 0.1 in binary)
    err, _ = answers(board, command_frame(3), 0.7)
    assert err.code is ErrorCode.WATCHDOG_LATCHED
    answers(board, encode(Heartbeat(4)), 0.79)  # talking again: stays in damping...
    assert modes(board, 0.8, 0.989999) == [CommandMode.DAMPING] * 2
    assert modes(board, 0.99) == [CommandMode.OFF]  # ...until 2W of silence after the last


def test_invalid_frames_do_not_feed_the_watchdog():
    board = VirtualBoard(N)
    answers(board, config_frame(1), 0.0)
    answers(board, command_frame(2), 0.0)
    body = bytearray(encode_body(Heartbeat(3)))
    body[-1] ^= 1
    assert board.feed(frame(bytes(body)), 0.05) == []  # bad CRC: silent
    [err] = answers(board, raw_frame(1, 0x01, 4, b"\x00"), 0.06)  # bad length
    assert err.code is ErrorCode.BAD_LENGTH
    [err] = answers(board, encode(Command(5, CommandMode.POSITION, (0.0,) * 6)), 0.07)
    assert err.code is ErrorCode.JOINT_COUNT
    assert modes(board, 0.1) == [CommandMode.DAMPING]
    [state] = answers(board, encode(Heartbeat(6)), 0.11)
    assert (state.rx_crc_errors, state.rx_dropped) == (1, 2)


def test_damping_command_uses_its_own_kd_or_the_config_one():
    board = VirtualBoard(N)
    answers(board, config_frame(1), 0.0)
    answers(board, command_frame(2, CommandMode.DAMPING), 0.0)
    np.testing.assert_array_equal(board.applied_command(0.0).kd_nm_s_per_rad, 0.25)
    answers(board, command_frame(3, CommandMode.DAMPING, kd_nm_s_per_rad=(0.5,) * N), 0.0)
    np.testing.assert_array_equal(board.applied_command(0.0).kd_nm_s_per_rad, 0.5)
    answers(board, command_frame(4, CommandMode.OFF), 0.0)
    assert modes(board, 0.01) == [CommandMode.OFF]


def test_streaming_on_a_fixed_grid_without_bursts():
    board = VirtualBoard(N)
    answers(board, config_frame(1, stream_hz=50), 2.0)  # period 20 ms
    assert board.poll(2.019999) == []
    assert len(board.poll(2.02)) == 1 and board.poll(2.02) == []
    assert len(board.poll(2.045)) == 1  # 2.04 on the grid, sent late
    assert board.poll(2.059999) == [] and len(board.poll(2.06)) == 1
    assert len(board.poll(2.5)) == 1 and board.poll(2.519999) == []  # behind: grid restarts
    [state] = FrameDecoder().feed(board.poll(2.52)[0])
    assert state.time_us == 2_520_000 and state.ack_seq == 1


def test_state_carries_the_measurement_and_fault_flags():
    board = VirtualBoard(3)
    q, dq, tau = np.array([0.1, -0.2, 0.3]), np.array([1.0, 2.0, -3.0]), np.array([0.5, 0.0, -0.5])
    quat = np.array([0.9, 0.1, 0.0, np.sqrt(1 - 0.82)])
    board.set_measurement(RobotState(time_s=0.0, joint_pos_rad=q, joint_vel_rad_s=dq,
                                     imu_quat_wxyz=quat, gyro_rad_s=np.array([0.1, 0.2, 0.3]),
                                     accel_m_s2=np.array([0.0, 0.0, 9.81]), joint_torque_nm=tau))
    board.servo_fault_mask, board.imu_fault = 0b100, True
    [state] = answers(board, encode(Heartbeat(1)), 12.5)
    assert state.servo_fault_mask == 4
    assert state.status == Status.IMU_FAULT | Status.SERVO_FAULT | Status.TORQUE_MEASURED
    robot = to_robot_state(state)
    assert robot.time_s == 12.5
    for got, want in ((robot.joint_pos_rad, q), (robot.joint_vel_rad_s, dq),
                      (robot.joint_torque_nm, tau), (robot.imu_quat_wxyz, quat)):
        np.testing.assert_array_equal(got, want.astype(np.float32))
    board.set_measurement(RobotState(0.0, q, dq, quat, np.zeros(3), np.zeros(3)))
    [state] = answers(board, encode(Heartbeat(2)), 12.6)
    assert to_robot_state(state).joint_torque_nm is None and state.joint_torque_nm == (0.0,) * 3


def test_bad_crc_hook_corrupts_exactly_the_next_n_replies():
    board = VirtualBoard(N)
    board.bad_crc_next(2)
    decoder = FrameDecoder()
    for seq in range(1, 5):
        decoder.feed(b"".join(board.feed(encode(Heartbeat(seq)), 0.0)))
    assert (decoder.crc_errors, decoder.frames_ok) == (2, 2)


def test_power_cycle_forgets_the_configuration():
    board = VirtualBoard(N)
    answers(board, config_frame(1), 0.0)
    answers(board, command_frame(2), 0.0)
    board.power_cycle(2.0)
    [state] = answers(board, encode(Heartbeat(3)), 3.0)
    assert state.status == Status(0) and state.time_us == 1_000_000 and state.seq == 0
    assert modes(board, 3.0) == [CommandMode.OFF] and board.last_command is None


# Host link against the virtual board -----------------------------------------------------------
class FakeClock:
    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Wire:
    """In-memory transport: each write reaches the board at the clock's time, replies queue up.
    A read that finds nothing waits its whole timeout (on the fake clock), like pyserial."""

    def __init__(self, board: VirtualBoard, clock: FakeClock):
        self.board, self.clock, self.rx, self.sent = board, clock, bytearray(), []
        self.mute = False

    def write(self, data: bytes) -> None:
        self.sent.append(data)
        replies = self.board.feed(data, self.clock.now)
        if not self.mute:
            self.rx += b"".join(replies)

    def read(self, n: int, timeout_s: float | None = None) -> bytes:
        out = bytes(self.rx[:n])
        del self.rx[:n]
        if not out:
            self.clock.now += timeout_s or 0.0
        return out

    def read_available(self) -> bytes:
        out = bytes(self.rx)
        self.rx.clear()
        return out


@pytest.fixture
def rig():
    clock = FakeClock(1.0)
    board = VirtualBoard(N)
    wire = Wire(board, clock)
    return BoardLink(wire, N, clock=clock), board, wire, clock


def test_link_configures_commands_and_reads_the_answer(rig):
    link, board, wire, clock = rig
    ack = link.configure(100, 0.06, stream_hz=0)
    assert ack == ConfigAck(0, 1, N, 100, 0) and board.configured
    seq = link.send_command(JointCommand(position_rad=np.array(POSE), kp_nm_per_rad=np.full(N, 4.0),
                                         kd_nm_s_per_rad=0.06))
    state = link.read_state(0.01, ack_seq=seq)
    assert seq == 2 and state.last_command_seq == 2 and state.output_mode is CommandMode.POSITION
    assert wire.sent[-1] == bytes.fromhex(COMMAND_FRAME)  # the spec's example, as sent
    hb = link.heartbeat()
    assert link.read_state(0.01).ack_seq == hb == 3
    assert (link.frames_sent, link.states_received, link.crc_errors) == (3, 2, 0)


def test_link_reports_board_errors_and_timeouts(rig):
    link, board, wire, clock = rig
    with pytest.raises(BoardError, match="JOINT_COUNT"):
        BoardLink(wire, 6, clock=clock).configure(100, 0.1)
    link.configure(100, 0.06)
    clock.now += 0.2  # silent for 2W: the board is off
    link.send_command(JointCommand(position_rad=np.zeros(N)))
    state = link.read_state(0.01)
    assert state.status & Status.WATCHDOG_OFF
    assert link.errors[-1].code is ErrorCode.WATCHDOG_LATCHED and link.errors_received == 1
    wire.mute = True
    before = clock.now
    with pytest.raises(BoardTimeout):
        link.read_state(0.05, ack_seq=link.heartbeat())
    assert clock.now == pytest.approx(before + 0.05) and link.timeouts == 1
    with pytest.raises(BoardTimeout):
        link.configure(100, 0.06, timeout_s=0.02)


def test_link_never_sends_a_bad_command(rig):
    link, board, wire, clock = rig
    for bad in (JointCommand(position_rad=np.full(N, np.nan)),
                JointCommand(position_rad=np.zeros(N - 1)),
                JointCommand(position_rad=np.zeros(N), kd_nm_s_per_rad=np.full(N, -1.0))):
        with pytest.raises(ValueError):
            link.send_command(bad)
    assert wire.sent == [] and link.seq == 0


def test_link_reads_the_newest_state_and_wraps_seq(rig):
    link, board, wire, clock = rig
    link.seq = 0xFFFE
    first, second = link.heartbeat(), link.heartbeat()
    assert (first, second) == (0xFFFF, 0)
    assert link.read_state(0.01).ack_seq == 0  # both answers were queued: the newest wins
    assert link.states_received == 2
