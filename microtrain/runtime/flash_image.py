"""The checkpoint layout of ``include/mt_flash.h`` in Python, and a flash that behaves like one.

The C twin is ``src/checkpoint/``: ``slot_pages`` / ``scan`` / ``encode_slot`` here read and
write exactly the bytes ``mt_checkpoint_slot_pages`` / ``mt_checkpoint_scan`` /
``mt_checkpoint_save`` do, so tests can build foreign, torn or corrupt images and tools can
read a device's flash dump. ``FlashSim`` is a flash region with the semantics the C code
assumes (erase to 0xFF, program only clears bits, page granularity) and a deterministic power
cut: the cut-th operation leaves its page in a scrambled state and every later operation
fails, as nothing runs after a reset.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib

MAGIC = 0x4B43544D
VERSION = 1
HEADER_BYTES = 32
MAX_WRITE_UNIT = 256
STATUS = {0: "ok", 1: "empty", 2: "torn", 3: "foreign", 4: "size", 5: "bad_crc",
          -1: "flash error", -2: "bad parameters", -3: "region too small"}
REASONS = {"torn": "unreadable header (an interrupted write, or not a checkpoint)",
           "foreign": "written for another model or update scheme",
           "size": "its state size differs from this model's",
           "bad_crc": "its data does not match its CRC (corrupt)"}
"""Why a slot that is not empty was ignored, as the driver prints it."""


def header_area(write_unit: int) -> int:
    return -(-HEADER_BYTES // write_unit) * write_unit


def slot_pages(page_size: int, write_unit: int, payload_bytes: int) -> int:
    """Pages of one slot (0 for a geometry mt_flash.h does not allow)."""
    if not (1 <= write_unit <= MAX_WRITE_UNIT and write_unit & (write_unit - 1) == 0
            and page_size >= write_unit and page_size % write_unit == 0):
        return 0
    return -(-(header_area(write_unit) + payload_bytes) // page_size)


def encode_header(model_id: int, sequence: int, payload: bytes) -> bytes:
    head = struct.pack("<IHHIIIII", MAGIC, VERSION, HEADER_BYTES, model_id, sequence & 0xFFFFFFFF, len(payload),
                       zlib.crc32(payload), 0)
    return head + struct.pack("<I", zlib.crc32(head))


def encode_slot(model_id: int, sequence: int, payload: bytes, page_size: int, write_unit: int) -> bytes:
    """The bytes of a whole slot holding one checkpoint (erased bytes 0xFF)."""
    n = slot_pages(page_size, write_unit, len(payload))
    area = header_area(write_unit)
    body = encode_header(model_id, sequence, payload).ljust(area, b"\xff") + payload
    return body.ljust(n * page_size, b"\xff")


@dataclasses.dataclass
class SlotInfo:
    status: str
    sequence: int | None = None
    model_id: int | None = None
    payload_bytes: int | None = None


def scan(image: bytes, page_size: int, write_unit: int, model_id: int, payload_bytes: int) -> list[SlotInfo]:
    """The validation of mt_checkpoint_scan for both slots of a region image."""
    n = slot_pages(page_size, write_unit, payload_bytes)
    if n == 0:
        raise ValueError(f"page size {page_size} / write unit {write_unit} not as mt_flash.h documents")
    out = []
    for slot in range(2):
        base = slot * n * page_size
        head = image[base: base + HEADER_BYTES]
        if head == b"\xff" * HEADER_BYTES:
            out.append(SlotInfo("empty"))
            continue
        magic, version, hbytes, mid, seq, size, crc, _ = struct.unpack("<IHHIIIII", head[:28])
        if magic != MAGIC or version != VERSION or hbytes != HEADER_BYTES or \
                struct.unpack("<I", head[28:])[0] != zlib.crc32(head[:28]):
            out.append(SlotInfo("torn"))
            continue
        info = SlotInfo("ok", seq, mid, size)
        area = header_area(write_unit)
        if mid != model_id:
            info.status = "foreign"
        elif size != payload_bytes or size > n * page_size - area:
            info.status = "size"
        elif zlib.crc32(image[base + area: base + area + size]) != crc:
            info.status = "bad_crc"
        out.append(info)
    return out


def newer(a: int, b: int) -> bool:
    """Sequence a is newer than b: (int32_t)(a - b) > 0."""
    return 0 < ((a - b) & 0xFFFFFFFF) < 0x80000000


def newest(slots: list[SlotInfo]) -> int | None:
    """The slot mt_checkpoint_restore loads: the valid one with the newer sequence number."""
    best = None
    for k, s in enumerate(slots):
        if s.status == "ok" and (best is None or newer(s.sequence, slots[best].sequence)):
            best = k
    return best


def scramble(page: bytearray, op: int, erase: bool) -> None:
    """What a power cut leaves in the page being erased or programmed: each byte gains (erase) or
    loses (program) a pseudo-random set of bits, a pure function of the operation number."""
    state = (op * 0x9E3779B1 + 0x7F4A7C15) & 0xFFFFFFFF
    for i in range(len(page)):
        state = (state * 1664525 + 1013904223) & 0xFFFFFFFF
        noise = state >> 24
        page[i] = (page[i] | noise) if erase else (page[i] & noise)


class PowerCut(Exception):
    """Raised by FlashSim when its cut operation happens (the caller's 'reset')."""


class FlashSim:
    """A flash region of ``pages`` pages with mt_flash.h's semantics, enforced: a program that
    is unaligned, crosses a page or writes a byte not erased since its last program is an error."""

    def __init__(self, pages: int, page_size: int, write_unit: int, cut_at: int | None = None) -> None:
        self.data = bytearray(b"\xff" * (pages * page_size))
        self.pages, self.page_size, self.write_unit = pages, page_size, write_unit
        self.programmed = bytearray(pages * page_size)  # 1 where programmed since the last erase
        self.ops = 0  # erase + program operations so far
        self.cut_at = cut_at  # the operation (1-based) during which power is lost
        self.dead = False
        self.bytes_programmed = 0
        self.pages_erased = 0

    def _begin(self) -> bool:
        if self.dead:
            return False
        self.ops += 1
        return True

    def _cut(self, page: int, erase: bool) -> bool:
        if self.cut_at is None or self.ops != self.cut_at:
            return False
        lo = page * self.page_size
        view = bytearray(self.data[lo: lo + self.page_size])
        scramble(view, self.ops, erase)
        self.data[lo: lo + self.page_size] = view
        self.dead = True
        return True

    def erase_page(self, page: int) -> int:
        if not self._begin() or not 0 <= page < self.pages:
            return -1
        if self._cut(page, erase=True):
            return -1
        lo = page * self.page_size
        self.data[lo: lo + self.page_size] = b"\xff" * self.page_size
        self.programmed[lo: lo + self.page_size] = bytes(self.page_size)
        self.pages_erased += 1
        return 0

    def program(self, offset: int, data: bytes) -> int:
        n = len(data)
        if not self._begin():
            return -1
        one_page = offset // self.page_size == (offset + n - 1) // self.page_size
        if offset % self.write_unit or n % self.write_unit or n == 0 or offset + n > len(self.data) or \
                not one_page or any(self.programmed[offset:offset + n]):
            raise ValueError(f"program({offset}, {n} bytes) breaks the flash rules (alignment {self.write_unit}, "
                             f"one page of {self.page_size}, erased bytes only)")
        if self._cut(offset // self.page_size, erase=False):
            return -1
        for i, b in enumerate(data):
            self.data[offset + i] &= b
        self.programmed[offset:offset + n] = b"\x01" * n
        self.bytes_programmed += n
        return 0

    def read(self, offset: int, n: int) -> bytes | None:
        if self.dead or offset < 0 or offset + n > len(self.data):
            return None
        return bytes(self.data[offset: offset + n])
