"""The host bus against the virtual servo chain, over an in-memory transport with an exact clock.

The chain is checked first on its own against the e-Manual examples (configured as the
manual's XM430-W210: model 1030, firmware 38), then the bus drives a 12-servo chain.
"""

from __future__ import annotations

import pytest

from gaitforge.hw_drivers import dynamixel as dxl
from gaitforge.hw_drivers.dynamixel import ControlTable as CT
from gaitforge.hw_drivers.dynamixel import ErrorCode, HardwareError, Instruction
from gaitforge.hw_drivers.dynamixel_bus import DxlStatusError, DxlTimeout, DynamixelBus
from gaitforge.hw_drivers.virtual_dynamixel import ChainTransport, VirtualServoChain

IDS = list(range(1, 13))
TIMEOUT_S = 0.01


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def u32(v: int) -> bytes:
    return v.to_bytes(4, "little", signed=True)


@pytest.fixture
def rig():
    chain = VirtualServoChain(IDS)
    transport = ChainTransport(chain)
    bus = DynamixelBus(transport, timeout_s=TIMEOUT_S, retries=2, clock=transport.clock)
    return chain, transport, bus


# ---- the chain alone, byte for byte against the manual ----------------------------------
def manual_chain() -> VirtualServoChain:
    chain = VirtualServoChain([1, 2], model_number=1030, firmware_version=38)
    chain.table(1).set(CT.PRESENT_POSITION, 166)
    chain.table(2).set(CT.PRESENT_POSITION, 2079)
    chain.table(1).set(CT.PRESENT_INPUT_VOLTAGE, 119)
    chain.table(2).set(CT.PRESENT_TEMPERATURE, 36)
    return chain


@pytest.mark.parametrize(
    ("instruction", "replies"),
    [
        ("ff ff fd 00 01 03 00 01 19 4e", ["ff ff fd 00 01 07 00 55 00 06 04 26 65 5d"]),
        (
            "ff ff fd 00 fe 03 00 01 31 42",
            [
                "ff ff fd 00 01 07 00 55 00 06 04 26 65 5d",
                "ff ff fd 00 02 07 00 55 00 06 04 26 6f 6d",
            ],
        ),
        (
            "ff ff fd 00 01 07 00 02 84 00 04 00 1d 15",
            ["ff ff fd 00 01 08 00 55 00 a6 00 00 00 8c c0"],
        ),
        ("ff ff fd 00 01 09 00 03 74 00 00 02 00 00 ca 89", ["ff ff fd 00 01 04 00 55 00 a1 0c"]),
        (
            "ff ff fd 00 fe 09 00 82 84 00 04 00 01 02 ce fa",
            [
                "ff ff fd 00 01 08 00 55 00 a6 00 00 00 8c c0",
                "ff ff fd 00 02 08 00 55 00 1f 08 00 00 ba be",
            ],
        ),
        (
            "ff ff fd 00 fe 0d 00 92 01 90 00 02 00 02 92 00 01 00 1a 05",
            ["ff ff fd 00 01 06 00 55 00 77 00 c3 69", "ff ff fd 00 02 05 00 55 00 24 8b a9"],
        ),
        ("ff ff fd 00 01 03 00 08 2f 4e", ["ff ff fd 00 01 04 00 55 00 a1 0c"]),
    ],
)
def test_chain_answers_the_manual_examples_byte_for_byte(instruction, replies):
    assert manual_chain().feed(h(instruction)) == [h(r) for r in replies]


def test_chain_sync_write_and_broadcast_write_send_no_status():
    chain = manual_chain()
    sync_write = h("ff ff fd 00 fe 11 00 83 74 00 04 00 01 96 00 00 00 02 aa 00 00 00 82 87")
    assert chain.feed(sync_write) == []
    assert [chain.table(i).get(CT.GOAL_POSITION) for i in (1, 2)] == [150, 170]
    assert chain.feed(dxl.write(0xFE, CT.LED, b"\x01")) == []
    assert chain.table(2).get(CT.LED) == 1


