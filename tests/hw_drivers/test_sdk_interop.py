"""Interop with an independent implementation: the official ROBOTIS `dynamixel_sdk` drives our
virtual Dynamixel bus (a `VirtualServoChain` of ids 1..12 behind a `VirtualDeviceServer` on a
real pseudo-terminal at 1 Mbps, served in a thread) as it would a U2D2 and twelve X-series
servos: ping and broadcast ping, read/write of 1- and 4-byte items with the status error byte,
GroupSyncWrite and GroupSyncRead for all 12 servos. Where the SDK transmits, the bytes the
device received are also compared with what our own codec builds for the same request.

Known quirk, deliberately not tested: that SDK does not byte-stuff the packets it sends (its
`addStuffing` result is dropped), so no value here contains FF FF FD.
"""

from __future__ import annotations

import sys
import threading

import pytest

from gaitforge.hw_drivers import dynamixel as dxl
from gaitforge.hw_drivers.dynamixel import ControlTable as CT
from gaitforge.hw_drivers.dynamixel import ErrorCode
from gaitforge.hw_drivers.virtual import PtyPort, VirtualDeviceServer
from gaitforge.hw_drivers.virtual_dynamixel import VirtualServoChain

sdk = pytest.importorskip("dynamixel_sdk")

IDS = list(range(1, 13))
BAUD = 1_000_000
XL430_MODEL = 1060


def present_ticks(i: int) -> int:
    return 1000 + 100 * i  # distinct per servo; no byte pattern FF FF FD


def goal_ticks(i: int) -> int:
    return 2048 + 37 * i


def le32(value: int) -> list[int]:
    """The SDK's own way of splitting a 4-byte value for GroupSyncWrite."""
    return [sdk.DXL_LOBYTE(sdk.DXL_LOWORD(value)), sdk.DXL_HIBYTE(sdk.DXL_LOWORD(value)),
            sdk.DXL_LOBYTE(sdk.DXL_HIWORD(value)), sdk.DXL_HIBYTE(sdk.DXL_HIWORD(value))]


@pytest.fixture
def bus(monkeypatch):
    """(port handler, packet handler, chain, server): the SDK connected to 12 virtual servos."""
    # The SDK waits 2 x LATENCY_TIMER + 2 ms for a status (its model of a U2D2's 16 ms USB
    # latency timer). Our servos are a thread of this process on a shared machine: give them
    # 100 ms, as one would for a slow USB adapter.
    monkeypatch.setattr(sys.modules["dynamixel_sdk.port_handler"], "LATENCY_TIMER", 50)
    chain = VirtualServoChain(IDS)
    for i in IDS:
        chain.table(i).set(CT.PRESENT_POSITION, present_ticks(i))
        chain.table(i).set(CT.PRESENT_VELOCITY, -5 * i)
        chain.table(i).set(CT.PRESENT_CURRENT, 3 * i)
    server = VirtualDeviceServer(chain, PtyPort(), baud=BAUD)
    # The SDK busy-polls the port (pyserial timeout 0) and so holds the GIL; hand it over more
    # often than every 5 ms, so the device thread answers well within the SDK's ~34 ms timeout
    # even on a loaded machine.
    switch_interval_s = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    stop = threading.Event()
    thread = threading.Thread(target=server.serve, args=(stop,), daemon=True)
    thread.start()
    port = sdk.PortHandler(server.port.path)
    try:
        assert port.openPort() and port.setBaudRate(BAUD)
        yield port, sdk.PacketHandler(2.0), chain, server
    finally:
        if port.is_open:
            port.closePort()
        stop.set()
        thread.join(timeout=5)
        server.port.close()
        sys.setswitchinterval(switch_interval_s)


def test_ping_finds_every_servo_and_only_those(bus):
    port, ph, chain, server = bus
    for i in IDS:
        assert ph.ping(port, i) == (XL430_MODEL, sdk.COMM_SUCCESS, 0)
    assert ph.ping(port, 13)[1] == sdk.COMM_RX_TIMEOUT
    assert dxl.ping(1) in bytes(server.received)  # the SDK's ping is our ping, byte for byte
    assert dxl.ping(1)[-2:] == b"\x19\x4e"  # the e-Manual's CRC for a ping to id 1
    found, result = ph.broadcastPing(port)
    assert result == sdk.COMM_SUCCESS
    assert found == {i: [XL430_MODEL, 46] for i in IDS}


