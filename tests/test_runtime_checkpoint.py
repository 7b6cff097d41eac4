"""Flash checkpoints (include/mt_flash.h, src/checkpoint/): the C code against its Python twin
(microtrain/runtime/flash_image.py) and zlib, and power cut at every flash operation of a run
of saves: the restored state is always exactly the last committed checkpoint."""

from __future__ import annotations

import ctypes
import zlib

import numpy as np
import pytest
from runtime_harness.rt import runtime

from microtrain.runtime import cbind
from microtrain.runtime import flash_image as fi

pytestmark = pytest.mark.host_c
MODEL_ID = 0x1234ABCD


class Driver:
    """A cbind.Flash whose callbacks go to a FlashSim (kept alive with it)."""

    def __init__(self, sim: fi.FlashSim) -> None:
        self.sim = sim

        def erase(_ctx, page):
            return sim.erase_page(page)

        def program(_ctx, offset, data, n):
            return sim.program(offset, ctypes.string_at(data, n))

        def read(_ctx, offset, data, n):
            got = sim.read(offset, n)
            if got is None:
                return -1
            ctypes.memmove(data, got, n)
            return 0

        self._cbs = (cbind.FlashErase(erase), cbind.FlashProgram(program), cbind.FlashRead(read))
        self.flash = cbind.Flash(*self._cbs, None, sim.page_size, sim.pages, sim.write_unit)


def spans_of(arrays: list[np.ndarray]):
    arr = (cbind.StateSpan * len(arrays))(*[cbind.StateSpan(a.ctypes.data, a.nbytes) for a in arrays])
    return arr, len(arrays)


def make_state(rng, sizes=(37, 5, 130)) -> list[np.ndarray]:
    """Odd sizes and mixed types: spans need not align with write units or pages."""
    return [rng.integers(-128, 128, sizes[0]).astype(np.int8),
            rng.integers(-2**31, 2**31 - 1, sizes[1]).astype(np.int32),
            rng.standard_normal(sizes[2]).astype(np.float32)]


def payload(state: list[np.ndarray]) -> bytes:
    return b"".join(a.tobytes() for a in state)


def test_crc32_is_zlibs(tmp_path_factory):
    lib = runtime(tmp_path_factory)
    assert lib.mt_crc32(0, (ctypes.c_uint8 * 9).from_buffer_copy(b"123456789"), 9) == 0xCBF43926
    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 64, 1000):
        data = rng.integers(0, 256, n).astype(np.uint8)
        buf = (ctypes.c_uint8 * max(n, 1)).from_buffer_copy(data.tobytes() or b"\0")
        assert lib.mt_crc32(0, buf, n) == zlib.crc32(data.tobytes())
        # continuing from a prefix's CRC, as the save streams the spans
        half = n // 2
        first = lib.mt_crc32(0, buf, half)
        assert lib.mt_crc32(first, ctypes.cast(ctypes.addressof(buf) + half, ctypes.POINTER(ctypes.c_uint8)),
                            n - half) == zlib.crc32(data.tobytes())


@pytest.mark.parametrize("page_size,unit,payload_bytes", [(256, 8, 500), (2048, 4, 10), (512, 256, 1), (64, 64, 0),
                                                          (100, 3, 10), (128, 512, 10), (96, 64, 10)])
def test_slot_pages_twin(tmp_path_factory, page_size, unit, payload_bytes):
    lib = runtime(tmp_path_factory)
    flash = cbind.Flash(cbind.FlashErase(), cbind.FlashProgram(), cbind.FlashRead(), None, page_size, 8, unit)
    assert lib.mt_checkpoint_slot_pages(ctypes.byref(flash), payload_bytes) == \
        fi.slot_pages(page_size, unit, payload_bytes)