def test_chain_sync_read_answers_in_request_order_and_skips_unknown_ids():
    replies = VirtualServoChain(IDS).feed_replies(dxl.sync_read(CT.PRESENT_POSITION, 4, [9, 3, 77]))
    assert [r.dxl_id for r in replies] == [9, 3]


def test_status_return_level_and_return_delay():
    chain = VirtualServoChain([1], return_delay_s=100e-6)
    assert chain.table(1).get(CT.RETURN_DELAY_TIME) == 50  # 2 us units
    chain.feed(dxl.write(1, CT.STATUS_RETURN_LEVEL, b"\x01"))
    assert chain.feed(dxl.write(1, CT.LED, b"\x01")) == []  # level 1: no status for writes
    (reply,) = chain.feed_replies(dxl.read(1, CT.LED, 1))
    assert reply.delay_s == pytest.approx(100e-6)
    chain.feed(dxl.write(1, CT.STATUS_RETURN_LEVEL, b"\x00"))
    assert chain.feed(dxl.read(1, CT.LED, 1)) == []
    assert len(chain.feed(dxl.ping(1))) == 1  # ping always answers


def test_chain_rejects_unknown_instruction_and_answers_damaged_instruction_with_crc_error():
    chain = VirtualServoChain([1])
    (reply,) = chain.feed(dxl.encode_packet(1, 0x7A))
    assert dxl.PacketDecoder().feed(reply)[0].error == ErrorCode.INSTRUCTION_ERROR
    bad = bytearray(dxl.read(1, CT.PRESENT_POSITION, 4))
    bad[9] ^= 0x40
    (reply,) = chain.feed(bytes(bad))
    assert dxl.PacketDecoder().feed(reply)[0].error == ErrorCode.CRC_ERROR
    assert chain.crc_errors == 1


# ---- the bus over the chain --------------------------------------------------------------
def test_ping_and_broadcast_ping(rig):
    _, _, bus = rig
    assert bus.ping(7) == (1060, 46)
    assert bus.broadcast_ping() == {i: (1060, 46) for i in IDS}


def test_write_then_read_back(rig):
    chain, transport, bus = rig
    bus.write_item(4, CT.GOAL_POSITION, 3000)
    assert chain.table(4).get(CT.GOAL_POSITION) == 3000
    assert bus.read(4, CT.GOAL_POSITION, 4) == u32(3000)
    assert bus.read_item(4, CT.MODEL_NUMBER) == 1060
    assert transport.written[0] == dxl.write(4, 116, u32(3000))
    assert (bus.timeouts, bus.retries_used, bus.crc_errors) == (0, 0, 0)


def test_sync_read_current_velocity_position_of_12_servos(rig):
    chain, _, bus = rig
    for i in IDS:
        servo = chain.table(i)
        servo.set(CT.PRESENT_CURRENT, -10 * i)
        servo.set(CT.PRESENT_VELOCITY, 3 - i)
        servo.set(CT.PRESENT_POSITION, 2048 + 100 * i)
    data = bus.sync_read(CT.PRESENT_CURRENT, 10, IDS)
    assert list(data) == IDS
    for i in IDS:
        assert dxl.decode_block(CT.PRESENT_CURRENT, data[i]) == {
            CT.PRESENT_CURRENT: -10 * i,
            CT.PRESENT_VELOCITY: 3 - i,
            CT.PRESENT_POSITION: 2048 + 100 * i,
        }


def test_sync_write_goal_positions_of_12_servos(rig):
    chain, transport, bus = rig
    goals = {i: 1000 + 37 * i for i in IDS}
    bus.sync_write(CT.GOAL_POSITION, 4, {i: u32(g) for i, g in goals.items()})
    assert {i: chain.table(i).get(CT.GOAL_POSITION) for i in IDS} == goals
    assert len(transport.written[-1]) == 8 + 4 + 12 * 5 + 2  # header..inst, addr+len, 12 x 5, crc
    assert transport.now_s == 0.0  # nothing waited for


