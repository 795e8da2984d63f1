"""medsr benchmark through the CLI: reports, panels, memory per method, method options, errors."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image as mpimg
import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from medsr.cli.main import app
from medsr.errors import MedsrError
from medsr.jobs.benchmark import parse_methods
from tests.helpers.volumes import blob_volume, make_affine

runner = CliRunner()


@pytest.fixture
def hr_path(tmp_path: Path) -> Path:
    """A 1 mm isotropic oblique volume, 24 x 22 x 32 (8 slabs of 4 mm along axis 2)."""
    affine = make_affine((1.0, 1.0, 1.0), rng=np.random.default_rng(21), flips=(1, -1, 1))
    path = tmp_path / "hr.nii.gz"
    nib.save(nib.Nifti1Image(blob_volume((24, 22, 32), rng=np.random.default_rng(22)), affine), str(path))
    return path


def not_blank(png: Path) -> bool:
    image = mpimg.imread(str(png))[..., :3]
    return image.std() > 0.05 and image.shape[0] > 200 and image.shape[1] > 400


def test_benchmark_in_process_writes_reports_and_panels(tmp_path: Path, hr_path: Path) -> None:
    out = tmp_path / "bench"
    args = ["benchmark", str(hr_path), "--factor", "4", "--axis", "2", "--methods", "nearest,linear,bspline"]
    result = runner.invoke(app, [*args, "--in-process", "-o", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "medsr.benchmark/1"
    assert [row["name"] for row in report["methods"]] == ["nearest", "linear", "bspline"]
    simulation = report["simulation"]
    assert simulation["lr_shape"] == [24, 22, 8] and simulation["slice_thickness_mm"] == pytest.approx(4.0)
    assert report["machine"]["nproc"] >= 1 and report["machine"]["cpu"]
    for row in report["methods"]:
        assert 10 < row["psnr_db"] < 60 and 0 < row["ssim"] < 1 and row["seconds"] > 0
        assert row["grid"]["grid_offset_vox"] == [0.0, 0.0, 0.0]
        assert row["peak_rss_mb"] is None  # not measured in-process
        assert (out / row["output"]).is_file()
    psnr = {row["name"]: row["psnr_db"] for row in report["methods"]}
    assert psnr["linear"] > psnr["nearest"]  # smooth blobs: interpolation beats replication
    assert report["evaluation"]["mask"]["edge_slab_hr_voxels"] == 4
    markdown = (out / "report.md").read_text()
    assert "| nearest |" in markdown and "PSNR (dB)" in markdown and report["machine"]["cpu"] in markdown
    assert report["panels"] == ["panel_axial.png", "panel_coronal.png", "panel_sagittal.png"]
    for name in report["panels"]:
        assert not_blank(out / name), name
    again = runner.invoke(app, [*args, "--in-process", "-o", str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.output


@pytest.mark.slow  # a fresh process per method
def test_benchmark_isolated_measures_memory(tmp_path: Path, hr_path: Path) -> None:
    out = tmp_path / "bench"
    ballast = np.ones(1_000_000_000 // 8)  # 1 GB held by this process must not count for the method
    result = runner.invoke(
        app, ["benchmark", str(hr_path), "--methods", "linear", "--axis", "S", "-o", str(out)]
    )
    del ballast
    assert result.exit_code == 0, result.output
    row = json.loads((out / "report.json").read_text())["methods"][0]
    assert 50 < row["peak_rss_mb"] < 1000 and row["method_rss_mb"] >= 0  # a real process with torch
    assert "peak RSS (MB)" in (out / "report.md").read_text()


@pytest.mark.slow
def test_learned_methods_get_budget_and_failures_are_reported(
    tmp_path: Path, hr_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medsr.inference.predict as predict

    calls = []
    real = predict.upscale

    def fake(volume, **kwargs):
        calls.append(kwargs)
        if kwargs["method"] == "model":
            raise MedsrError("checkpoint is not a medsr model")
        return real(
            volume, **{**{k: v for k, v in kwargs.items() if k in ("factor", "axis")}, "method": "linear"}
        )

    monkeypatch.setattr(predict, "upscale", fake)
    ckpt = tmp_path / "net.safetensors"
    ckpt.write_bytes(b"x")
    methods = f"bspline,selfsup,model:{ckpt}"
    result = runner.invoke(
        app,
        [
            "benchmark",
            str(hr_path),
            "--methods",
            methods,
            "--budget",
            "7",
            "--steps",
            "3",
            "--profile",
            "Boxcar",
            "--in-process",
            "-o",
            str(tmp_path / "b"),
        ],
    )
    assert result.exit_code == 1, result.output  # one method failed, the others still reported
    selfsup = next(c for c in calls if c["method"] == "selfsup")
    assert selfsup["budget_s"] == 7 and selfsup["steps"] == 3 and selfsup["thickness"] == pytest.approx(4.0)
    assert selfsup["profile"] == "boxcar" and selfsup["progress"] is True
    assert "budget_s" not in next(c for c in calls if c["method"] == "bspline")
    model = next(c for c in calls if c["method"] == "model")
    assert model["model"] == str(ckpt) and "profile" not in model  # a trained model keeps its own
    assert "benchmark [2/3] selfsup: done in" in result.output
    assert "benchmark [3/3] model:net.safetensors: failed: checkpoint is not a medsr model" in result.output
    rows = {r["name"]: r for r in json.loads((tmp_path / "b" / "report.json").read_text())["methods"]}
    assert rows["model:net.safetensors"]["error"] == "checkpoint is not a medsr model"
    assert "psnr_db" in rows["selfsup"]
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["simulation"]["profile"] == "boxcar" and "--profile boxcar" in report["command"]


def test_benchmark_simulates_the_profile_it_is_given(tmp_path: Path, hr_path: Path) -> None:
    from medsr.io.readers import load_volume
    from medsr.transforms.array import simulate_thick_slices

    lrs = {}
    for profile in ("gaussian", "boxcar"):
        out = tmp_path / profile
        args = ["benchmark", str(hr_path), "--axis", "2", "--methods", "nearest", "--profile", profile]
        result = runner.invoke(app, [*args, "--in-process", "--no-progress", "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert "benchmark [" not in result.output
        lrs[profile] = load_volume(out / "lr.nii.gz").as_tensor().numpy()
    hr = load_volume(hr_path)
    boxcar = simulate_thick_slices(hr, 4.0, 4.0, axis=2, profile="boxcar").as_tensor().numpy()
    np.testing.assert_allclose(lrs["boxcar"], boxcar, rtol=1e-5, atol=1e-4)
    assert np.abs(lrs["boxcar"] - lrs["gaussian"]).max() > 0.01 * np.abs(boxcar).max()
    result = runner.invoke(app, ["benchmark", str(hr_path), "--profile", "sinc", "-o", str(tmp_path / "x")])
    assert result.exit_code == 2 and "sinc" in result.output and "gaussian, boxcar" in result.output


def test_method_list_errors() -> None:
    assert [m.name for m in parse_methods("nearest, bspline")] == ["nearest", "bspline"]
    for bad in ("spline", "", "linear,linear", "cubic,bspline", "model:/nonexistent.ckpt"):
        with pytest.raises(MedsrError):
            parse_methods(bad)
    result = runner.invoke(app, ["benchmark", __file__, "--methods", "spline", "-o", "x"])
    assert result.exit_code == 2 and "spline" in result.output


def test_infer_preview_writes_a_before_after_panel(tmp_path: Path, oblique_nifti: Path) -> None:
    preview = tmp_path / "preview.png"
    out = tmp_path / "sr.nii.gz"
    result = runner.invoke(
        app,
        [
            "infer",
            str(oblique_nifti),
            "--method",
            "linear",
            "--factor",
            "4",
            "-o",
            str(out),
            "--preview",
            str(preview),
        ],
    )
    assert result.exit_code == 0, result.output
    assert not_blank(preview)


def test_panel_windows_ct_in_hu_mri_in_percentiles() -> None:
    from medsr.evaluation.figures import CT_WINDOWS, intensity_window
    from medsr.io.volume import make_volume

    affine = np.eye(4)
    ct = np.full((20, 20, 20), -1000.0, dtype=np.float32)
    ct[5:15, 5:15, 5:15] = 40.0
    assert intensity_window(make_volume(ct, affine)) == CT_WINDOWS["soft"]
    assert intensity_window(make_volume(ct, affine), "bone") == CT_WINDOWS["bone"]
    assert intensity_window(make_volume(ct + 1000.0, affine, modality="CT")) == CT_WINDOWS["soft"]
    mri = np.arange(8000, dtype=np.float32).reshape(20, 20, 20)
    assert intensity_window(make_volume(mri, affine)) == pytest.approx((0.005 * 7999, 0.995 * 7999))
    with pytest.raises(MedsrError, match="window"):
        intensity_window(make_volume(mri, affine), "abdomen")
