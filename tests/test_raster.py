import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from freightwatch.datasets.geo import write_geotiff
from freightwatch.datasets.raster import Scene, gsd_metres, parse_time, read_info
from freightwatch.errors import RasterError


def test_metadata_of_projected_scene(raster_factory):
    p = raster_factory(size=(80, 40), gsd=0.5, tags={"ACQUISITION_TIME": "2016-02-13T02:30:00Z"})
    info = read_info(p)
    assert (info.width, info.height, info.count, info.dtype) == (80, 40, 3, "uint8")
    assert info.crs == "EPSG:32651"
    assert info.gsd == pytest.approx(0.5)
    assert info.acquired.isoformat() == "2016-02-13T02:30:00+00:00"


def test_gsd_of_geographic_scene_is_in_metres(tmp_path):
    # 1e-5 degrees at 40N: ~0.85 m east-west, ~1.11 m north-south
    t = Affine(1e-5, 0, 124.4, 0, -1e-5, 40.1)
    p = write_geotiff(tmp_path / "geo.tif", np.zeros((3, 10, 10), np.uint8), "EPSG:4326", t)
    gsd = read_info(p).gsd
    assert 0.9 < gsd < 1.05


def test_gsd_handles_feet():
    from rasterio.crs import CRS

    crs = CRS.from_epsg(2263)  # NAD83 / New York Long Island (ftUS)
    assert gsd_metres(crs, Affine(1, 0, 0, 0, -1, 0), 10, 10) == pytest.approx(0.3048, rel=1e-3)


def test_acquisition_time_from_sidecar(raster_factory):
    p = raster_factory()
    p.with_suffix(".json").write_text(json.dumps({"properties": {"datetime": "2017-03-01T03:00:00Z"}}))
    assert read_info(p).acquired.year == 2017


def test_tiff_datetime_format():
    assert parse_time("2016:02:13 10:20:30").isoformat() == "2016-02-13T10:20:30+00:00"
    assert parse_time("not a time") is None


def test_uint16_is_stretched_once_per_scene(raster_factory):
    p = raster_factory(dtype="uint16", size=(300, 200))
    with Scene(p) as s:
        a, _ = s.read_rgb(Window(0, 0, 100, 100))
        b, _ = s.read_rgb(Window(200, 100, 100, 100))
        st = s.stretch
        assert a.dtype == np.uint8 and b.dtype == np.uint8
        assert st is s.stretch  # computed once
        assert 0 < st.low[0] < st.high[0] < 4095
        # stretch spans the range: ~2% of pixels saturate at each end
        assert 0.005 < (a == 0).mean() < 0.06 and 0.005 < (a == 255).mean() < 0.06


def test_float_scene_with_nodata_is_masked(raster_factory, tmp_path):
    arr = np.random.default_rng(0).random((3, 20, 30)).astype("float32")
    arr[:, :5, :] = -9999
    p = write_geotiff(tmp_path / "f.tif", arr, "EPSG:32651", Affine(3, 0, 0, 0, -3, 0), nodata=-9999)
    with Scene(p) as s:
        rgb, mask = s.read_rgb()
        assert not mask[:5].any() and mask[5:].all()
        assert (rgb[:5] == 0).all()
        assert s.stretch.high[0] <= 1.0  # nodata did not enter the statistics


def test_uint8_passes_through_unchanged(raster_factory):
    p = raster_factory()
    with Scene(p) as s, rasterio.open(p) as ds:
        rgb, mask = s.read_rgb()
        assert mask.all()
        np.testing.assert_array_equal(rgb, ds.read().transpose(1, 2, 0))


def test_four_band_bgrn_uses_colour_interpretation(tmp_path):
    from rasterio.enums import ColorInterp

    arr = np.stack([np.full((8, 8), v, np.uint8) for v in (10, 20, 30, 40)])  # B, G, R, N
    p = write_geotiff(tmp_path / "bgrn.tif", arr, "EPSG:32651", Affine(3, 0, 0, 0, -3, 0))
    with rasterio.open(p, "r+") as ds:
        ds.colorinterp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined]
    with Scene(p) as s:
        assert s.bands == (3, 2, 1)
        rgb, _ = s.read_rgb()
        assert tuple(rgb[0, 0]) == (30, 20, 10)


