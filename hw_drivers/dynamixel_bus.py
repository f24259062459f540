"""Host side of a Dynamixel Protocol 2.0 bus: one request, its status packets, typed errors.

`DynamixelBus` owns a transport (`write(bytes)`, `read(n, timeout_s) -> bytes` returning fewer
bytes on timeout, `reset_input()`) and a `PacketDecoder`. Each request flushes stale input,
writes one instruction packet and collects the expected status packets, waiting `timeout_s`
for each reply (the clock restarts when one arrives). A missing or damaged reply is retried up
to `retries` times; sync and bulk reads re-ask only the servos that did not answer. A status
error byte raises `DxlStatusError` at once (a "CRC Error" status is retried like a damaged
reply); so does the Alert bit, except when reading Hardware Error Status, which is how the
cause of an alert is found. Reads that still miss a servo raise `DxlTimeout` naming it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from gaitforge.hw_drivers import dynamixel as dxl
from gaitforge.hw_drivers.dynamixel import (
    ALERT_BIT,
    BROADCAST_ID,
    ControlTable,
    ErrorCode,
    Instruction,
    Packet,
    PacketDecoder,
)


class Transport(Protocol):
    def write(self, data: bytes) -> object: ...
    def read(self, n: int, timeout_s: float | None = None) -> bytes: ...
    def reset_input(self) -> None: ...


class DxlError(Exception):
    """Base of the bus errors."""


class DxlTimeout(DxlError):
    """No valid status packet from `dxl_ids` for `instruction` after every attempt."""

    def __init__(self, dxl_ids: Iterable[int], instruction: int, attempts: int):
        self.dxl_ids = tuple(dxl_ids)
        self.dxl_id = self.dxl_ids[0]
        self.instruction = instruction
        self.attempts = attempts
        who = ", ".join(str(i) for i in self.dxl_ids)
        super().__init__(
            f"no reply from servo {who} to {dxl.instruction_name(instruction)} "
            f"after {attempts} attempt(s)"
        )


class DxlStatusError(DxlError):
    """A status packet whose error byte is not zero; `name` is the e-Manual error name."""

    def __init__(self, dxl_id: int, instruction: int, error: int, params: bytes = b""):
        self.dxl_id = dxl_id
        self.instruction = instruction
        self.error = error
        self.error_number = error & 0x7F
        self.alert = bool(error & ALERT_BIT)
        self.params = params
        self.name = dxl.describe_error(error)
        hint = " (read HARDWARE_ERROR_STATUS)" if self.alert else ""
        super().__init__(
            f"servo {dxl_id}: {dxl.instruction_name(instruction)} -> {self.name} "
            f"(error byte 0x{error:02X}){hint}"
        )


class DynamixelBus:
    """Requests over one Protocol 2.0 bus. Counters: `timeouts` (attempts that ended with a
    reply missing, not counting replies that arrived damaged), `retries_used`, `crc_errors`
    and `garbage_bytes` (from the decoder), `unexpected` (valid packets nobody asked for),
    `requests`. Reads take `allow_alert=True` to return data despite the Alert bit; the
    servos that raised it are then in `last_alert_ids`."""

    def __init__(
        self,
        transport: Transport,
        *,
        timeout_s: float = 0.01,
        retries: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not timeout_s > 0:
            raise ValueError(f"timeout_s: {timeout_s} must be > 0")
        if retries < 0:
            raise ValueError(f"retries: {retries} must be >= 0")
        self.transport = transport
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self._clock = clock
        self._decoder = PacketDecoder()
        self.timeouts = 0
        self.retries_used = 0
        self.unexpected = 0
        self.requests = 0
        self.last_alert_ids: set[int] = set()  # servos whose status carried Alert, last request

    @property
    def crc_errors(self) -> int:
        return self._decoder.crc_errors

    @property
    def garbage_bytes(self) -> int:
        return self._decoder.garbage_bytes

    # ---- instructions ------------------------------------------------------------------
    def ping(self, dxl_id: int) -> tuple[int, int]:
        """(model number, firmware version) of one servo."""
        p = self._unicast(dxl_id, Instruction.PING, lambda _: dxl.ping(dxl_id), 3)
        return p.params[0] | p.params[1] << 8, p.params[2]

    def broadcast_ping(self) -> dict[int, tuple[int, int]]:
        """Every servo that answers a broadcast ping within `timeout_s` of the previous answer."""
        self._send(dxl.ping(BROADCAST_ID))
        found = {}
        for p in self._collect(None)[0].values():
            if p.error & 0x7F == 0 and len(p.params) == 3:
                found[p.dxl_id] = (p.params[0] | p.params[1] << 8, p.params[2])
        return dict(sorted(found.items()))

    def read(self, dxl_id: int, address: int, length: int, *, allow_alert: bool = False) -> bytes:
        build = lambda _: dxl.read(dxl_id, address, length)  # noqa: E731
        return self._unicast(dxl_id, Instruction.READ, build, length, allow_alert).params

    def write(self, dxl_id: int, address: int, data: bytes, *, allow_alert: bool = False) -> None:
        """Write and wait for the status; a broadcast write (0xFE) returns without one."""
        if dxl_id == BROADCAST_ID:
            self._send(dxl.write(dxl_id, address, data))
            return
        build = lambda _: dxl.write(dxl_id, address, data)  # noqa: E731
        self._unicast(dxl_id, Instruction.WRITE, build, 0, allow_alert)

    def read_item(self, dxl_id: int, item: ControlTable, *, allow_alert: bool = False) -> int:
        return dxl.decode_value(item, self.read(dxl_id, item, item.size, allow_alert=allow_alert))

    def write_item(
        self, dxl_id: int, item: ControlTable, value: int, *, allow_alert: bool = False
    ) -> None:
        self.write(dxl_id, item, dxl.encode_value(item, value), allow_alert=allow_alert)

    def hardware_error_status(self, dxl_id: int) -> int:
        """Hardware Error Status (70): the cause of an Alert (bits of `HardwareError`)."""
        return self.read_item(dxl_id, ControlTable.HARDWARE_ERROR_STATUS, allow_alert=True)

    def reboot(self, dxl_id: int) -> None:
        if dxl_id == BROADCAST_ID:
            self._send(dxl.reboot(dxl_id))
            return
        self._unicast(dxl_id, Instruction.REBOOT, lambda _: dxl.reboot(dxl_id), 0, True)

    def sync_read(
        self, address: int, length: int, ids: Iterable[int], *, allow_alert: bool = False
    ) -> dict[int, bytes]:
        """{id: data} for every id, in the order given; DxlTimeout names the missing ones."""
        ids = list(dict.fromkeys(ids))
        build = lambda todo: dxl.sync_read(address, length, todo)  # noqa: E731
        expect = {i: length for i in ids}
        got = self._request(build, expect, Instruction.SYNC_READ, allow_alert)
        return {i: got[i].params for i in ids}

    def sync_write(self, address: int, length: int, data: Mapping[int, bytes]) -> None:
        """One broadcast packet; servos send no status, so nothing is waited for."""
        self._send(dxl.sync_write(address, length, data))

    def bulk_read(
        self, requests: Iterable[tuple[int, int, int]], *, allow_alert: bool = False
    ) -> dict[int, bytes]:
        """{id: data} for [(id, address, length)], one request per id."""
        reqs = {i: (address, length) for i, address, length in requests}
        build = lambda todo: dxl.bulk_read([(i, *reqs[i]) for i in todo])  # noqa: E731
        expect = {i: n for i, (_, n) in reqs.items()}
        got = self._request(build, expect, Instruction.BULK_READ, allow_alert)
        return {i: got[i].params for i in reqs}

    # ---- machinery ---------------------------------------------------------------------
    def _unicast(self, dxl_id, instruction, build, n_params, allow_alert=False) -> Packet:
        if dxl_id == BROADCAST_ID:
            raise ValueError(f"dxl_id: {dxl.instruction_name(instruction)} needs one servo id")
        return self._request(build, {dxl_id: n_params}, instruction, allow_alert)[dxl_id]

    def _send(self, packet: bytes) -> None:
        self.requests += 1
        self.transport.reset_input()
        self._decoder.reset()
        self.transport.write(packet)

    def _request(
        self,
        build: Callable[[list[int]], bytes],
        expect: dict[int, int],
        instruction: int,
        allow_alert: bool = False,
    ) -> dict[int, Packet]:
        """Send `build(ids still wanted)` until every id in `expect` (id -> param bytes) has
        answered, at most 1 + retries times."""
        got: dict[int, Packet] = {}
        todo = dict(expect)
        attempts = 0
        self.last_alert_ids = set()
        while todo:
            if attempts > self.retries:
                raise DxlTimeout(todo, instruction, attempts)
            if attempts:
                self.retries_used += 1
            attempts += 1
            self._send(build(list(todo)))
            replies, damaged = self._collect(todo)
            if any(i not in replies and i not in damaged for i in todo):
                self.timeouts += 1
            for i in list(todo):
                p = replies.get(i)
                if p is not None and p.error & ALERT_BIT:
                    self.last_alert_ids.add(i)
                if p is None or p.error & 0x7F == ErrorCode.CRC_ERROR:
                    continue  # lost or damaged on the way out: try again
                if p.error & 0x7F or (p.error & ALERT_BIT and not allow_alert):
                    raise DxlStatusError(i, instruction, p.error, p.params)
                got[i] = p
                del todo[i]
        return got

    def _collect(self, expect: dict[int, int] | None) -> tuple[dict[int, Packet], set[int]]:
        """Status packets for the ids in `expect` (id -> param bytes) until each has arrived or
        was seen damaged (bad CRC), or `timeout_s` passed since the last arrival. `expect=None`
        takes any id until the bus stays quiet (a broadcast ping). Returns (packets, damaged)."""
        pending = None if expect is None else dict(expect)
        damaged: set[int] = set()
        got: dict[int, Packet] = {}
        self._decoder.on_bad_crc = damaged.add
        deadline = self._clock() + self.timeout_s
        try:
            while pending is None or len(pending) > len(damaged):
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                want = self._decoder.bytes_needed()
                if pending:  # never ask for more than the replies still due can bring
                    due = [n for i, n in pending.items() if i not in damaged]
                    unstuffed = sum(dxl.MIN_STATUS_BYTES + n for n in due)
                    want = max(want, unstuffed - self._decoder.buffered)
                data = self.transport.read(want, timeout_s=remaining)
                for p in self._decoder.feed(data) if data else ():
                    if not self._wanted(p, pending, got):
                        self.unexpected += 1
                        continue
                    got[p.dxl_id] = p
                    if pending is not None:
                        del pending[p.dxl_id]
                    damaged.discard(p.dxl_id)
                    deadline = self._clock() + self.timeout_s
                if pending is not None:
                    damaged &= pending.keys()
        finally:
            self._decoder.on_bad_crc = None
        return got, damaged

    @staticmethod
    def _wanted(p: Packet, pending: dict[int, int] | None, got: dict[int, Packet]) -> bool:
        if p.instruction != Instruction.STATUS or p.dxl_id in got:
            return False
        if pending is None:
            return True
        if p.dxl_id not in pending:
            return False
        # a valid frame of the wrong size is not the answer to this request
        return bool(p.error & 0x7F) or len(p.params) == pending[p.dxl_id]
