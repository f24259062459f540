"""Device side of a Dynamixel Protocol 2.0 bus: a chain of virtual X-series servos.

`VirtualServoChain.feed(bytes, now_s) -> [reply bytes]` is the whole interface to the wire: it
decodes instruction packets with the shared codec and answers as the e-Manual says servos do
(ping, read, write, sync read/write, bulk read, reboot; broadcast 0xFE; Status Return Level;
EEPROM locked while torque is on; goal values locked after a bus-watchdog trip). Each servo is
a `VirtualServo`, a 148-byte control table; whoever simulates the physics reads goals and
torque enable from `table(id)` and writes present values into it. No timing happens here:
`feed_replies` gives each reply with its servo's return delay, and a pty server adds wire time.

Protocol-level fault hooks: `silent_ids` (servos that act on instructions but never answer),
`alert(id, bits)` (Hardware Error Status bits; every status then carries the Alert bit, and
a shutdown bit turns torque off until a reboot) and `bad_crc_next(n)` (damage the next n replies).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

from gaitforge.hw_drivers import dynamixel as dxl
from gaitforge.hw_drivers.dynamixel import (
    ALERT_BIT,
    BROADCAST_ID,
    CONTROL_TABLE_SIZE,
    EEPROM_END,
    ControlTable,
    ErrorCode,
    Instruction,
    Packet,
    PacketDecoder,
)

CT, E, I = ControlTable, ErrorCode, Instruction  # noqa: E741 (short names keep the tables legible)

WATCHDOG_UNIT_S = 0.020
RETURN_DELAY_UNIT_S = 2e-6
_ITEM_AT: list[CT | None] = [None] * CONTROL_TABLE_SIZE
for _it in CT:
    for _a in range(_it, _it + _it.size):
        _ITEM_AT[_a] = _it
_GOALS = (CT.GOAL_PWM, CT.GOAL_VELOCITY, CT.GOAL_POSITION)
# e-Manual initial values (XL430-W250); present values start at rest in the middle of the turn
_INITIAL = {
    CT.BAUD_RATE: 1, CT.OPERATING_MODE: 3, CT.SECONDARY_ID: 255, CT.PROTOCOL_TYPE: 2,
    CT.MOVING_THRESHOLD: 10, CT.TEMPERATURE_LIMIT: 72, CT.MAX_VOLTAGE_LIMIT: 140,
    CT.MIN_VOLTAGE_LIMIT: 60, CT.PWM_LIMIT: 885, CT.VELOCITY_LIMIT: 265,
    CT.MAX_POSITION_LIMIT: 4095, CT.MIN_POSITION_LIMIT: 0, CT.SHUTDOWN: 52,
    CT.STATUS_RETURN_LEVEL: 2, CT.VELOCITY_I_GAIN: 1000, CT.VELOCITY_P_GAIN: 100,
    CT.POSITION_D_GAIN: 4000, CT.POSITION_P_GAIN: 640, CT.GOAL_PWM: 885,
    CT.GOAL_POSITION: 2048, CT.PRESENT_POSITION: 2048, CT.POSITION_TRAJECTORY: 2048,
    CT.PRESENT_INPUT_VOLTAGE: 120, CT.PRESENT_TEMPERATURE: 30,
}  # fmt: skip
_KEEP_ON_REBOOT = (
    CT.PRESENT_PWM, CT.PRESENT_CURRENT, CT.PRESENT_VELOCITY, CT.PRESENT_POSITION,
    CT.PRESENT_INPUT_VOLTAGE, CT.PRESENT_TEMPERATURE,
)  # fmt: skip


class Reply(NamedTuple):
    dxl_id: int
    data: bytes
    delay_s: float  # the servo's Return Delay Time


class VirtualServo:
    """One servo: its control table (`mem`) and typed access. `get`/`set` bypass the access
    rules (they are the physics side); the wire goes through `read_block`/`write_block`."""

    def __init__(self, dxl_id: int, model_number: int, firmware_version: int, return_delay_s):
        self.dxl_id = dxl_id
        self.mem = bytearray(CONTROL_TABLE_SIZE)
        self.last_rx_s: float | None = None  # last instruction addressed to this servo
        self.tripped_at_s: float | None = None  # when the bus watchdog last tripped
        self.last_error = 0  # error number of the last instruction, even when unanswered
        for item, value in _INITIAL.items():
            self.set(item, value)
        self.set(CT.MODEL_NUMBER, model_number)
        self.set(CT.FIRMWARE_VERSION, firmware_version)
        self.set(CT.ID, dxl_id)
        self.set(CT.RETURN_DELAY_TIME, min(254, round(return_delay_s / RETURN_DELAY_UNIT_S)))

    def get(self, item: CT) -> int:
        return dxl.decode_value(item, bytes(self.mem[item : item + item.size]))

    def set(self, item: CT, value: int) -> None:
        self.mem[item : item + item.size] = dxl.encode_value(item, value)

    @property
    def torque_enabled(self) -> bool:
        return self.mem[CT.TORQUE_ENABLE] == 1

    @property
    def hardware_error(self) -> int:
        return self.mem[CT.HARDWARE_ERROR_STATUS]

    @property
    def watchdog_tripped(self) -> bool:
        return self.get(CT.BUS_WATCHDOG) == -1

    @property
    def return_delay_s(self) -> float:
        return self.mem[CT.RETURN_DELAY_TIME] * RETURN_DELAY_UNIT_S

    def status_error(self, number: int) -> int:
        return number | (ALERT_BIT if self.hardware_error else 0)

    def read_block(self, address: int, length: int) -> tuple[int, bytes]:
        if length < 1 or address + length > CONTROL_TABLE_SIZE:
            return E.ACCESS_ERROR, b""
        return E.NONE, bytes(self.mem[address : address + length])

    def write_block(self, address: int, data: bytes, now_s: float) -> int:
        """Apply a write if every item in it is whole, writable and in range; else an error."""
        end = address + len(data)
        if not data or end > CONTROL_TABLE_SIZE:
            return E.ACCESS_ERROR
        values = {}
        a = address
        while a < end:
            item = _ITEM_AT[a]
            if item is None or not item.writable:
                return E.ACCESS_ERROR
            if item != a or a + item.size > end:
                return E.DATA_LENGTH_ERROR
            if item < EEPROM_END and self.torque_enabled:
                return E.ACCESS_ERROR  # EEPROM is locked while torque is on (ROM lock)
            values[item] = dxl.decode_value(item, data[a - address : a - address + item.size])
            a += item.size
        for item, value in values.items():
            err = self._check(item, value)
            if err:
                return err
        for item, value in values.items():
            self.set(item, value)
        if CT.BUS_WATCHDOG in values:
            self.last_rx_s = now_s
        return E.NONE

    def _check(self, item: CT, value: int) -> int:
        if item in _GOALS and self.watchdog_tripped:
            return E.DATA_RANGE_ERROR  # goal values are read-only until the watchdog is cleared
        if item is CT.ID:
            return E.RESULT_FAIL  # re-addressing a servo is not modelled
        if item is CT.TORQUE_ENABLE and value == 1 and self.hardware_error:
            return E.RESULT_FAIL  # after a shutdown only a reboot re-enables torque
        ranges = {
            CT.TORQUE_ENABLE: (0, 1), CT.LED: (0, 1), CT.STATUS_RETURN_LEVEL: (0, 2),
            CT.RETURN_DELAY_TIME: (0, 254), CT.BUS_WATCHDOG: (0, 127),
        }  # fmt: skip
        if item in ranges and not ranges[item][0] <= value <= ranges[item][1]:
            return E.DATA_RANGE_ERROR
        if item is CT.OPERATING_MODE and value not in (0, 1, 3, 4, 5, 16):
            return E.DATA_RANGE_ERROR
        lo, hi = self.get(CT.MIN_POSITION_LIMIT), self.get(CT.MAX_POSITION_LIMIT)
        single_turn = self.get(CT.OPERATING_MODE) == 3
        if item is CT.GOAL_POSITION and single_turn and not lo <= value <= hi:
            return E.DATA_LIMIT_ERROR
        if item is CT.GOAL_VELOCITY and abs(value) > self.get(CT.VELOCITY_LIMIT):
            return E.DATA_LIMIT_ERROR
        return E.NONE

    def reboot(self) -> None:
        """RAM back to initial values (torque off, errors cleared); present values are kept."""
        keep = {item: self.get(item) for item in _KEEP_ON_REBOOT}
        self.mem[EEPROM_END:] = bytes(CONTROL_TABLE_SIZE - EEPROM_END)
        for item, value in _INITIAL.items():
            if item >= EEPROM_END:
                self.set(item, value)
        for item, value in keep.items():
            self.set(item, value)
        self.set(CT.GOAL_POSITION, keep[CT.PRESENT_POSITION])

    def trip_watchdog(self) -> None:
        """Bus watchdog error: stop where it is, goals read-only until 0 is written to 98."""
        self.set(CT.BUS_WATCHDOG, -1)
        self.set(CT.GOAL_POSITION, self.get(CT.PRESENT_POSITION))
        for item in (CT.GOAL_VELOCITY, CT.PROFILE_VELOCITY, CT.PROFILE_ACCELERATION):
            self.set(item, 0)


class VirtualServoChain:
    """Servos on one bus, answering in the order the e-Manual gives (sync/bulk read: the order
    of the request; broadcast ping: ascending id)."""

    def __init__(
        self,
        ids: Iterable[int],
        *,
        model_number: int = 1060,  # XL430-W250
        firmware_version: int = 46,
        return_delay_s: float = 0.0,
        crc_error_replies: bool = True,
    ):
        ids = list(ids)
        if not ids or len(set(ids)) != len(ids) or not all(0 <= i <= dxl.MAX_ID for i in ids):
            raise ValueError(f"ids: {ids} must be distinct servo ids in 0..252")
        if not 0 <= return_delay_s <= 254 * RETURN_DELAY_UNIT_S:
            raise ValueError(f"return_delay_s: {return_delay_s} is not in 0..508e-6")
        self._servos = {
            i: VirtualServo(i, model_number, firmware_version, return_delay_s) for i in sorted(ids)
        }
        self.crc_error_replies = crc_error_replies
        self.silent_ids: set[int] = set()
        self.on_instruction: Callable[[Packet, float], None] | None = None
        self.instructions_received = 0
        self._bad_crc_left = 0
        self._crc_failed_ids: list[int] = []
        self._decoder = PacketDecoder(on_bad_crc=self._crc_failed_ids.append)

    @property
    def ids(self) -> list[int]:
        return list(self._servos)

    @property
    def crc_errors(self) -> int:
        return self._decoder.crc_errors

    def table(self, dxl_id: int) -> VirtualServo:
        try:
            return self._servos[dxl_id]
        except KeyError:
            raise KeyError(f"no servo {dxl_id} in the chain; ids are {self.ids}") from None

    # ---- fault hooks -------------------------------------------------------------------
    def alert(self, dxl_id: int, hw_error_bits: int) -> None:
        """Raise Hardware Error Status bits; a bit that is in Shutdown(63) turns torque off."""
        servo = self.table(dxl_id)
        servo.set(CT.HARDWARE_ERROR_STATUS, servo.hardware_error | (hw_error_bits & 0xFF))
        if hw_error_bits & servo.get(CT.SHUTDOWN):
            servo.set(CT.TORQUE_ENABLE, 0)

    def bad_crc_next(self, n: int = 1) -> None:
        self._bad_crc_left += n

    def check_watchdog(self, now_s: float) -> list[int]:
        """Trip the bus watchdog of every torque-on servo not addressed for longer than its
        Bus Watchdog(98) x 20 ms; returns the ids that tripped now."""
        tripped = []
        for servo in self._servos.values():
            limit = servo.get(CT.BUS_WATCHDOG)
            armed = limit > 0 and servo.torque_enabled and servo.last_rx_s is not None
            if armed and now_s - servo.last_rx_s > limit * WATCHDOG_UNIT_S:
                servo.trip_watchdog()
                servo.tripped_at_s = now_s
                tripped.append(servo.dxl_id)
        return tripped

    # ---- the wire ----------------------------------------------------------------------
    def poll(self, now_s: float) -> list[bytes]:
        """Servos never speak unasked; this only runs the bus watchdogs (same shape as the
        board model's `poll`, so one pty server drives either)."""
        self.check_watchdog(now_s)
        return []

    def feed(self, data: bytes, now_s: float = 0.0) -> list[bytes]:
        return [r.data for r in self.feed_replies(data, now_s)]

    def feed_replies(self, data: bytes, now_s: float = 0.0) -> list[Reply]:
        self.check_watchdog(now_s)
        tick = int(now_s * 1000) % 32768
        for servo in self._servos.values():
            servo.set(CT.REALTIME_TICK, tick)
        replies: list[Reply] = []
        for pkt in self._decoder.feed(data):
            if pkt.instruction == I.STATUS:
                continue  # another device's answer on the shared bus
            self.instructions_received += 1
            if self.on_instruction is not None:
                self.on_instruction(pkt, now_s)
            replies += self._handle(pkt, now_s)
        failed, self._crc_failed_ids[:] = list(self._crc_failed_ids), []
        for i in failed:  # the e-Manual's CRC Error status, for a damaged unicast instruction
            if self.crc_error_replies and i in self._servos:
                replies += self._reply(self._servos[i], E.CRC_ERROR)
        return replies

    def _reply(self, servo: VirtualServo, number: int, params=b"", level: int = 2) -> list[Reply]:
        """A status if Status Return Level(68) >= level (0 ping, 1 reads, 2 everything)."""
        servo.last_error = number
        if servo.dxl_id in self.silent_ids or servo.mem[CT.STATUS_RETURN_LEVEL] < level:
            return []
        frame = dxl.status(servo.dxl_id, servo.status_error(number), params)
        if self._bad_crc_left > 0:
            self._bad_crc_left -= 1
            frame = frame[:-1] + bytes([frame[-1] ^ 0xFF])
        return [Reply(servo.dxl_id, frame, servo.return_delay_s)]

    def _targets(self, ids: Iterable[int], now_s: float) -> list[VirtualServo]:
        """The servos among `ids` (first occurrence, in order); feeds their bus watchdogs."""
        out = [self._servos[i] for i in dict.fromkeys(ids) if i in self._servos]
        for servo in out:
            servo.last_rx_s = now_s
        return out

    def _handle(self, pkt: Packet, now_s: float) -> list[Reply]:
        inst, p, out = pkt.instruction, pkt.params, []
        if pkt.dxl_id != BROADCAST_ID:
            return self._handle_unicast(pkt, now_s)
        if inst in (I.PING, I.WRITE, I.REBOOT):
            targets = self._targets(self._servos, now_s)
            if inst == I.PING and not p:
                for servo in targets:
                    out += self._reply(servo, E.NONE, _ping_params(servo), level=0)
            elif inst == I.WRITE and len(p) >= 3:  # broadcast write: nobody answers
                for servo in targets:
                    servo.last_error = servo.write_block(_u16(p, 0), p[2:], now_s)
            elif inst == I.REBOOT and not p:
                for servo in targets:
                    servo.reboot()
        elif inst == I.SYNC_READ and len(p) >= 5:
            address, length = _u16(p, 0), _u16(p, 2)
            for servo in self._targets(p[4:], now_s):
                out += self._reply(servo, *servo.read_block(address, length), level=1)
        elif inst == I.SYNC_WRITE and len(p) > 4:
            address, length = _u16(p, 0), _u16(p, 2)
            if length and (len(p) - 4) % (length + 1) == 0:
                for k in range(4, len(p), length + 1):
                    for servo in self._targets([p[k]], now_s):
                        chunk = p[k + 1 : k + 1 + length]
                        servo.last_error = servo.write_block(address, chunk, now_s)
        elif inst == I.BULK_READ and p and len(p) % 5 == 0:
            for k in range(0, len(p), 5):
                for servo in self._targets([p[k]], now_s):
                    err, data = servo.read_block(_u16(p, k + 1), _u16(p, k + 3))
                    out += self._reply(servo, err, data, level=1)
        return out

    def _handle_unicast(self, pkt: Packet, now_s: float) -> list[Reply]:
        inst, p = pkt.instruction, pkt.params
        targets = self._targets([pkt.dxl_id], now_s)
        if not targets:
            return []
        servo = targets[0]
        if inst == I.PING and not p:
            return self._reply(servo, E.NONE, _ping_params(servo), level=0)
        if inst == I.READ and len(p) == 4:
            return self._reply(servo, *servo.read_block(_u16(p, 0), _u16(p, 2)), level=1)
        if inst == I.WRITE and len(p) >= 3:
            return self._reply(servo, servo.write_block(_u16(p, 0), p[2:], now_s))
        if inst == I.REBOOT and not p:
            out = self._reply(servo, E.NONE)
            servo.reboot()
            return out
        known = inst in (I.PING, I.READ, I.WRITE, I.REBOOT)
        return self._reply(servo, E.DATA_LENGTH_ERROR if known else E.INSTRUCTION_ERROR)


def _u16(p: bytes, k: int) -> int:
    return p[k] | p[k + 1] << 8


def _ping_params(servo: VirtualServo) -> bytes:
    """Model number (LE u16) and firmware version."""
    return bytes(servo.mem[CT.MODEL_NUMBER : CT.MODEL_NUMBER + 2]) + bytes([servo.mem[6]])


class ChainTransport:
    """In-memory transport for a `DynamixelBus`: writes go to `chain.feed`, replies queue up
    for `read`. Its clock (`now_s`, `clock()`) moves only when a read comes up short, by the
    timeout a real port would have waited, so tests on it are exact. `mangle(bytes) -> bytes`
    may alter each reply and `mangle_tx` each instruction (byte-level faults in tests)."""

    def __init__(self, chain: VirtualServoChain, *, now_s: float = 0.0):
        self.chain = chain
        self.now_s = now_s
        self.written: list[bytes] = []
        self.mangle: Callable[[bytes], bytes] | None = None
        self.mangle_tx: Callable[[bytes], bytes] | None = None
        self._rx = bytearray()

    def clock(self) -> float:
        return self.now_s

    def write(self, data: bytes) -> int:
        data = bytes(data)
        self.written.append(data)
        wire = data if self.mangle_tx is None else self.mangle_tx(data)
        for reply in self.chain.feed(wire, self.now_s):
            self._rx += reply if self.mangle is None else self.mangle(reply)
        return len(data)

    def read(self, n: int, timeout_s: float | None = None) -> bytes:
        out = bytes(self._rx[:n])
        del self._rx[:n]
        if len(out) < n:
            self.now_s += timeout_s or 0.0
        return out

    def reset_input(self) -> None:
        self._rx.clear()
