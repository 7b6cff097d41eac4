"""Learning that survives power loss, on the emulated Cortex-M7: checkpoints through the
file-backed flash driver (NOR semantics enforced), power cut at operations spread over all the
checkpoint writes of a run, a boot after each that must restore exactly the last committed
checkpoint (never a torn or mixed one), training that continues from a restored checkpoint to
the same final weights as an uninterrupted run, and foreign / resized / corrupt checkpoints
ignored with a message. (docs/RESULTS.md has the campaign at 200+ cut points:
benchmarks/power_cut.py.)"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_tool

from microtrain.codegen.driver_files import parse_checkpoints, read_weights, write_driver_files
from microtrain.codegen.generate_project import generate_project, model_id, state_layout
from microtrain.compiler.pipeline import CompileOptions, compile_training
from microtrain.compiler.toy_graphs import toy_mbnet
from microtrain.runtime import flash_image
from microtrain.scheme import make_scheme
from microtrain.targets import cortex_m7
from microtrain.targets.power_cut import power_cut_campaign

pytestmark = [pytest.mark.target, pytest.mark.host_c]
PAGE, UNIT = 256, 8


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi")
    require_tool("qemu-system-arm", "qemu-system-arm")
    graph = toy_mbnet(0, size=8, classes=5)
    names = [n.name for n in graph.weighted_nodes()]
    scheme = make_scheme(graph, names[-3:], {names[-1]: 1.0, names[-2]: 0.5})
    step = compile_training(graph, scheme, CompileOptions(accumulate=2, momentum=0.5, lr=0.05))
    out = generate_project(step, graph, tmp_path_factory.mktemp("pc") / "proj")
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (8,) + graph.tensors[graph.inputs[0]].shape[1:]).astype(np.int8)
    y = rng.integers(0, 5, 8).astype(np.int32)
    return step, graph, out, x, y


def test_power_cuts_restore_the_last_committed_checkpoint(project, tmp_path):
    step, _, out, x, y = project
    res = power_cut_campaign(out, tmp_path, x, y, steps=12, every=4, cuts=14, lr=0.05, page_size=PAGE,
                             write_unit=UNIT, continue_every=5)
    assert res.mismatches == [] and res.torn == 0, res.mismatches
    assert res.cuts == 14 and len(res.saves) == 3
    assert res.restored_none > 0 and res.restored_previous > 0  # cuts in the first save and in later ones
    assert res.continued == 3 and res.continued_equal == 3  # training went on to the uninterrupted result
    assert res.slots_rejected > 0  # some cuts left a torn slot, which the boot detected and ignored
    state = sum(b for _, b in state_layout(step))
    pages = flash_image.slot_pages(PAGE, UNIT, state)
    assert all(s["pages"] == pages and s["bytes"] == flash_image.header_area(UNIT) + -(-state // UNIT) * UNIT
               for s in res.saves)


@pytest.mark.parametrize("damage", ["foreign", "size", "bad_crc"])
def test_foreign_or_corrupt_checkpoint_is_ignored(project, tmp_path, damage):
    """A checkpoint of another model, of another state size or with a flipped bit: the boot says
    which slot it ignored and why, and training starts from the model's own weights (the same
    losses and weights as a run on an erased flash)."""
    step, graph, out, x, y = project
    payload = bytes(range(256)) * (sum(b for _, b in state_layout(step)) // 256 + 1)
    payload = payload[:sum(b for _, b in state_layout(step))]
    mid = model_id(step)
    if damage == "foreign":
        slot = flash_image.encode_slot(mid ^ 0x5A5A, 9, payload, PAGE, UNIT)
    elif damage == "size":
        slot = flash_image.encode_slot(mid, 9, payload + b"\0\0\0\0", PAGE, UNIT)
    else:
        slot = bytearray(flash_image.encode_slot(mid, 9, payload, PAGE, UNIT))
        slot[flash_image.header_area(UNIT) + 3] ^= 0x10
    runs = {}
    for name in ("erased", damage):
        work = write_driver_files(tmp_path / name, x, y, 6, 0.05,
                                  extra={"restore": 1, "flash_page_size": PAGE, "flash_write_unit": UNIT})
        if name != "erased":
            n = flash_image.slot_pages(PAGE, UNIT, len(payload))
            image = bytes(slot).ljust(2 * n * PAGE, b"\xff")
            (work / "mt_flash.bin").write_bytes(image)
        runs[name] = cortex_m7.run(out, work)
    events = parse_checkpoints(runs[damage].stdout)
    assert events["restored"] is None and events["none"]
    assert [k for k, _ in events["ignored"]] == [0]
    assert flash_image.REASONS[damage].split(" (")[0] in events["ignored"][0][1]
    if damage == "foreign":
        assert f"this model {mid:08x}" in events["ignored"][0][1]
    assert runs[damage].loss_bits == runs["erased"].loss_bits
    got, fresh = (read_weights(out, runs[k].weights_path) for k in (damage, "erased"))
    assert all(np.array_equal(got[n], fresh[n]) for n in fresh)
