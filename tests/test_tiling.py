import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from freightwatch.datasets.tiling import overlap_pixels, tile_starts, tile_windows


@settings(max_examples=200, deadline=None)
@given(
    width=st.integers(1, 900), height=st.integers(1, 900), size=st.integers(1, 300), frac=st.floats(0, 0.9)
)
def test_windows_cover_every_pixel_and_stay_inside(width, height, size, frac):
    overlap = min(int(size * frac), size - 1)
    cover = np.zeros((height, width), dtype=np.int32)
    for w in tile_windows(width, height, size, overlap):
        assert w.col_off >= 0 and w.row_off >= 0
        assert w.col_off + w.width <= width and w.row_off + w.height <= height
        # full-size tiles wherever the raster allows it
        assert w.width == min(size, width) and w.height == min(size, height)
        cover[int(w.row_off): int(w.row_off + w.height), int(w.col_off): int(w.col_off + w.width)] += 1
    assert cover.min() >= 1


def test_neighbours_overlap_by_at_least_the_requested_amount():
    starts = tile_starts(1000, 256, 64)
    assert starts[0] == 0 and starts[-1] == 1000 - 256
    assert all(b - a <= 256 - 64 for a, b in zip(starts, starts[1:], strict=False))


@pytest.mark.parametrize("args", [(0, 10, 0), (10, 0, 0), (10, 5, 5), (10, 5, -1)])
def test_bad_arguments_raise(args):
    with pytest.raises(ValueError):
        tile_starts(*args)


def test_overlap_from_fraction_or_pixels():
    assert overlap_pixels(640, 0.2) == 128
    assert overlap_pixels(640, 100) == 100
