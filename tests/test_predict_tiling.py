"""Tile plans, blending weights and the streaming blender's memory bound."""

from __future__ import annotations

import numpy as np
import pytest

from cegate_cli.errors import InputError
from cegate_cli.predict.blend import BlendAccumulator, RowAssembler
from cegate_cli.predict.tiling import axis_starts, axis_weight, pad_to, plan_tiles


@pytest.mark.parametrize("length,size,overlap", [(1000, 512, 64), (513, 512, 64), (2048, 224, 32), (700, 96, 0), (97, 96, 95)])
def test_tiles_cover_the_axis_with_exactly_the_overlap(length, size, overlap):
    starts = axis_starts(length, size, overlap)
    assert starts[0] == 0
    assert starts[-1] + size >= length  # covered
    assert len(starts) == 1 or starts[-2] + size < length  # and no tile more than needed
    assert set(np.diff(starts)) <= {size - overlap}


def test_scene_smaller_than_a_tile_gets_one_tile_rounded_up_to_the_patch_multiple():
    plan = plan_tiles(37, 100, tile=512, overlap=64, multiple_of=16)
    assert (plan.tile_height, plan.tile_width) == (48, 112)
    assert len(plan) == 1
    (tile,) = list(plan)
    assert (tile.valid_height, tile.valid_width) == (37, 100)
    assert tile.borders == (True, True, True, True)


def test_plan_is_row_major_and_non_square():
    plan = plan_tiles(300, 130, tile=64, overlap=16, multiple_of=16)
    tiles = list(plan)
    assert [t.index for t in tiles] == list(range(len(plan)))
    assert [(t.row, t.col) for t in tiles] == sorted((t.row, t.col) for t in tiles)
    covered = np.zeros((300, 130), dtype=int)
    for t in tiles:
        covered[t.y : t.y + t.valid_height, t.x : t.x + t.valid_width] += 1
    assert covered.min() >= 1


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        (dict(tile=100, overlap=10, multiple_of=16), "multiple of 16"),
        (dict(tile=64, overlap=64), "overlap 64"),
        (dict(tile=64, overlap=-1), "overlap -1"),
    ],
)
def test_bad_tiling_values_are_user_errors(kwargs, fragment):
    with pytest.raises(InputError, match=fragment):
        plan_tiles(100, 100, **kwargs)


def test_weight_is_positive_inside_and_flat_on_scene_borders():
    plan = plan_tiles(300, 300, tile=128, overlap=32)
    tiles = list(plan)
    corner, middle = tiles[0], tiles[len(tiles) // 2]
    assert corner.borders[0] and corner.borders[2] and not corner.borders[1]
    w = plan.weight(corner)
    assert w.min() > 0
    assert np.all(w[0, :96] == 1.0) and np.all(w[:96, 0] == 1.0)  # top and left lie on the border
    assert w[-1, 0] < 0.01 and w[0, -1] < 0.01  # inner sides taper
    inner = plan.weight(middle)
    assert not any(middle.borders) and inner.min() > 0 and inner.max() == 1.0


def test_ramps_of_exact_overlap_sum_to_one():
    left = axis_weight(64, 16, taper_start=False, taper_end=True)
    right = axis_weight(64, 16, taper_start=True, taper_end=False)
    np.testing.assert_allclose(left[48:] + right[:16], 1.0, atol=1e-12)


def test_reflect_padding_handles_strips_thinner_than_the_pad():
    one_row = np.arange(5, dtype=np.float32).reshape(1, 1, 5)
    padded = pad_to(one_row, 16, 16)
    assert padded.shape == (1, 16, 16)
    np.testing.assert_array_equal(padded[0, :, 0], 0.0)  # a 1-pixel axis repeats its edge
    two = np.array([[[1.0, 2.0]]])
    assert pad_to(two, 1, 6)[0, 0].tolist() == [1.0, 2.0, 1.0, 2.0, 1.0, 2.0]


def _run_blender(height: int, width: int) -> tuple[int, np.ndarray]:
    plan = plan_tiles(height, width, tile=64, overlap=16)
    written = np.full((height, width), 77, dtype=np.uint8)

    def sink(row, ids, confidence, probabilities):
        assert row % 128 == 0
        written[row : row + ids.shape[0]] = ids

    assembler = RowAssembler(height, width, strip_rows=128, cell=32, with_confidence=False, sink=sink)
    blender = BlendAccumulator(plan, 3, cell=32, assembler=assembler)
    for tile in plan:
        # class = (global row // 7) % 3, a pattern every tile agrees on
        rows = np.arange(tile.y, tile.y + tile.height)[:, None].repeat(tile.width, 1)
        probs = np.eye(3, dtype=np.float32)[(rows // 7) % 3].transpose(2, 0, 1)
        weight = plan.weight(tile)
        blender.add(tile, probs * weight, weight)
    assert blender.pending == 0 and assembler.pending == 0
    expected = ((np.arange(height)[:, None] // 7) % 3).repeat(width, 1)
    np.testing.assert_array_equal(written, expected)
    return blender.peak_cells, written


def test_blender_memory_does_not_grow_with_scene_height():
    short_peak, _ = _run_blender(256, 200)
    tall_peak, _ = _run_blender(1024, 200)
    assert tall_peak == short_peak
    # only about (tile + one row of cells) of the width is ever held
    assert tall_peak <= (64 // 32 + 2) * (200 // 32 + 1)


def test_blender_rejects_tiles_out_of_order():
    plan = plan_tiles(100, 100, tile=64, overlap=16)
    assembler = RowAssembler(100, 100, strip_rows=64, cell=32, with_confidence=False, sink=lambda *a: None)
    blender = BlendAccumulator(plan, 2, cell=32, assembler=assembler)
    tiles = list(plan)
    with pytest.raises(RuntimeError, match="row-major"):
        blender.add(tiles[1], np.zeros((2, 64, 64), np.float32), np.ones((64, 64), np.float32))