def test_eight_band_needs_a_choice_and_accepts_one(raster_factory):
    p = raster_factory(bands=8)
    with pytest.raises(RasterError, match="8 band"):
        Scene(p)
    with Scene(p, bands=(5, 3, 2)) as s:
        assert s.read_rgb()[0].shape[-1] == 3


def test_single_band_needs_explicit_grey_choice(raster_factory):
    p = raster_factory(bands=1)
    with pytest.raises(RasterError, match=r"bands=\(1, 1, 1\)"):
        Scene(p)
    with Scene(p, bands=(1, 1, 1)) as s:
        rgb, _ = s.read_rgb()
        assert (rgb[..., 0] == rgb[..., 2]).all()


def test_band_choice_out_of_range(raster_factory):
    with pytest.raises(RasterError, match="does not fit"):
        Scene(raster_factory(), bands=(1, 2, 4))


def test_boundless_window_is_padded_and_masked(raster_factory):
    p = raster_factory(size=(50, 50))
    with Scene(p) as s:
        rgb, mask = s.read_rgb(Window(40, 40, 20, 20))
        assert rgb.shape == (20, 20, 3)
        assert mask[:10, :10].all() and not mask[10:, :].any() and not mask[:, 10:].any()


@pytest.mark.parametrize("content,needle", [(b"", "empty"), (b"hello, not a tiff", "not a readable raster")])
def test_bad_files_raise_raster_error_naming_the_file(tmp_path, content, needle):
    p = tmp_path / "bad.tif"
    p.write_bytes(content)
    with pytest.raises(RasterError) as err:
        Scene(p)
    assert "bad.tif" in str(err.value) and needle in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(RasterError, match="does not exist"):
        read_info(tmp_path / "nope.tif")


def test_all_nodata_scene_is_reported(tmp_path):
    arr = np.zeros((3, 10, 10), np.uint16)
    p = write_geotiff(tmp_path / "empty.tif", arr, "EPSG:32651", Affine(1, 0, 0, 0, -1, 0), nodata=0)
    with Scene(p) as s, pytest.raises(RasterError, match="all nodata"):
        s.read_rgb()


def test_uint8_windows_inside_and_past_the_border(tmp_path):
    """8-bit pixels come back as stored; nodata pixels and padding are zero and masked."""
    arr = np.random.default_rng(1).integers(10, 250, (3, 40, 50)).astype("uint8")
    arr[:, 3, 4] = 7  # nodata
    p = write_geotiff(tmp_path / "n.tif", arr, "EPSG:32651", Affine(0.5, 0, 0, 0, -0.5, 0), nodata=7)
    with Scene(p) as s:
        rgb, mask = s.read_rgb(Window(2, 2, 20, 20))  # wholly inside
        assert not mask[1, 2] and mask.sum() == 20 * 20 - 1 and (rgb[1, 2] == 0).all()
        expect = arr[:, 2:22, 2:22].transpose(1, 2, 0).copy()
        expect[1, 2] = 0
        np.testing.assert_array_equal(rgb, expect)
        rgb, mask = s.read_rgb(Window(40, 30, 20, 20))  # 10 x 10 inside, the rest padding
        assert mask[:10, :10].all() and not mask[10:].any() and not mask[:, 10:].any()
        np.testing.assert_array_equal(rgb[:10, :10], arr[:, 30:, 40:].transpose(1, 2, 0))
        assert (rgb[10:] == 0).all() and (rgb[:, 10:] == 0).all()
        rgb2, _ = s.read_rgb(Window(2, 2, 20, 20))
        rgb2[:] = 1  # a returned window is the caller's: changing it changes no later read
        np.testing.assert_array_equal(s.read_rgb(Window(2, 2, 20, 20))[0], expect)
