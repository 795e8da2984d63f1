"""medsr evaluate: metrics against hand-computed values, world-coordinate comparison, grid offsets, CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.affines import apply_affine
from typer.testing import CliRunner

from medsr.cli.main import app
from medsr.errors import MedsrError
from medsr.evaluation.compare import evaluate_volumes, grid_alignment, on_reference_grid
from medsr.evaluation.noref import no_reference
from medsr.io.volume import make_volume
from medsr.runtime import metrics
from medsr.runtime.normalise import robust_range
from tests.helpers.volumes import blob_volume, make_affine

runner = CliRunner()
DOCS = Path(__file__).resolve().parents[1] / "docs" / "evaluation.md"


def shifted(affine: np.ndarray, shift: tuple[float, float, float]) -> np.ndarray:
    """``affine`` with its voxel grid moved by ``shift`` voxels (index space)."""
    move = np.eye(4)
    move[:3, 3] = shift
    return affine @ move


@pytest.fixture
def hr_affine() -> np.ndarray:
    return make_affine((0.9, 1.1, 1.3), rng=np.random.default_rng(3), flips=(-1, 1, 1))


@pytest.fixture
def hr_data() -> np.ndarray:
    return blob_volume((22, 20, 24), rng=np.random.default_rng(5))


# --- metrics against hand-computed values ------------------------------------------------------------


def test_robust_range_is_the_documented_percentiles() -> None:
    values = np.arange(100, dtype=np.float32).reshape(4, 5, 5)
    lo, hi = robust_range(values, metrics.PERCENTILES, max_voxels=None)
    assert (lo, hi) == pytest.approx((0.495, 98.505))  # 99 * 0.005, 99 * 0.995 (linear interpolation)


def test_psnr_nrmse_mae_by_hand() -> None:
    hr = np.zeros((4, 4, 4), dtype=np.float32)
    sr = hr.copy()
    sr[0] = 3.0  # 16 of 64 voxels off by 3: MSE = 9 * 16 / 64 = 2.25
    mask = np.ones_like(hr, dtype=bool)
    assert metrics.mse(sr, hr, mask) == pytest.approx(2.25)
    assert metrics.psnr(sr, hr, mask, 30.0) == pytest.approx(10 * np.log10(900 / 2.25))
    assert metrics.nrmse(sr, hr, mask, 30.0) == pytest.approx(1.5 / 30.0)
    assert metrics.mae(sr, hr, mask) == pytest.approx(0.75)
    mask[0] = False  # the mask really restricts
    assert metrics.psnr(sr, hr, mask, 30.0) == float("inf")


def test_ssim_of_constant_volumes_by_hand() -> None:
    hr = np.full((16, 16, 16), 100.0, dtype=np.float32)
    sr = np.full_like(hr, 90.0)
    mask = np.ones_like(hr, dtype=bool)
    c1 = (0.01 * 100.0) ** 2  # variances are 0, so SSIM = (2 ab + C1) / (a^2 + b^2 + C1)
    expected = (2 * 100 * 90 + c1) / (100**2 + 90**2 + c1)
    assert metrics.ssim(sr, hr, mask, 100.0) == pytest.approx(expected, rel=1e-6)


def test_ssim_crop_matches_the_whole_volume_map(hr_data: np.ndarray) -> None:
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    sr = hr_data + rng.normal(0, 20, hr_data.shape).astype(np.float32)
    mask = np.zeros(hr_data.shape, dtype=bool)
    mask[8:13, 6:12, 9:15] = True
    _, full = structural_similarity(
        hr_data,
        sr,
        data_range=150.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        full=True,
    )
    assert metrics.ssim(sr, hr_data, mask, 150.0) == pytest.approx(float(full[mask].mean()), rel=1e-5)
    assert metrics.ssim(sr, hr_data, mask, 150.0) < 0.99  # the noise counts
    assert abs(full[mask].mean() - full.mean()) > 1e-3  # and the mask selects


def test_edge_sharpness() -> None:
    z = np.arange(24, dtype=np.float32)
    hr = np.broadcast_to(np.where(z < 12, 0.0, 100.0), (12, 12, 24)).astype(np.float32)
    mask = np.ones(hr.shape, dtype=bool)
    assert metrics.edge_sharpness(0.5 * hr + 7.0, hr, mask, axis=2) == pytest.approx(0.5)
    blurred = np.broadcast_to(100.0 / (1 + np.exp(-(z - 11.5) / 2.0)), hr.shape).astype(np.float32)
    assert metrics.edge_sharpness(blurred, hr, mask, axis=2) < 0.5
    assert np.isnan(metrics.edge_sharpness(hr, hr, mask, axis=0))  # no edge along axis 0


def test_foreground_mask_and_edge_slabs() -> None:
    data = np.zeros((12, 12, 12), dtype=np.float32)
    data[3:9, 3:9, :] = 100.0
    valid = np.ones(data.shape, dtype=bool)
    valid[:, :, 10:] = False  # SR does not cover the last two slices
    mask, threshold = metrics.foreground_mask(data, valid)
    assert 0 < threshold < 100
    assert mask.sum() == 6 * 6 * 10
    trimmed = metrics.exclude_edge_slabs(mask, valid, axis=2, width=3)
    kept = np.flatnonzero(trimmed.any(axis=(0, 1)))
    assert kept.tolist() == [3, 4, 5, 6]  # slices 0-2 and 7-9 of the covered 0-9 dropped


# --- world coordinates --------------------------------------------------------------------------------


def test_identical_volumes_score_inf_and_one(hr_data: np.ndarray, hr_affine: np.ndarray) -> None:
    hr = make_volume(hr_data, hr_affine)
    result = evaluate_volumes(hr, make_volume(hr_data.copy(), hr_affine), facts={"axis": 2, "factor": 2})
    assert result["metrics"]["psnr_db"] == float("inf")
    assert result["metrics"]["ssim"] == 1.0
    assert result["metrics"]["nrmse"] == 0.0
    assert result["grid"]["same_grid"] and result["grid"]["grid_offset_vox"] == [0.0, 0.0, 0.0]
    assert result["mask"]["edge_slab_hr_voxels"] == 2  # factor 2 x 1.3 mm / 1.3 mm
    assert result["axis"]["source"] == "sidecar"


def test_flipped_permuted_grid_compares_in_world_space(hr_data: np.ndarray, hr_affine: np.ndarray) -> None:
    # The same voxels stored flipped along x and with y/z swapped: only the affines say how they match.
    data = np.ascontiguousarray(np.transpose(hr_data[::-1], (0, 2, 1)))
    index = np.zeros((4, 4))
    index[0, 0], index[0, 3] = -1.0, hr_data.shape[0] - 1  # new i -> old i
    index[1, 2] = index[2, 1] = index[3, 3] = 1.0  # new j -> old k, new k -> old j
    sr = make_volume(data, hr_affine @ index)
    result = evaluate_volumes(sr, make_volume(hr_data, hr_affine), axis=1)
    assert result["metrics"]["psnr_db"] == float("inf")
    assert result["grid"]["resampled"] and result["grid"]["interpolation"] == "none"
    assert result["axis"]["hr"] == 2  # SR axis 1 points along HR axis 2


def test_half_voxel_shift_is_detected_and_reported(hr_data: np.ndarray, hr_affine: np.ndarray) -> None:
    sr = make_volume(hr_data, shifted(hr_affine, (0.0, 0.0, 0.5)))
    result = evaluate_volumes(sr, make_volume(hr_data, hr_affine), axis=2)
    assert result["grid"]["grid_offset_vox"] == [0.0, 0.0, 0.5]
    assert result["grid"]["resampled"] and result["grid"]["interpolation"] == "linear"
    assert any("0.5" in w for w in result["warnings"])
    assert result["metrics"]["psnr_db"] < 60  # a half-voxel error costs accuracy
    again = grid_alignment((22, 20, 24), shifted(hr_affine, (0.25, -3.0, 0.0)), (22, 20, 24), hr_affine)
    assert again.offset_vox.tolist() == pytest.approx([0.25, 0.0, 0.0]) and not again.same_lattice


def test_resampling_follows_world_coordinates(hr_affine: np.ndarray) -> None:
    # A linear function of world position, sampled on an unrelated oblique SR grid, must come back exactly
    # (linear interpolation of a linear function) at the HR voxel centres.
    def field(world: np.ndarray) -> np.ndarray:
        return (world @ np.array([0.7, -1.3, 2.1]) + 5.0).astype(np.float32)

    hr_shape = (12, 11, 13)
    sr_affine = make_affine((0.6, 0.8, 0.5), rng=np.random.default_rng(11), flips=(1, -1, 1))
    centre_hr = apply_affine(hr_affine, (np.array(hr_shape) - 1) / 2)
    sr_shape = (40, 40, 40)
    sr_affine[:3, 3] += centre_hr - apply_affine(sr_affine, (np.array(sr_shape) - 1) / 2)
    sr_idx = np.stack(np.meshgrid(*[np.arange(n) for n in sr_shape], indexing="ij"), -1)
    sr = make_volume(field(apply_affine(sr_affine, sr_idx)), sr_affine)
    hr = make_volume(np.zeros(hr_shape, np.float32), hr_affine)
    values, valid, align = on_reference_grid(sr, hr)
    hr_idx = np.stack(np.meshgrid(*[np.arange(n) for n in hr_shape], indexing="ij"), -1)
    expected = field(apply_affine(hr_affine, hr_idx))
    inner = np.all((apply_affine(np.linalg.inv(align.index_map), hr_idx) >= 0), -1) & np.all(
        apply_affine(np.linalg.inv(align.index_map), hr_idx) <= np.array(sr_shape) - 1, -1
    )
    assert inner.sum() > 100 and valid[inner].all()
    np.testing.assert_allclose(values[inner], expected[inner], atol=2e-3)


def test_sr_covering_part_of_hr(hr_data: np.ndarray, hr_affine: np.ndarray) -> None:
    # The benchmark case: SR ends 3 slices short of HR (whole slabs only), same voxel centres.
    sr = make_volume(hr_data[:, :, 2:21], shifted(hr_affine, (0.0, 0.0, 2.0)))
    result = evaluate_volumes(sr, make_volume(hr_data, hr_affine), axis=2, factor=1.0, mask="none")
    assert result["metrics"]["psnr_db"] == float("inf")
    assert result["grid"]["hr_voxels_covered_fraction"] == pytest.approx(19 / 24)
    assert result["mask"]["voxels"] == 22 * 20 * (19 - 2)  # minus one covered slice at each end


def test_volumes_that_do_not_overlap_are_refused(hr_data: np.ndarray, hr_affine: np.ndarray) -> None:
    far = make_volume(hr_data, shifted(hr_affine, (0.0, 0.0, 500.0)))
    with pytest.raises(MedsrError, match="do not overlap"):
        evaluate_volumes(far, make_volume(hr_data, hr_affine), axis=2)


# --- no reference -------------------------------------------------------------------------------------


def test_no_reference_sees_through_plane_blur() -> None:
    from scipy.ndimage import gaussian_filter1d

    noise = np.random.default_rng(2).normal(100, 20, (32, 32, 32)).astype(np.float32)
    sharp = make_volume(noise, np.diag([1.0, 1.0, 1.0, 1.0]))
    blurred = make_volume(gaussian_filter1d(noise, 2.0, axis=2), np.diag([1.0, 1.0, 1.0, 1.0]))
    iso = no_reference(sharp, axis=2, mask="none")["metrics"]
    blur = no_reference(blurred, axis=2, mask="none")["metrics"]
    assert iso["gradient_ratio"] == pytest.approx(1.0, abs=0.05)
    assert iso["spectral_ratio"] == pytest.approx(1.0, abs=0.1)
    assert blur["gradient_ratio"] < 0.5 and blur["spectral_ratio"] < 0.05
    report = no_reference(blurred, facts={"axis": 2})
    assert report["axis"]["source"] == "sidecar"
    assert report["details"]["band_cycles_per_mm"] == [0.25, 0.5]


# --- CLI and docs -------------------------------------------------------------------------------------


def _save(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), str(path))
    return path


def test_cli_identical_json_inf(tmp_path: Path, hr_data: np.ndarray, hr_affine: np.ndarray) -> None:
    a = _save(tmp_path / "a.nii.gz", hr_data, hr_affine)
    b = _save(tmp_path / "b.nii.gz", hr_data, hr_affine)
    result = runner.invoke(
        app, ["evaluate", str(a), str(b), "--json", "--axis", "2", "-o", str(tmp_path / "r.json")]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["metrics"]["psnr_db"] == "inf" and report["metrics"]["ssim"] == 1.0
    assert json.loads((tmp_path / "r.json").read_text()) == report
    text = runner.invoke(app, ["evaluate", str(a), str(b), "--axis", "S"])
    assert text.exit_code == 0 and "PSNR inf dB" in text.output and "SSIM 1.0000" in text.output


def test_cli_uses_the_infer_sidecar_and_half_voxel_shift(tmp_path: Path) -> None:
    affine = make_affine((1.0, 1.0, 1.0), rng=np.random.default_rng(8))
    hr = blob_volume((20, 20, 24), rng=np.random.default_rng(9))
    hr_path = _save(tmp_path / "hr.nii.gz", hr, affine)
    lr_path = tmp_path / "lr.nii.gz"
    assert (
        runner.invoke(
            app, ["simulate", str(hr_path), "--thickness", "4", "--axis", "2", "-o", str(lr_path)]
        ).exit_code
        == 0
    )
    sr_path = tmp_path / "sr.nii.gz"
    out = runner.invoke(
        app, ["infer", str(lr_path), "--method", "linear", "--factor", "4", "-o", str(sr_path)]
    )
    assert out.exit_code == 0, out.output
    result = runner.invoke(app, ["evaluate", str(sr_path), str(hr_path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["axis"] == {"sr": 2, "hr": 2, "direction": report["axis"]["direction"], "source": "sidecar"}
    assert report["mask"]["edge_slab_hr_voxels"] == 4 and report["grid"]["grid_offset_vox"] == [0.0, 0.0, 0.0]
    assert 15 < report["metrics"]["psnr_db"] < 60
    # The same SR written half a voxel off along z: detected and reported.
    img = nib.load(str(sr_path))
    bad = _save(tmp_path / "bad.nii.gz", np.asarray(img.dataobj), shifted(img.affine, (0, 0, 0.5)))
    report = json.loads(
        runner.invoke(app, ["evaluate", str(bad), str(hr_path), "--json", "--axis", "2"]).stdout
    )
    assert report["grid"]["grid_offset_vox"][2] == pytest.approx(0.5, abs=1e-3)
    noref = runner.invoke(app, ["evaluate", str(sr_path), "--json"])
    assert noref.exit_code == 0, noref.output
    assert set(json.loads(noref.stdout)["metrics"]) == {"gradient_ratio", "spectral_ratio"}


def test_cli_errors_exit_2(tmp_path: Path, hr_data: np.ndarray, hr_affine: np.ndarray) -> None:
    a = _save(tmp_path / "a.nii.gz", hr_data, hr_affine)
    result = runner.invoke(app, ["evaluate", str(a), str(a), "--mask", str(tmp_path / "missing.nii.gz")])
    assert result.exit_code == 2 and "--mask" in result.output


def test_cli_mask_file(tmp_path: Path, hr_data: np.ndarray, hr_affine: np.ndarray) -> None:
    sr = hr_data.copy()
    sr[:11] += 50.0  # wrong only in the first half along x
    mask = np.zeros(hr_data.shape, np.float32)
    mask[11:] = 1.0
    paths = [
        _save(tmp_path / f"{n}.nii.gz", d, hr_affine) for n, d in (("sr", sr), ("hr", hr_data), ("m", mask))
    ]
    result = runner.invoke(
        app, ["evaluate", str(paths[0]), str(paths[1]), "--mask", str(paths[2]), "--json", "--axis", "2"]
    )
    report = json.loads(result.stdout)
    assert report["metrics"]["psnr_db"] == "inf" and report["mask"]["voxels"] == int(mask.sum())


def test_json_schema_is_documented(hr_data: np.ndarray, hr_affine: np.ndarray) -> None:
    vol = make_volume(hr_data, hr_affine)
    docs = DOCS.read_text()
    keys: set[str] = set()

    def walk(obj: dict) -> None:
        for key, value in obj.items():
            keys.add(key)
            if isinstance(value, dict):
                walk(value)

    walk(evaluate_volumes(vol, vol, axis=2))
    walk(no_reference(vol, axis=2))
    missing = sorted(k for k in keys if not re.search(rf"`(?:[\w.]+\.)?{re.escape(k)}`", docs))
    assert not missing, f"keys not documented in docs/evaluation.md: {missing}"