def test_read_and_write_four_byte_items(bus):
    port, ph, chain, server = bus
    assert ph.write4ByteTxRx(port, 3, CT.GOAL_POSITION, 3000) == (sdk.COMM_SUCCESS, 0)
    assert chain.table(3).get(CT.GOAL_POSITION) == 3000
    assert dxl.write(3, CT.GOAL_POSITION, dxl.encode_value(CT.GOAL_POSITION, 3000)) \
        in bytes(server.received)
    assert ph.read4ByteTxRx(port, 3, CT.GOAL_POSITION) == (3000, sdk.COMM_SUCCESS, 0)
    for i in IDS:
        assert ph.read4ByteTxRx(port, i, CT.PRESENT_POSITION) == (present_ticks(i),
                                                                   sdk.COMM_SUCCESS, 0)
    velocity, result, _ = ph.read4ByteTxRx(port, 2, CT.PRESENT_VELOCITY)
    assert result == sdk.COMM_SUCCESS and velocity == 2**32 - 10  # -10, two's complement
    assert ph.read2ByteTxRx(port, 4, CT.MODEL_NUMBER) == (XL430_MODEL, sdk.COMM_SUCCESS, 0)


def test_status_errors_reach_the_sdk_in_the_error_byte(bus):
    port, ph, chain, _ = bus
    assert ph.write1ByteTxRx(port, 2, CT.TORQUE_ENABLE, 1) == (sdk.COMM_SUCCESS, 0)
    assert chain.table(2).torque_enabled
    result, error = ph.write1ByteTxRx(port, 2, CT.OPERATING_MODE, 1)  # EEPROM: locked
    assert result == sdk.COMM_SUCCESS and error == ErrorCode.ACCESS_ERROR
    assert "not available" in ph.getRxPacketError(error)
    assert chain.table(2).get(CT.OPERATING_MODE) == 3  # unchanged
    result, error = ph.write4ByteTxRx(port, 2, CT.GOAL_POSITION, 5000)  # past Max Position
    assert result == sdk.COMM_SUCCESS and error == ErrorCode.DATA_LIMIT_ERROR
    assert ph.read1ByteTxRx(port, 2, CT.HARDWARE_ERROR_STATUS) == (0, sdk.COMM_SUCCESS, 0)
    chain.alert(2, dxl.HardwareError.OVERHEATING)
    value, result, error = ph.read1ByteTxRx(port, 2, CT.HARDWARE_ERROR_STATUS)
    assert (value, result) == (dxl.HardwareError.OVERHEATING, sdk.COMM_SUCCESS)
    assert error == dxl.ALERT_BIT and "Hardware error" in ph.getRxPacketError(error)


def test_group_sync_write_sets_all_twelve_goals(bus):
    port, ph, chain, server = bus
    group = sdk.GroupSyncWrite(port, ph, CT.GOAL_POSITION, 4)
    for i in IDS:
        assert group.addParam(i, le32(goal_ticks(i)))
    assert group.txPacket() == sdk.COMM_SUCCESS
    assert ph.ping(port, 1)[1] == sdk.COMM_SUCCESS  # a round trip: the write was served
    assert {i: chain.table(i).get(CT.GOAL_POSITION) for i in IDS} == \
        {i: goal_ticks(i) for i in IDS}
    ours = dxl.sync_write(CT.GOAL_POSITION, 4, {i: dxl.encode_value(CT.GOAL_POSITION,
                                                                    goal_ticks(i)) for i in IDS})
    assert ours in bytes(server.received)  # the SDK's packet is ours, byte for byte


def test_group_sync_read_of_twelve_servos(bus):
    port, ph, chain, server = bus
    group = sdk.GroupSyncRead(port, ph, CT.PRESENT_POSITION, 4)
    for i in IDS:
        assert group.addParam(i)
    assert group.txRxPacket() == sdk.COMM_SUCCESS
    assert dxl.sync_read(CT.PRESENT_POSITION, 4, IDS) in bytes(server.received)
    for i in IDS:
        assert group.isAvailable(i, CT.PRESENT_POSITION, 4)
        assert group.getData(i, CT.PRESENT_POSITION, 4) == present_ticks(i)
    # the block HardwareBody reads every tick: current(2) velocity(4) position(4) from 126
    block = sdk.GroupSyncRead(port, ph, CT.PRESENT_CURRENT, 10)
    for i in IDS:
        block.addParam(i)
    for _ in range(3):  # and again: a sync read is repeatable on the same group
        assert block.txRxPacket() == sdk.COMM_SUCCESS
        for i in IDS:
            assert block.getData(i, CT.PRESENT_CURRENT, 2) == 3 * i
            assert block.getData(i, CT.PRESENT_VELOCITY, 4) == 2**32 - 5 * i
            assert block.getData(i, CT.PRESENT_POSITION, 4) == present_ticks(i)
    chain.table(7).set(CT.PRESENT_POSITION, 3333)  # the next read sees the device change
    assert block.txRxPacket() == sdk.COMM_SUCCESS
    assert block.getData(7, CT.PRESENT_POSITION, 4) == 3333
