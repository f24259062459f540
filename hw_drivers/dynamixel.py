"""Dynamixel Protocol 2.0 codec: CRC, byte stuffing, packet builders and a streaming decoder.

Pure functions and small classes, no I/O; the host bus (`dynamixel_bus`) and the virtual servo
chain (`virtual_dynamixel`) both build on this module, so the two ends of the wire share one
codec. Everything follows the ROBOTIS e-Manual (Protocol 2.0 page, X-series control table):

    FF FF FD 00 | ID | LEN_L LEN_H | INSTRUCTION | [ERROR] PARAMS... | CRC_L CRC_H

LEN counts instruction, parameters (error included for a status) and CRC *after* stuffing. The
stuffing region is instruction..last parameter: every `FF FF FD` becomes `FF FF FD FD`. The CRC
is CRC-16 with polynomial 0x8005, init 0, no reflection (CRC-16/BUYPASS, check value 0xFEE8),
computed over the stuffed frame from the first header byte up to the last parameter.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag

HEADER = b"\xff\xff\xfd\x00"
BROADCAST_ID = 0xFE
MAX_ID = 0xFC  # 253 (0xFD) and 255 (0xFF) are never IDs: they would look like a header
_STUFF_FROM = b"\xff\xff\xfd"
_STUFF_TO = b"\xff\xff\xfd\xfd"
MIN_STATUS_BYTES = 11  # header 4, id 1, length 2, instruction 1, error 1, crc 2


def _make_crc_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE = _make_crc_table()


def crc16(data: bytes) -> int:
    """CRC-16 of the e-Manual (poly 0x8005, init 0, MSB first); crc16(b"123456789") == 0xFEE8."""
    crc = 0
    table = _CRC_TABLE
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ b]
    return crc


def stuff(body: bytes) -> bytes:
    """Insert 0xFD after every `FF FF FD` (the pattern cannot overlap itself: replace is exact)."""
    return bytes(body).replace(_STUFF_FROM, _STUFF_TO)


def unstuff(body: bytes) -> bytes:
    """Inverse of `stuff`: `FF FF FD FD` -> `FF FF FD`."""
    return bytes(body).replace(_STUFF_TO, _STUFF_FROM)


class Instruction(IntEnum):
    PING = 0x01
    READ = 0x02
    WRITE = 0x03
    REG_WRITE = 0x04
    ACTION = 0x05
    FACTORY_RESET = 0x06
    REBOOT = 0x08
    CLEAR = 0x10
    STATUS = 0x55
    SYNC_READ = 0x82
    SYNC_WRITE = 0x83
    BULK_READ = 0x92
    BULK_WRITE = 0x93


def instruction_name(code: int) -> str:
    try:
        return Instruction(code).name
    except ValueError:
        return f"0x{code:02X}"


class ErrorCode(IntEnum):
    """Status packet error number (bits 0-6); bit 7 is the Alert flag (`ALERT_BIT`)."""

    NONE = 0x00
    RESULT_FAIL = 0x01
    INSTRUCTION_ERROR = 0x02
    CRC_ERROR = 0x03
    DATA_RANGE_ERROR = 0x04
    DATA_LENGTH_ERROR = 0x05
    DATA_LIMIT_ERROR = 0x06
    ACCESS_ERROR = 0x07


ALERT_BIT = 0x80
_ERROR_NAMES = {
    0x01: "Result Fail", 0x02: "Instruction Error", 0x03: "CRC Error", 0x04: "Data Range Error",
    0x05: "Data Length Error", 0x06: "Data Limit Error", 0x07: "Access Error",
}  # fmt: skip


def describe_error(error: int) -> str:
    """e-Manual name of a status error byte: 'Access Error', 'Alert', 'Data Range Error, Alert'."""
    number = error & 0x7F
    parts = [] if number == 0 else [_ERROR_NAMES.get(number, f"Unknown Error 0x{number:02X}")]
    if error & ALERT_BIT:
        parts.append("Alert")
    return ", ".join(parts) or "No Error"


class HardwareError(IntFlag):
    """Hardware Error Status (70) bits of the X series (e-Manual, Shutdown(63) table)."""

    INPUT_VOLTAGE = 0x01
    OVERHEATING = 0x04
    MOTOR_ENCODER = 0x08
    ELECTRICAL_SHOCK = 0x10
    OVERLOAD = 0x20


class ControlTable(IntEnum):
    """X-series control table (XL430-W250 / XM430 e-Manual): value = address, plus size in bytes,
    signedness and write access. Addresses below `EEPROM_END` are EEPROM (locked while torque is
    on). 126 is Present Current on XM/XH (1 mA units) and Present Load on XL430 (0.1 %)."""

    size: int
    signed: bool
    writable: bool

    def __new__(cls, address: int, size: int, signed: bool = False, writable: bool = True):
        obj = int.__new__(cls, address)
        obj._value_ = address
        obj.size, obj.signed, obj.writable = size, signed, writable
        return obj

    MODEL_NUMBER = 0, 2, False, False
    MODEL_INFORMATION = 2, 4, False, False
    FIRMWARE_VERSION = 6, 1, False, False
    ID = 7, 1
    BAUD_RATE = 8, 1
    RETURN_DELAY_TIME = 9, 1  # 2 us units
    DRIVE_MODE = 10, 1
    OPERATING_MODE = 11, 1
    SECONDARY_ID = 12, 1
    PROTOCOL_TYPE = 13, 1
    HOMING_OFFSET = 20, 4, True
    MOVING_THRESHOLD = 24, 4
    TEMPERATURE_LIMIT = 31, 1
    MAX_VOLTAGE_LIMIT = 32, 2
    MIN_VOLTAGE_LIMIT = 34, 2
    PWM_LIMIT = 36, 2
    VELOCITY_LIMIT = 44, 4
    MAX_POSITION_LIMIT = 48, 4
    MIN_POSITION_LIMIT = 52, 4
    STARTUP_CONFIGURATION = 60, 1
    SHUTDOWN = 63, 1
    TORQUE_ENABLE = 64, 1
    LED = 65, 1
    STATUS_RETURN_LEVEL = 68, 1
    REGISTERED_INSTRUCTION = 69, 1, False, False
    HARDWARE_ERROR_STATUS = 70, 1, False, False
    VELOCITY_I_GAIN = 76, 2
    VELOCITY_P_GAIN = 78, 2
    POSITION_D_GAIN = 80, 2
    POSITION_I_GAIN = 82, 2
    POSITION_P_GAIN = 84, 2
    FEEDFORWARD_2ND_GAIN = 88, 2
    FEEDFORWARD_1ST_GAIN = 90, 2
    BUS_WATCHDOG = 98, 1, True  # 20 ms units; -1 = watchdog error
    GOAL_PWM = 100, 2, True
    GOAL_VELOCITY = 104, 4, True
    PROFILE_ACCELERATION = 108, 4
    PROFILE_VELOCITY = 112, 4
    GOAL_POSITION = 116, 4, True
    REALTIME_TICK = 120, 2, False, False
    MOVING = 122, 1, False, False
    MOVING_STATUS = 123, 1, False, False
    PRESENT_PWM = 124, 2, True, False
    PRESENT_CURRENT = 126, 2, True, False
    PRESENT_VELOCITY = 128, 4, True, False
    PRESENT_POSITION = 132, 4, True, False
    VELOCITY_TRAJECTORY = 136, 4, True, False
    POSITION_TRAJECTORY = 140, 4, True, False
    PRESENT_INPUT_VOLTAGE = 144, 2, False, False
    PRESENT_TEMPERATURE = 146, 1, False, False
    BACKUP_READY = 147, 1, False, False


EEPROM_END = 64
CONTROL_TABLE_SIZE = 148  # addresses 0..147; the indirect region is not modelled


def encode_value(item: ControlTable, value: int) -> bytes:
    """Little-endian bytes of `value` for a control-table item; ValueError if it does not fit."""
    try:
        return int(value).to_bytes(item.size, "little", signed=item.signed)
    except OverflowError:
        raise ValueError(f"{item.name}: {value} does not fit in {item.size} bytes") from None


def decode_value(item: ControlTable, data: bytes) -> int:
    if len(data) != item.size:
        raise ValueError(f"{item.name}: need {item.size} bytes, got {len(data)}")
    return int.from_bytes(data, "little", signed=item.signed)


@functools.cache
def _items_in(address: int, length: int) -> tuple[ControlTable, ...]:
    end = address + length
    return tuple(it for it in ControlTable if address <= it and it + it.size <= end)


def decode_block(address: int, data: bytes) -> dict[ControlTable, int]:
    """Every item lying wholly inside `data` read from `address` (e.g. one sync read 126..135)."""
    return {it: decode_value(it, data[it - address : it - address + it.size])
            for it in _items_in(address, len(data))}


@dataclass(frozen=True)
class Packet:
    """A decoded packet; `params` are unstuffed, `error` is set only for STATUS packets and
    `raw` holds the wire bytes it was decoded from (empty when built by hand)."""

    dxl_id: int
    instruction: int
    params: bytes = b""
    error: int | None = None
    raw: bytes = field(default=b"", compare=False, repr=False)

    def encode(self) -> bytes:
        body = bytes(self.params) if self.error is None else bytes([self.error]) + self.params
        return encode_packet(self.dxl_id, self.instruction, body)


def _check_id(dxl_id: int, *, broadcast_ok: bool = True) -> None:
    if not (0 <= dxl_id <= MAX_ID or (broadcast_ok and dxl_id == BROADCAST_ID)):
        raise ValueError(f"dxl_id: {dxl_id} is not 0..252" + (" or 0xFE" if broadcast_ok else ""))


def encode_packet(dxl_id: int, instruction: int, params: bytes = b"") -> bytes:
    """Full frame. For a status packet, `params` starts with the error byte."""
    _check_id(dxl_id)
    body = stuff(bytes([instruction]) + bytes(params))
    length = len(body) + 2
    if length > 0xFFFF:
        raise ValueError(f"params: {len(params)} bytes do not fit in one packet")
    frame = HEADER + bytes([dxl_id, length & 0xFF, length >> 8]) + body
    return frame + crc16(frame).to_bytes(2, "little")


def _u16(value: int, name: str) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{name}: {value} is not 0..65535")
    return value.to_bytes(2, "little")


def ping(dxl_id: int) -> bytes:
    return encode_packet(dxl_id, Instruction.PING)


def read(dxl_id: int, address: int, length: int) -> bytes:
    params = _u16(address, "address") + _u16(length, "length")
    return encode_packet(dxl_id, Instruction.READ, params)


def write(dxl_id: int, address: int, data: bytes) -> bytes:
    return encode_packet(dxl_id, Instruction.WRITE, _u16(address, "address") + bytes(data))


def reboot(dxl_id: int) -> bytes:
    return encode_packet(dxl_id, Instruction.REBOOT)


def status(dxl_id: int, error: int, params: bytes = b"") -> bytes:
    return encode_packet(dxl_id, Instruction.STATUS, bytes([error & 0xFF]) + bytes(params))


def sync_read(address: int, length: int, ids: Iterable[int]) -> bytes:
    ids = list(ids)
    for i in ids:
        _check_id(i, broadcast_ok=False)
    head = _u16(address, "address") + _u16(length, "length")
    return encode_packet(BROADCAST_ID, Instruction.SYNC_READ, head + bytes(ids))


def sync_write(address: int, length: int, data: Mapping[int, bytes]) -> bytes:
    params = bytearray(_u16(address, "address") + _u16(length, "length"))
    for i, chunk in data.items():
        _check_id(i, broadcast_ok=False)
        if len(chunk) != length:
            raise ValueError(f"data[{i}]: {len(chunk)} bytes, sync write length is {length}")
        params += bytes([i]) + bytes(chunk)
    return encode_packet(BROADCAST_ID, Instruction.SYNC_WRITE, bytes(params))


def bulk_read(requests: Iterable[tuple[int, int, int]]) -> bytes:
    params = bytearray()
    for i, address, length in requests:
        _check_id(i, broadcast_ok=False)
        params += bytes([i]) + _u16(address, "address") + _u16(length, "length")
    return encode_packet(BROADCAST_ID, Instruction.BULK_READ, bytes(params))


class PacketDecoder:
    """Stream decoder: `feed(bytes) -> [Packet]`, any chunking, resynchronising on garbage.

    A frame is accepted only when its CRC verifies. A bad frame counts in `crc_errors` (and is
    reported to `on_bad_crc(id)`); the decoder then drops one byte and searches for the next
    header, so a good frame hidden behind a damaged one is still found. Headers with an
    impossible ID or length are skipped byte by byte and count in `garbage_bytes`.
    """

    def __init__(self, *, max_length: int = 1024, on_bad_crc: Callable[[int], None] | None = None):
        if max_length < 4:
            raise ValueError(f"max_length: {max_length} < 4")
        self.max_length = max_length
        self.on_bad_crc = on_bad_crc
        self.crc_errors = 0
        self.garbage_bytes = 0
        self.packets = 0
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def reset(self) -> None:
        """Forget a partial frame (counters are kept)."""
        self._buf.clear()

    def bytes_needed(self) -> int:
        """Lower bound on the bytes that complete the frame being received (>= 1)."""
        buf = self._buf
        if len(buf) >= 7 and buf.startswith(HEADER):
            return max(1, 7 + (buf[5] | buf[6] << 8) - len(buf))
        return max(1, MIN_STATUS_BYTES - len(buf))

    def feed(self, data: bytes) -> list[Packet]:
        buf = self._buf
        buf += data
        out: list[Packet] = []
        while True:
            start = buf.find(HEADER)
            if start < 0:
                keep = next((k for k in (3, 2, 1) if buf.endswith(HEADER[:k])), 0)
                self._drop(len(buf) - keep)
                return out
            self._drop(start)
            if len(buf) < 7:
                return out
            dxl_id, length = buf[4], buf[5] | buf[6] << 8
            if dxl_id > MAX_ID and dxl_id != BROADCAST_ID or not 3 <= length <= self.max_length:
                self._drop(1)
                continue
            total = 7 + length
            if len(buf) < total:
                return out
            frame = bytes(buf[:total])
            if crc16(frame[:-2]) != frame[-2] | frame[-1] << 8:
                self.crc_errors += 1
                if self.on_bad_crc is not None:
                    self.on_bad_crc(dxl_id)
                self._drop(1)
                continue
            body = unstuff(frame[7:-2])
            if body[0] == Instruction.STATUS:
                if len(body) < 2:
                    self._drop(1)
                    continue
                pkt = Packet(dxl_id, body[0], body[2:], body[1], raw=frame)
            else:
                pkt = Packet(dxl_id, body[0], body[1:], None, raw=frame)
            del buf[:total]
            self.packets += 1
            out.append(pkt)

    def _drop(self, n: int) -> None:
        if n > 0:
            del self._buf[:n]
            self.garbage_bytes += n