def test_bulk_read_different_items(rig):
    chain, _, bus = rig
    chain.table(2).set(CT.PRESENT_INPUT_VOLTAGE, 119)
    chain.table(5).set(CT.PRESENT_POSITION, -5)
    got = bus.bulk_read([(2, CT.PRESENT_INPUT_VOLTAGE, 2), (5, CT.PRESENT_POSITION, 4)])
    assert got == {2: (119).to_bytes(2, "little"), 5: u32(-5)}


def test_eeprom_write_with_torque_on_is_an_access_error(rig):
    chain, _, bus = rig
    bus.write_item(3, CT.OPERATING_MODE, 4)  # torque off: EEPROM writable
    bus.write_item(3, CT.TORQUE_ENABLE, 1)
    with pytest.raises(DxlStatusError, match="servo 3: WRITE -> Access Error") as info:
        bus.write_item(3, CT.OPERATING_MODE, 3)
    assert info.value.error_number == ErrorCode.ACCESS_ERROR and not info.value.alert
    assert chain.table(3).get(CT.OPERATING_MODE) == 4
    assert bus.retries_used == 0  # a status error is not retried


def test_write_errors_from_the_control_table(rig):
    _, _, bus = rig
    with pytest.raises(DxlStatusError, match="Access Error"):
        bus.write_item(1, CT.PRESENT_POSITION, 0)  # read only
    with pytest.raises(DxlStatusError, match="Data Length Error"):
        bus.write(1, CT.GOAL_POSITION, b"\x00\x01")  # half of a 4-byte item
    with pytest.raises(DxlStatusError, match="Data Limit Error"):
        bus.write_item(1, CT.GOAL_POSITION, 4096)  # beyond Max Position Limit 4095
    with pytest.raises(DxlStatusError, match="Data Range Error"):
        bus.write_item(1, CT.TORQUE_ENABLE, 2)


def test_alert_raises_and_hardware_error_status_tells_why(rig):
    chain, _, bus = rig
    bus.write_item(6, CT.TORQUE_ENABLE, 1)
    chain.alert(6, HardwareError.OVERLOAD)
    with pytest.raises(DxlStatusError, match="servo 6: SYNC_READ -> Alert") as info:
        bus.sync_read(CT.PRESENT_POSITION, 4, IDS)
    assert info.value.alert and info.value.error == 0x80 and info.value.dxl_id == 6
    assert bus.hardware_error_status(6) == 0x20
    data = bus.sync_read(CT.PRESENT_POSITION, 4, IDS, allow_alert=True)
    assert data[6] == u32(2048) and bus.last_alert_ids == {6}
    assert chain.table(6).torque_enabled is False  # overload is in Shutdown(63) = 0x34
    with pytest.raises(DxlStatusError, match="Result Fail, Alert"):
        bus.write_item(6, CT.TORQUE_ENABLE, 1)  # only a reboot re-arms it
    bus.write_item(6, CT.LED, 1, allow_alert=True)  # the write itself went through
    assert chain.table(6).get(CT.LED) == 1 and 6 in bus.broadcast_ping()


def test_reboot_clears_the_alert_and_keeps_present_values(rig):
    chain, _, bus = rig
    chain.table(8).set(CT.PRESENT_POSITION, 1234)
    bus.write_item(8, CT.BUS_WATCHDOG, 10)
    chain.alert(8, HardwareError.OVERHEATING)
    bus.reboot(8)
    servo = chain.table(8)
    assert servo.hardware_error == 0 and servo.get(CT.BUS_WATCHDOG) == 0
    assert servo.get(CT.PRESENT_POSITION) == 1234 == servo.get(CT.GOAL_POSITION)
    bus.write_item(8, CT.TORQUE_ENABLE, 1)
    assert bus.read_item(8, CT.TORQUE_ENABLE) == 1


