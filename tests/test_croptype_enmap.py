"""H2Crop's hyperspectral stream (mapper.croptype.formats.enmap): EnMAP_data written and read back exactly, files
without it still read, the S2-interpolated cube exact at the S2 band centres and monotone between them, and the
written layout the one the public loader indexes (flyakon/H2Crop, read at its GitHub HEAD)."""

import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from mapper.cli import cli
from mapper.croptype.dataset import DatasetError
from mapper.croptype.formats import enmap as em
from mapper.croptype.formats import load_taxonomy
from mapper.croptype.formats.h2crop import read_h2crop, read_sample
from mapper.croptype.formats.h2cropwrite import write_sample
from mapper.croptype.series import BANDS
from tests import public_dataset_fixtures as fx


@pytest.fixture(scope="module")
def h2_root(tmp_path_factory):
    return fx.write_h2crop(tmp_path_factory.mktemp("h2") / "H2Crop")


def _s2(k: int = 1) -> np.ndarray:
    t, b, r, c = np.meshgrid(np.arange(12), np.arange(10), np.arange(8), np.arange(8), indexing="ij")
    return fx.h2_dn(t, b, r, c, k).astype(np.int16)


def test_interpolation_exact_at_s2_centres_and_monotone_between():
    assert len(em.S2_NM) == len(BANDS) and (np.diff(em.S2_NM) > 0).all()
    np.testing.assert_allclose(em.spectral_weights(em.S2_NM), np.eye(len(BANDS)), atol=1e-12)
    w = em.spectral_weights()
    assert w.shape == (em.N_BANDS, len(BANDS)) and np.allclose(w.sum(axis=1), 1) and (w >= 0).all()
    spectrum = np.array([300, 600, 400, 900, 2500, 3200, 3500, 3600, 2400, 1200.0])
    fine = np.linspace(400, 2500, 2101)
    v = em.spectral_weights(fine) @ spectrum
    for i in range(len(BANDS) - 1):
        lo, hi = em.S2_NM[i], em.S2_NM[i + 1]
        seg = v[(fine >= lo) & (fine <= hi)]
        step = np.sign(spectrum[i + 1] - spectrum[i])
        assert (step * np.diff(seg) >= -1e-9).all()  # monotone towards the next band's value
        assert seg.min() >= min(spectrum[i : i + 2]) - 1e-9 and seg.max() <= max(spectrum[i : i + 2]) + 1e-9
    assert (v[fine <= em.S2_NM[0]] == spectrum[0]).all() and (v[fine >= em.S2_NM[-1]] == spectrum[-1]).all()


def test_aggregate_is_the_30m_mean_of_valid_pixels():
    img = np.arange(2 * 8 * 8, dtype=np.float64).reshape(2, 8, 8) + 1
    img[:, 0, 0] = 0  # no clear observation: left out of its block
    img[:, 6:, 6:] = 0  # a partial block with no valid pixel: 0
    out = em.aggregate(img)
    assert out.shape == (2, 3, 3)
    assert out[0, 0, 0] == img[0, :3, :3].sum() / 8 and out[1, 1, 2] == img[1, 3:6, 6:].mean()
    assert out[0, 2, 1] == img[0, 6:, 3:6].mean() and out[0, 2, 2] == 0


def test_s2_cube_scale_and_values():
    s2 = _s2()
    cube = em.s2_cube(s2)
    assert cube.shape == (218, 3, 3) and cube.dtype == np.int16
    want = em.spectral_weights() @ s2[em.MONTH - 1, :, 3:6, 0:3].reshape(10, -1).mean(axis=1)
    np.testing.assert_array_equal(cube[:, 1, 0], np.round(want))
    assert cube[0, 1, 0] == round(s2[em.MONTH - 1, 0, 3:6, 0:3].mean())  # 418 nm: flat below B2, same DN scale
    with pytest.raises(ValueError, match="no month 13"):
        em.s2_cube(s2, month=13)


def test_enmap_written_and_read_back(h2_root, tmp_path):
    root = shutil.copytree(h2_root, tmp_path / "H2Crop")
    path = root / "h5_data/sample_001.h5"
    with h5py.File(path) as f:
        s2, label, priors = f["S2_data"][...], f["label"][...], f["priors"][...]
    cube = em.s2_cube(s2)
    write_sample(path, s2, label, priors, cube, em.ENMAP_NM)
    got = read_sample(path)
    assert got.enmap.dtype == np.int16 and got.enmap.shape == (218, 3, 3)
    np.testing.assert_array_equal(got.enmap, cube)
    np.testing.assert_allclose(got.enmap_nm, em.ENMAP_NM, rtol=1e-6)  # stored float32
    np.testing.assert_array_equal(got.s2, s2)
    assert read_sample(path, with_hyper=False).enmap is None
    # the fixture's cube has no band centres; a file without EnMAP_data reads, S2 only
    assert read_sample(root / "h5_data/sample_002.h5").enmap_nm is None
    with h5py.File(root / "h5_data/sample_003.h5", "a") as f:
        del f[em.KEY]
    none = read_sample(root / "h5_data/sample_003.h5")
    assert none.enmap is None and none.enmap_nm is None and none.s2.shape == (12, 10, 8, 8)
    tax, ids = load_taxonomy(root / "cascade_labels.csv")
    assert len(read_h2crop(root, tax, ids, max_pixels=None)) == len(read_h2crop(h2_root, tax, ids, max_pixels=None))
    with h5py.File(root / "h5_data/sample_004.h5", "a") as f:
        del f[em.KEY]
        f[em.KEY] = np.zeros((218, 9), np.int16)
    with pytest.raises(DatasetError, match=r"sample_004\.h5: EnMAP_data has shape \(218, 9\)"):
        read_sample(root / "h5_data/sample_004.h5")


def test_cli_export_with_hyper_matches_the_public_loader(tmp_path):
    """The indexing of flyakon/H2Crop, H2Crop/dataset/h2crop_dataset.py (get_data, lines 69-71:
    `h5_dataset['EnMAP_data'][:]`, whole) and configs/hyper_benefits/crops_S2_H_jun.py (in_channels=218) with
    crops_S2_jun.py's MapNormalize (per-band means expanded to (218, 1, 1)): bands on axis 0, then the 30 m grid,
    a third of S2_data's (README: (218, 64, 64) beside (12, 10, 192, 192); transform.py lines 362-364 scale by it)."""
    r = CliRunner().invoke(cli, ["croptype", "export", "--format", "h2crop", "-p", "Henan", "--windows", "1",
                                 "--window-km", "0.8", "--with-hyper", "--out", str(tmp_path / "h2")])  # fmt: skip
    assert r.exit_code == 0, r.output
    (path,) = sorted((tmp_path / "h2/h5_data").glob("*.h5"))
    with h5py.File(path, "r") as h5_dataset:
        hyper_data = h5_dataset["EnMAP_data"][:]
        s2 = h5_dataset["S2_data"][0:6:1]
    mean = np.full(218, 1000.0)[:, None, None]
    assert hyper_data.dtype == np.int16 and hyper_data.ndim == 3 and (hyper_data - mean).shape == hyper_data.shape
    assert hyper_data.shape[0] == 218 and hyper_data.shape[1:] == tuple(-(-n // 3) for n in s2.shape[2:])
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(hyper_data, em.s2_cube(f["S2_data"][...]))
    assert 0 < np.median(hyper_data[hyper_data > 0]) < 10000  # reflectance × 10 000, as S2_data
