"""Protocol 2.0 codec against the ROBOTIS e-Manual: golden frames, CRC, stuffing, decoder.

Every golden frame below is copied from the e-Manual Protocol 2.0 page (Instruction Details,
XM430-W210 examples); the CRC check value 0xFEE8 is the CRC-16/BUYPASS catalogue value.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gaitforge.hw_drivers import dynamixel as dxl
from gaitforge.hw_drivers.dynamixel import (
    ControlTable,
    Instruction,
    Packet,
    PacketDecoder,
    crc16,
    stuff,
    unstuff,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def u32(v: int) -> bytes:
    return v.to_bytes(4, "little")


GOLDEN_INSTRUCTIONS = [
    (dxl.ping(1), "ff ff fd 00 01 03 00 01 19 4e"),
    (dxl.ping(0xFE), "ff ff fd 00 fe 03 00 01 31 42"),
    (dxl.read(1, 132, 4), "ff ff fd 00 01 07 00 02 84 00 04 00 1d 15"),
    (dxl.write(1, 116, u32(512)), "ff ff fd 00 01 09 00 03 74 00 00 02 00 00 ca 89"),
    (dxl.reboot(1), "ff ff fd 00 01 03 00 08 2f 4e"),
    (dxl.sync_read(132, 4, [1, 2]), "ff ff fd 00 fe 09 00 82 84 00 04 00 01 02 ce fa"),
    (
        dxl.sync_write(116, 4, {1: u32(150), 2: u32(170)}),
        "ff ff fd 00 fe 11 00 83 74 00 04 00 01 96 00 00 00 02 aa 00 00 00 82 87",
    ),
    (
        dxl.bulk_read([(1, 144, 2), (2, 146, 1)]),
        "ff ff fd 00 fe 0d 00 92 01 90 00 02 00 02 92 00 01 00 1a 05",
    ),
]

# (status frame, id, error, params): ping (model 1030, fw 38), read/sync read of Present
# Position 166 and 2079, write/reboot acknowledgement, bulk read of voltage 119 and temperature 36
GOLDEN_STATUS = [
    ("ff ff fd 00 01 07 00 55 00 06 04 26 65 5d", 1, 0, "06 04 26"),
    ("ff ff fd 00 02 07 00 55 00 06 04 26 6f 6d", 2, 0, "06 04 26"),
    ("ff ff fd 00 01 08 00 55 00 a6 00 00 00 8c c0", 1, 0, "a6 00 00 00"),
    ("ff ff fd 00 02 08 00 55 00 1f 08 00 00 ba be", 2, 0, "1f 08 00 00"),
    ("ff ff fd 00 01 04 00 55 00 a1 0c", 1, 0, ""),
    ("ff ff fd 00 01 06 00 55 00 77 00 c3 69", 1, 0, "77 00"),
    ("ff ff fd 00 02 05 00 55 00 24 8b a9", 2, 0, "24"),
]


def test_crc_check_value_and_manual_ping_tail():
    assert crc16(b"123456789") == 0xFEE8
    assert crc16(b"") == 0
    assert crc16(h("ff ff fd 00 01 03 00 01")) == 0x4E19  # the frame ends 19 4E (LE)


def test_crc_matches_the_robotis_sdk_table():
    sdk = pytest.importorskip("dynamixel_sdk.protocol2_packet_handler")
    handler = sdk.Protocol2PacketHandler()
    for data in (b"", b"\x00", bytes(range(256)), b"\xff" * 50, b"gaitforge" * 31):
        assert crc16(data) == handler.updateCRC(0, list(data), len(data))


@pytest.mark.parametrize(("built", "manual"), GOLDEN_INSTRUCTIONS)
def test_builders_reproduce_the_manual_frames(built, manual):
    assert built == h(manual)


@pytest.mark.parametrize(("frame", "dxl_id", "error", "params"), GOLDEN_STATUS)
def test_manual_status_frames_decode_and_re_encode(frame, dxl_id, error, params):
    (pkt,) = PacketDecoder().feed(h(frame))
    assert pkt == Packet(dxl_id, Instruction.STATUS, h(params), error)
    assert pkt.raw == h(frame)
    assert dxl.status(dxl_id, error, h(params)) == h(frame) == pkt.encode()


def test_stuffing_in_a_frame_counts_in_the_length_and_is_removed_on_decode():
    # write FF FF FD 00 to Indirect Data 1 (224): the body 03 E0 00 FF FF FD 00 gains one FD
    frame = dxl.write(1, 224, h("ff ff fd 00"))
    assert frame[5] | frame[6] << 8 == 1 + 2 + 4 + 1 + 2  # inst + addr + data + stuffed FD + crc
    assert frame[7:-2] == h("03 e0 00 ff ff fd fd 00")
    assert crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")
    (pkt,) = PacketDecoder().feed(frame)
    assert pkt.params == h("e0 00 ff ff fd 00")


def test_stuffing_by_hand():
    assert stuff(h("ff ff ff ff fd 01")) == h("ff ff ff ff fd fd 01")  # ROBOTIS forum example
    assert stuff(h("ff ff fd ff ff fd")) == h("ff ff fd fd ff ff fd fd")
    assert stuff(h("ff fd ff ff")) == h("ff fd ff ff")
    assert unstuff(h("ff ff fd fd fd")) == h("ff ff fd fd")


_stuffy = st.lists(st.sampled_from([0xFF, 0xFD, 0x00, 0x55, 0x01]), max_size=64).map(bytes)
_bodies = st.one_of(_stuffy, st.binary(max_size=64))


@given(_bodies)
@settings(max_examples=400, deadline=None)
def test_unstuff_inverts_stuff_and_no_bare_header_survives(body):
    stuffed = stuff(body)
    assert unstuff(stuffed) == body
    at = stuffed.find(b"\xff\xff\xfd")
    while at >= 0:
        assert stuffed[at + 3 : at + 4] == b"\xfd"
        at = stuffed.find(b"\xff\xff\xfd", at + 1)


@given(
    st.one_of(st.integers(0, 252), st.just(0xFE)),
    st.integers(0, 255).filter(lambda i: i != Instruction.STATUS),
    _bodies,
)
@settings(max_examples=300, deadline=None)
def test_encode_decode_round_trip(dxl_id, instruction, params):
    frame = dxl.encode_packet(dxl_id, instruction, params)
    assert PacketDecoder().feed(frame) == [Packet(dxl_id, instruction, params)]


def _stream() -> tuple[bytes, list[Packet]]:
    frames = [dxl.status(1, 0, h("a6 00 00 00")), dxl.write(3, 224, h("ff ff fd 00")), dxl.ping(7)]
    return b"".join(frames), [PacketDecoder().feed(f)[0] for f in frames]


def test_decoder_split_at_every_offset():
    data, expected = _stream()
    for cut in range(len(data) + 1):
        dec = PacketDecoder()
        assert dec.feed(data[:cut]) + dec.feed(data[cut:]) == expected, cut
        assert dec.garbage_bytes == 0 and dec.crc_errors == 0 and dec.buffered == 0


def test_decoder_byte_by_byte_and_two_packets_in_one_feed():
    data, expected = _stream()
    dec = PacketDecoder()
    assert [p for b in data for p in dec.feed(bytes([b]))] == expected
    assert PacketDecoder().feed(data) == expected


@pytest.mark.parametrize(
    "garbage",
    [
        h("00 13 37"),
        h("ff ff fd"),  # a header prefix right before the real header
        h("ff ff fd 00 fd 03 00"),  # a header with the impossible id 0xFD
        h("ff ff fd 00 01 02 00"),  # length 2 < 3
        h("ff ff fd 00 01 ff ff"),  # length beyond max_length
        h("ff ff fd fd ff"),  # a stuffed sequence is not a header
    ],
)
def test_decoder_skips_garbage_before_a_header(garbage):
    data, expected = _stream()
    dec = PacketDecoder()
    assert dec.feed(garbage + data) == expected
    assert dec.garbage_bytes == len(garbage)


def test_bad_crc_is_rejected_counted_and_the_next_frame_still_found():
    seen = []
    dec = PacketDecoder(on_bad_crc=seen.append)
    bad = bytearray(dxl.status(4, 0, u32(2048)))
    bad[-1] ^= 0x01
    good = dxl.ping(9)
    assert dec.feed(bytes(bad) + good) == [Packet(9, Instruction.PING)]
    assert dec.crc_errors == 1 and seen == [4]
    assert dec.garbage_bytes == len(bad)


def test_bytes_needed_and_reset():
    frame = dxl.status(1, 0, u32(7))  # 15 bytes
    dec = PacketDecoder()
    assert dec.bytes_needed() == 11
    dec.feed(frame[:8])
    assert dec.bytes_needed() == 7
    dec.reset()
    assert dec.buffered == 0 and dec.feed(frame) != []


def test_control_table_addresses_and_sizes_from_the_manual():
    ct = ControlTable
    expected = {
        ct.RETURN_DELAY_TIME: (9, 1), ct.OPERATING_MODE: (11, 1), ct.TORQUE_ENABLE: (64, 1),
        ct.HARDWARE_ERROR_STATUS: (70, 1), ct.BUS_WATCHDOG: (98, 1), ct.GOAL_POSITION: (116, 4),
        ct.PRESENT_CURRENT: (126, 2), ct.PRESENT_VELOCITY: (128, 4), ct.PRESENT_POSITION: (132, 4),
    }  # fmt: skip
    assert {item: (int(item), item.size) for item in expected} == expected
    assert ct.PRESENT_POSITION.signed and not ct.PRESENT_POSITION.writable
    items = sorted(ct, key=int)
    assert all(a + a.size <= b for a, b in zip(items, items[1:], strict=False))  # no overlap


def test_values_and_blocks():
    assert dxl.encode_value(ControlTable.PRESENT_VELOCITY, -3) == h("fd ff ff ff")
    assert dxl.decode_value(ControlTable.PRESENT_CURRENT, h("9c ff")) == -100
    block = h("9c ff") + h("fd ff ff ff") + u32(3000)  # one sync read of 126..135
    assert dxl.decode_block(126, block) == {
        ControlTable.PRESENT_CURRENT: -100,
        ControlTable.PRESENT_VELOCITY: -3,
        ControlTable.PRESENT_POSITION: 3000,
    }
    with pytest.raises(ValueError, match="TORQUE_ENABLE"):
        dxl.encode_value(ControlTable.TORQUE_ENABLE, 256)


def test_error_names_follow_the_manual():
    assert dxl.describe_error(0x07) == "Access Error"
    assert dxl.describe_error(0x80) == "Alert"
    assert dxl.describe_error(0x84) == "Data Range Error, Alert"
    assert dxl.describe_error(0x00) == "No Error"


def test_builders_reject_bad_arguments():
    with pytest.raises(ValueError, match="dxl_id"):
        dxl.ping(0xFD)
    with pytest.raises(ValueError, match="data\\[2\\]"):
        dxl.sync_write(116, 4, {2: b"\x00\x01"})
    with pytest.raises(ValueError, match="address"):
        dxl.read(1, 70000, 1)
    with pytest.raises(ValueError, match="dxl_id"):
        dxl.sync_read(132, 4, [0xFE])