def test_silent_servo_times_out_naming_it_after_retries(rig):
    chain, transport, bus = rig
    chain.silent_ids.add(5)
    with pytest.raises(DxlTimeout, match="no reply from servo 5 to SYNC_READ after 3") as info:
        bus.sync_read(CT.PRESENT_POSITION, 4, IDS)
    assert info.value.dxl_ids == (5,) and info.value.instruction == Instruction.SYNC_READ
    assert (bus.timeouts, bus.retries_used) == (3, 2)
    # the retries ask only the servo that did not answer
    assert transport.written[1:] == [dxl.sync_read(CT.PRESENT_POSITION, 4, [5])] * 2
    with pytest.raises(DxlTimeout, match="servo 5 to PING"):
        bus.ping(5)
    chain.silent_ids.clear()
    assert bus.ping(5) == (1060, 46)


def test_damaged_reply_is_retried_without_waiting_for_the_timeout(rig):
    chain, transport, bus = rig
    chain.bad_crc_next(1)
    assert bus.read_item(2, CT.PRESENT_POSITION) == 2048
    assert (bus.crc_errors, bus.retries_used, bus.timeouts) == (1, 1, 0)
    assert transport.now_s == 0.0


def test_damaged_instruction_gets_a_crc_error_status_and_is_retried(rig):
    chain, transport, bus = rig
    flips = iter([True])

    def corrupt_once(frame: bytes) -> bytes:
        if next(flips, False):
            return frame[:8] + bytes([frame[8] ^ 0x10]) + frame[9:]
        return frame

    transport.mangle_tx = corrupt_once
    bus.write_item(1, CT.LED, 1)
    assert chain.table(1).get(CT.LED) == 1 and chain.crc_errors == 1
    assert bus.retries_used == 1


def test_garbage_before_the_reply_is_skipped(rig):
    _, transport, bus = rig
    transport.mangle = lambda reply: h("00 ff ff fd 00 fd ff") + reply
    assert bus.ping(1) == (1060, 46)
    assert bus.garbage_bytes == 7 and bus.retries_used == 0


def test_bus_watchdog_trips_and_locks_goal_values(rig):
    chain, transport, bus = rig
    bus.write_item(1, CT.TORQUE_ENABLE, 1)
    bus.write_item(1, CT.BUS_WATCHDOG, 5)  # 100 ms
    transport.now_s += 0.099
    bus.write_item(1, CT.GOAL_POSITION, 2100)  # in time: accepted, feeds the watchdog
    transport.now_s += 0.101
    with pytest.raises(DxlStatusError, match="Data Range Error"):
        bus.write_item(1, CT.GOAL_POSITION, 2200)
    assert chain.table(1).watchdog_tripped and chain.table(1).get(CT.GOAL_POSITION) == 2048
    assert chain.poll(transport.now_s) == []  # nothing unsolicited; already tripped
    bus.write_item(1, CT.BUS_WATCHDOG, 0)
    bus.write_item(1, CT.GOAL_POSITION, 2200)


def test_poll_trips_the_watchdog_between_packets():
    chain = VirtualServoChain([1, 2])
    chain.feed(dxl.write(0xFE, CT.TORQUE_ENABLE, b"\x01"), now_s=0.0)
    chain.feed(dxl.write(2, CT.BUS_WATCHDOG, b"\x01"), now_s=0.0)  # 20 ms, servo 2 only
    assert chain.poll(0.020) == [] and not chain.table(2).watchdog_tripped
    assert chain.check_watchdog(0.021) == [2]
    assert chain.table(2).get(CT.BUS_WATCHDOG) == -1 and not chain.table(1).watchdog_tripped


def test_bus_rejects_bad_settings(rig):
    _, transport, _ = rig
    with pytest.raises(ValueError, match="timeout_s"):
        DynamixelBus(transport, timeout_s=0.0)
    with pytest.raises(ValueError, match="retries"):
        DynamixelBus(transport, retries=-1)
    with pytest.raises(ValueError, match="ids"):
        VirtualServoChain([1, 1])
    with pytest.raises(KeyError, match="no servo 40"):
        VirtualServoChain([1]).table(40)