@pytest.mark.parametrize("page_size,unit", [(256, 8), (128, 1), (512, 256)])
def test_save_writes_the_twins_bytes_and_restores(tmp_path_factory, page_size, unit):
    lib = runtime(tmp_path_factory)
    rng = np.random.default_rng(1)
    state = make_state(rng)
    n = fi.slot_pages(page_size, unit, len(payload(state)))
    sim = fi.FlashSim(2 * n + 1, page_size, unit)
    drv = Driver(sim)
    spans, count = spans_of(state)
    info = cbind.CheckpointInfo()
    expected_slots = []
    for seq in (1, 2, 3):
        assert lib.mt_checkpoint_save(ctypes.byref(drv.flash), MODEL_ID, spans, count, ctypes.byref(info)) == 0
        slot = (seq - 1) % 2
        assert (info.written_slot, info.written_sequence, info.pages_erased) == (slot, seq, n)
        assert info.bytes_programmed == -(-len(payload(state)) // unit) * unit + fi.header_area(unit)
        image = bytes(sim.data[slot * n * page_size:(slot + 1) * n * page_size])
        assert image == fi.encode_slot(MODEL_ID, seq, payload(state), page_size, unit)
        expected_slots.append(payload(state))
        for a in state:  # train a little between checkpoints
            a[:3] += 1
    scanned = fi.scan(bytes(sim.data), page_size, unit, MODEL_ID, len(payload(state)))
    assert [s.sequence for s in scanned] == [3, 2] and fi.newest(scanned) == 0
    # restore: overwrite the RAM state, get checkpoint 3 back
    before = [a.copy() for a in state]
    for a in state:
        a[...] = 0
    assert lib.mt_checkpoint_restore(ctypes.byref(drv.flash), MODEL_ID, spans, count, ctypes.byref(info)) == 0
    assert info.newest == 0 and info.sequence[0] == 3
    assert payload(state) == expected_slots[2] != payload(before)


def test_region_too_small_and_bad_geometry(tmp_path_factory):
    lib = runtime(tmp_path_factory)
    state = make_state(np.random.default_rng(2))
    spans, count = spans_of(state)
    n = fi.slot_pages(256, 8, len(payload(state)))
    drv = Driver(fi.FlashSim(2 * n - 1, 256, 8))
    assert lib.mt_checkpoint_save(ctypes.byref(drv.flash), MODEL_ID, spans, count, None) == -3
    drv = Driver(fi.FlashSim(2 * n, 256, 8))
    drv.flash.write_unit = 6
    assert lib.mt_checkpoint_save(ctypes.byref(drv.flash), MODEL_ID, spans, count, None) == -2


@pytest.mark.parametrize("damage", ["foreign", "size", "bad_crc", "torn"])
def test_foreign_or_corrupt_checkpoints_are_ignored(tmp_path_factory, damage):
    """A checkpoint of another model, of another state size, with a flipped payload bit or a broken
    header is never loaded: restore reports why and leaves the state as it is."""
    lib = runtime(tmp_path_factory)
    state = make_state(np.random.default_rng(3))
    data = payload(state)
    page, unit = 256, 8
    n = fi.slot_pages(page, unit, len(data))
    sim = fi.FlashSim(2 * n, page, unit)
    if damage == "foreign":
        slot = fi.encode_slot(MODEL_ID ^ 1, 7, data, page, unit)
    elif damage == "size":
        slot = fi.encode_slot(MODEL_ID, 7, data[:-4], page, unit)
    else:
        slot = bytearray(fi.encode_slot(MODEL_ID, 7, data, page, unit))
        slot[fi.header_area(unit) + 10 if damage == "bad_crc" else 13] ^= 0x04
    sim.data[:len(slot)] = slot
    drv = Driver(sim)
    spans, count = spans_of(state)
    before = payload(state)
    for a in state:
        a[:] = 0  # what the model's own weights would be
    zeros = payload(state)
    info = cbind.CheckpointInfo()
    assert lib.mt_checkpoint_restore(ctypes.byref(drv.flash), MODEL_ID, spans, count, ctypes.byref(info)) == 1
    assert fi.STATUS[info.status[0]] == damage and fi.STATUS[info.status[1]] == "empty" and info.newest == -1
    assert payload(state) == zeros != before
    assert [s.status for s in fi.scan(bytes(sim.data), page, unit, MODEL_ID, len(data))] == [damage, "empty"]
    # the next save goes to slot 0 (no valid checkpoint anywhere) and is then the one restored
    for a in state:
        a[:] = 1
    assert lib.mt_checkpoint_save(ctypes.byref(drv.flash), MODEL_ID, spans, count, ctypes.byref(info)) == 0
    assert (info.written_slot, info.written_sequence) == (0, 1)


def test_power_cut_at_every_flash_operation(tmp_path_factory):
    """Three checkpoints of a changing state; power cut during each erase and program of all of
    them in turn; restore afterwards gives exactly the last checkpoint whose save completed."""
    lib = runtime(tmp_path_factory)
    page, unit = 128, 16
    rng = np.random.default_rng(4)
    states = []
    state = make_state(rng)
    for _ in range(3):
        states.append(payload(state))
        state = [a + np.ones_like(a) for a in state]
    size = len(states[0])
    n = fi.slot_pages(page, unit, size)

    def run(cut_at):
        sim = fi.FlashSim(2 * n, page, unit, cut_at=cut_at)
        drv = Driver(sim)
        committed = None
        for k, data in enumerate(states):
            arrays = [np.frombuffer(data, np.uint8).copy()]
            spans, count = spans_of(arrays)
            st = lib.mt_checkpoint_save(ctypes.byref(drv.flash), MODEL_ID, spans, count, None)
            if st != 0:
                assert sim.dead and st == -1
                break
            committed = k
        return sim, committed

    total = run(None)[0].ops
    per_save = n + -(-size // unit) + fi.header_area(unit) // unit  # erases + payload units + header units
    assert total == 3 * per_save
    outcomes = {"none": 0, 0: 0, 1: 0}
    for cut in range(1, total + 1):
        sim, committed = run(cut)
        # boot again on the same flash
        after = fi.FlashSim(2 * n, page, unit)
        after.data[:] = sim.data
        drv = Driver(after)
        out = np.zeros(size, np.uint8)
        spans, count = spans_of([out])
        st = lib.mt_checkpoint_restore(ctypes.byref(drv.flash), MODEL_ID, spans, count, None)
        if committed is None:
            assert st == 1 and not out.any(), f"cut {cut}: restored something before any commit"
            outcomes["none"] += 1
        else:
            assert st == 0 and out.tobytes() == states[committed], \
                f"cut at operation {cut}: restored state is not checkpoint {committed}"
            outcomes[committed] += 1
        # a cut never produces a valid-looking mixture: every slot is ok, empty or rejected
        for s in fi.scan(bytes(after.data), page, unit, MODEL_ID, size):
            assert s.status in ("ok", "empty", "torn", "bad_crc")
    # cuts during save k leave checkpoint k - 1 (or nothing for the first save)
    assert outcomes == {"none": per_save, 0: per_save, 1: per_save}
