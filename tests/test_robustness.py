"""Hostile-input corpus: every bad file (built by tests/helpers) run through ``medsr infer``/``info`` and the API.

Each :class:`Case` builds one input and states what medsr must do with it: refuse it (exit 2, one line
naming the file and the problem, no output left), repair it with one warning line (finite output), or
accept it. The cases live in tests/helpers/robustness.py; docs/robustness.md is rendered from them (and
the fault rows) by ``python scripts/render_robustness.py``, and a test checks it is current.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import tracemalloc
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st
from nibabel.affines import apply_affine
from typer.testing import CliRunner

import medsr
from medsr import geometry
from medsr.cli.main import app
from medsr.errors import MedsrError, MedsrWarning
from medsr.inference.interpolate import interpolate_upscale
from medsr.inference.selfsup import pipeline as _selfsup  # noqa: F401  (a broken import fails, never skips)
from medsr.io.naming import default_output, safe_name
from medsr.io.readers import load_volume
from medsr.io.volume import affine_of, make_volume
from medsr.io.writers import save_volume
from medsr.runtime import checkpoint as _checkpoint  # noqa: F401  (the loader the evil-model tests exercise)
from tests.helpers.dicom import CT5N, DATA
from tests.helpers.hostile_files import AFFINE, SHAPE, evil_checkpoint, nifti_builder, sample_data
from tests.helpers.robustness import BY_ID, CASES, CHECKPOINTS, PATHS, PROPERTIES, SHEARED, Case
from tests.helpers.volumes import random_rotation

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


# ---------------------------------------------------------------- helpers


def _run(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _build(case: Case, tmp_path: Path) -> Path:
    src_dir = tmp_path / "in"
    src_dir.mkdir()
    if case.id == "dicom-jpeg-ls" and _jpeg_ls_decodes():
        pytest.skip("a JPEG-LS decoder is installed here")
    return case.build(src_dir)


def _jpeg_ls_decodes() -> bool:
    try:
        _ = pydicom.dcmread(DATA / "MR_small_jpeg_ls_lossless.dcm").pixel_array
    except Exception:
        return False
    return True


def _input_corners(src: Path) -> np.ndarray:
    """World RAS corners of the input grid by an independent reader (nibabel's sform or SimpleITK)."""
    if src.is_dir():
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(src)))
        image = reader.Execute()
        size = image.GetSize()
        corners = [
            image.TransformContinuousIndexToPhysicalPoint([a, b, c])
            for a in (-0.5, size[0] - 0.5)
            for b in (-0.5, size[1] - 0.5)
            for c in (-0.5, size[2] - 0.5)
        ]
        return np.array(corners) * [-1.0, -1.0, 1.0]
    img = nib.load(str(src))
    return geometry.extent_corners(img.shape[:3], img.affine)


def _check_output(case: Case, src: Path, out: Path) -> np.ndarray:
    img = nib.load(str(out))
    data = np.asarray(img.dataobj)
    assert np.isfinite(data).all(), f"{case.id}: output has NaN/Inf"
    corners = geometry.extent_corners(img.shape, img.affine)
    np.testing.assert_allclose(corners, _input_corners(src), atol=2e-3)  # same physical extent
    np.testing.assert_allclose(
        img.get_qform(), img.get_sform(), atol=1e-4 if case.id != "nifti-sheared" else 10
    )
    return data


# ---------------------------------------------------------------- the corpus through the CLI and the API


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_cli(case: Case, tmp_path: Path) -> None:
    src = _build(case, tmp_path)
    before = _files(tmp_path / "in")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "up.nii.gz"
    result = _run("infer", src, "--method", "bspline", "-o", out)
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.output
    assert _files(tmp_path / "in") == before, "the input was modified"
    if case.outcome == "refused":
        assert result.exit_code == 2, result.output
        assert len(lines) == 1 and lines[0].startswith("medsr: error: "), lines
        assert str(src) in lines[0] and case.message in lines[0], lines[0]
        if case.id == "dicom-jpeg-ls":
            assert "pip install pylibjpeg" in lines[0] and "python-gdcm" in lines[0]  # what to install
        assert list(out_dir.iterdir()) == [], "output left behind"
        return
    assert result.exit_code == 0, result.output
    warned = [line for line in lines if line.startswith("medsr: warning: ")]
    assert lines == warned
    if case.outcome == "repaired":
        assert len(warned) == 1 and str(src) in warned[0] and case.message in warned[0], lines
    else:
        assert warned == []
    assert sorted(p.name for p in out_dir.iterdir()) == ["up.json", "up.nii.gz"]
    data = _check_output(case, src, out)
    if case.id == "nifti-zero":
        assert not data.any()
    if case.id == "nifti-constant":
        np.testing.assert_allclose(data, 7.0, atol=1e-4)
    if case.id == "nifti-anisotropy-20":
        assert data.shape == (10, 9, 120)


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.stage == "read" and c.outcome == "refused"], ids=lambda c: c.id
)
def test_info_refuses_on_read(case: Case, tmp_path: Path) -> None:
    src = _build(case, tmp_path)
    result = _run("info", src)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert case.message in result.stderr and str(src) in result.stderr


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_api(case: Case, tmp_path: Path) -> None:
    src = _build(case, tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MedsrWarning)
        if case.outcome == "refused":
            with pytest.raises(MedsrError) as err:
                medsr.upscale(src, method="bspline")
            assert case.message in str(err.value) and str(src) in str(err.value)
            if case.stage == "read":
                with pytest.raises(MedsrError, match=re.escape(case.message)):
                    load_volume(src)
            return
        out = medsr.upscale(src, method="bspline")
    ours = [w for w in caught if issubclass(w.category, MedsrWarning)]
    assert len(ours) == (case.outcome == "repaired"), [str(w.message) for w in ours]
    if ours:
        assert case.message in str(ours[0].message)
    assert np.isfinite(out.numpy()).all()
    if case.id == "nifti-nan-inf":
        assert out.meta["medsr"]["non_finite_replaced"] == {"nan": 1, "posinf": 1, "neginf": 1}


@pytest.mark.parametrize(
    "case_id", ["nifti-dims-huge", "nifti-dims-4gb", "mha-dims-huge", "mha-dims-2gb", "dicom-huge-rows"]
)
def test_large_declared_sizes_are_refused_before_allocating(
    case_id: str, tmp_path: Path, monkeypatch
) -> None:
    src = _build(BY_ID[case_id], tmp_path)

    def no_execute(self):  # SimpleITK allocates outside Python's sight: it must not even start
        raise AssertionError("ImageFileReader.Execute was called")

    monkeypatch.setattr(sitk.ImageFileReader, "Execute", no_execute)
    tracemalloc.start()
    try:
        with pytest.raises(MedsrError, match=re.escape(BY_ID[case_id].message)):
            load_volume(src)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20, f"{peak / 2**20:.0f} MiB allocated before refusing"


def test_four_d_with_a_volume_index_is_accepted(tmp_path: Path) -> None:
    src = _build(BY_ID["nifti-4d"], tmp_path)
    result = _run("infer", src, "--method", "linear", "--volume-index", "2", "-o", tmp_path / "v2.nii.gz")
    assert result.exit_code == 0, result.output
    assert nib.load(str(tmp_path / "v2.nii.gz")).shape[:2] == SHAPE[:2]


def test_sform_wins_and_the_output_is_consistent(tmp_path: Path) -> None:
    """sform/qform disagreement: the output carries the sform geometry in both, so ITK reads it the same."""
    src = _build(BY_ID["nifti-sform-qform"], tmp_path)
    out = tmp_path / "up.nii.gz"
    assert _run("infer", src, "--method", "linear", "--factor", "2", "-o", out).exit_code == 0
    img = nib.load(str(out))
    expected = geometry.upscaled_grid(SHAPE, AFFINE, 2, 2.0)[1]
    np.testing.assert_allclose(img.get_sform(), expected, atol=1e-4)
    np.testing.assert_allclose(img.get_qform(), expected, atol=1e-4)
    image = sitk.ReadImage(str(out))
    idx = [3.0, 2.0, 7.0]
    ras = np.array(image.TransformContinuousIndexToPhysicalPoint(idx)) * [-1, -1, 1]
    np.testing.assert_allclose(ras, apply_affine(expected, idx), atol=1e-3)


def test_sheared_input_keeps_its_sform(tmp_path: Path) -> None:
    src = _build(BY_ID["nifti-sheared"], tmp_path)
    with pytest.warns(MedsrWarning, match="sheared"):
        volume = load_volume(src)
    # docs/robustness.md "keep it exactly": the sform bit for bit as NIfTI stores it (float32)
    np.testing.assert_array_equal(affine_of(volume), SHEARED.astype(np.float32).astype(np.float64))
    out = medsr.upscale(volume, method="linear", factor=3)
    np.testing.assert_allclose(affine_of(out), geometry.upscaled_grid(SHAPE, SHEARED, 2, 3.0)[1], atol=1e-9)


@pytest.mark.slow
def test_selfsup_on_flat_volumes_is_finite() -> None:
    """Zero and constant volumes must not divide by a zero intensity range (selfsup normalises)."""
    for value in (0.0, 7.0):
        volume = make_volume(np.full((12, 12, 5), value, np.float32), np.diag([1.0, 1.0, 3.0, 1.0]))
        out = medsr.upscale(volume, method="selfsup", steps=2, progress=False, device="cpu")
        np.testing.assert_allclose(out.numpy(), value, atol=1e-3)


# ---------------------------------------------------------------- paths


def test_dicom_tags_never_name_files(tmp_path: Path) -> None:
    """Tags holding paths and shell text end up in tag values only; every file is written inside the output."""
    src = _build(BY_ID["dicom-path-tags"], tmp_path)
    outside = sorted(p.name for p in tmp_path.parent.iterdir())
    result = _run("infer", src, "--method", "nearest", "--factor", "2")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == outside
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.parent.name != "series")
    slices = [f"in/series_medsr/IM_{k:04d}.dcm" for k in range(1, 11)]
    assert written == ["in", "in/series", "in/series_medsr", "in/series_medsr.json", *slices]
    ds = pydicom.dcmread(tmp_path / "in" / "series_medsr" / "IM_0001.dcm")
    assert ds.SeriesDescription.startswith("../../../escape")  # kept as a value, harmless


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=300))
def test_safe_name_stays_inside_any_folder(text: str) -> None:
    name = safe_name(text)
    assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,119}", name), (
        name
    )  # no dot or dash first, no separator
    folder = Path("/data/out")
    assert (folder / name).parent == folder
    for scan in (Path("/in") / (name + ".nii.gz"), Path("/in") / name):
        assert default_output(scan, folder=folder).parent == folder


def test_batch_names_from_odd_file_names_stay_in_the_output_folder(tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    names = ["-o.nii.gz", "a b;rm -rf ~.nii.gz", "évolution.nii.gz", "..hidden.nii.gz", "$(touch x).nii.gz"]
    for name in names:
        nib.save(nib.Nifti1Image(sample_data(), AFFINE), str(scans / name))
    out = tmp_path / "out"
    result = _run("infer", scans, "-o", out, "--method", "nearest", "--factor", "2", "--no-progress")
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(
        ["o_medsr.json", "o_medsr.nii.gz", "a_b_rm_-rf_medsr.json", "a_b_rm_-rf_medsr.nii.gz",
         "volution_medsr.json", "volution_medsr.nii.gz", "touch_x_medsr.json", "touch_x_medsr.nii.gz",
         "medsr_batch.json"]
    )  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "scans"]


# ---------------------------------------------------------------- geometry of hostile affines (hypothesis)


@st.composite
def any_affine(draw) -> np.ndarray:
    """Rotated, flipped, anisotropic and possibly sheared affines."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cols = random_rotation(rng, max_angle_deg=draw(st.floats(0, 180))) @ np.diag(
        [draw(st.floats(0.3, 6.0)) * draw(st.sampled_from([-1, 1])) for _ in range(3)]
    )
    shear = np.eye(3)
    shear[0, 2], shear[1, 2] = draw(st.floats(-0.6, 0.6)), draw(st.floats(-0.6, 0.6))
    affine = np.eye(4)
    affine[:3, :3] = cols @ shear
    affine[:3, 3] = [draw(st.floats(-300, 300)) for _ in range(3)]
    return affine


@settings(max_examples=25, deadline=None)
@given(affine=any_affine(), factor=st.floats(1.2, 6.0), suffix=st.sampled_from([".nii.gz", ".mha"]))
def test_upscaled_files_keep_extent_for_any_affine(tmp_path_factory, affine, factor, suffix) -> None:
    """Any affine (sheared too) and factor: the written output covers the input's extent, read back by nibabel/ITK."""
    folder = tmp_path_factory.mktemp("g")
    volume = make_volume(sample_data((5, 4, 3)), affine)
    out = interpolate_upscale(volume, 2, factor, "linear")
    path = folder / f"up{suffix}"
    save_volume(out, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MedsrWarning)
        back = load_volume(path)
    np.testing.assert_allclose(affine_of(back), affine_of(out), atol=1e-4 * max(1.0, np.abs(affine).max()))
    corners = geometry.extent_corners(back.shape[1:], affine_of(back))
    np.testing.assert_allclose(corners, geometry.extent_corners((5, 4, 3), affine), atol=1e-3)
    if suffix == ".nii.gz":
        np.testing.assert_allclose(
            nib.load(str(path)).affine, affine_of(out), atol=1e-4 * max(1.0, np.abs(affine).max())
        )


# ---------------------------------------------------------------- damaged files (hypothesis): never a traceback


@pytest.fixture(scope="module")
def seed_files(tmp_path_factory) -> dict[str, bytes]:
    """One small valid file per format, to be damaged byte by byte."""
    folder = tmp_path_factory.mktemp("seeds")
    data = sample_data((6, 5, 4))
    seeds = {}
    for suffix in (".nii", ".nii.gz"):
        nib.save(nib.Nifti1Image(data, AFFINE), str(folder / f"s{suffix}"))
    for suffix in (".nrrd", ".mha"):
        image = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
        sitk.WriteImage(image, str(folder / f"s{suffix}"), useCompression=suffix == ".nrrd")
    for suffix in (".nii", ".nii.gz", ".nrrd", ".mha"):
        seeds[suffix] = (folder / f"s{suffix}").read_bytes()
    seeds[".dcm"] = sorted(CT5N.iterdir())[0].read_bytes()
    return seeds


@settings(max_examples=200, deadline=None)
@given(
    suffix=st.sampled_from([".nii", ".nii.gz", ".nrrd", ".mha", ".dcm"]),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
    keep=st.one_of(st.none(), st.floats(0.0, 1.0)),
)
def test_damaged_files_give_a_medsr_error_or_a_volume(
    seed_files, tmp_path_factory, suffix, edits, keep
) -> None:
    """Bytes changed (mostly in the header) and/or the end cut off: a MedsrError naming the file, or a volume."""
    raw = bytearray(seed_files[suffix])
    span = len(raw) if suffix == ".nii.gz" else min(len(raw), 512)
    for position, value in edits:
        raw[position % span] = value
    if keep is not None:
        raw = raw[: int(len(raw) * keep)]
    path = tmp_path_factory.mktemp("damaged") / f"scan{suffix}"
    path.write_bytes(bytes(raw))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            volume = load_volume(path)
        except MedsrError as err:
            assert str(path) in str(err)
        else:
            assert volume.ndim == 4 and np.all(np.isfinite(affine_of(volume)))


# ---------------------------------------------------------------- untrusted checkpoints (--model)


@pytest.mark.parametrize("name", ["evil.pt", "evil.pth", "evil.ckpt", "evil.safetensors", "evil"])
@pytest.mark.parametrize("wrapping", ["pickle", "torch.save"])
def test_model_that_runs_a_command_is_refused(tmp_path: Path, wrapping: str, name: str) -> None:
    marker = tmp_path / "pwned"
    model = evil_checkpoint(tmp_path / name, wrapping, marker)
    src = nifti_builder(sample_data())(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    result = _run("infer", src, "--model", model, "-o", out / "up.nii.gz")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(model) in lines[0] and "never unpickles checkpoints" in lines[0], lines
    assert not marker.exists(), "medsr ran code from the checkpoint"
    assert list(out.iterdir()) == []
    with pytest.raises(MedsrError, match="never unpickles"):
        medsr.upscale(src, model=model)
    assert not marker.exists()


def test_damaged_safetensors_model_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "cut.safetensors"
    model.write_bytes((10**6).to_bytes(8, "little") + b'{"w": {"dtype": "F32"')
    src = nifti_builder(sample_data())(tmp_path)
    result = _run("infer", src, "--model", model, "-o", tmp_path / "up.nii.gz")
    assert result.exit_code == 2 and "not a safetensors checkpoint" in result.stderr, result.output
    assert not (tmp_path / "up.nii.gz").exists()


def test_batch_with_an_evil_model_fails_each_scan_cleanly(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    model = evil_checkpoint(tmp_path / "model.safetensors", "torch.save", marker)
    scans = tmp_path / "scans"
    scans.mkdir()
    for i in range(2):
        nib.save(nib.Nifti1Image(sample_data(), AFFINE), str(scans / f"s{i}.nii.gz"))
    result = _run("infer", scans, "--model", model, "-o", tmp_path / "out", "--no-progress")
    assert result.exit_code == 1, result.output
    report = json.loads((tmp_path / "out" / "medsr_batch.json").read_text())
    assert len(report["failed"]) == 2 and all("never unpickles" in f["error"] for f in report["failed"])
    assert not marker.exists() and sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "medsr_batch.json"
    ]


# ---------------------------------------------------------------- docs/robustness.md


def test_docs_table_is_current() -> None:
    """docs/robustness.md's generated tables match the corpus (scripts/render_robustness.py --check)."""
    spec = importlib.util.spec_from_file_location(
        "render_robustness", ROOT / "scripts" / "render_robustness.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--check"]) == 0, (
        f"{script.DOC} is out of date: run `python scripts/render_robustness.py`"
    )


def test_every_row_names_a_real_test() -> None:
    tree = ast.parse((ROOT / "tests" / "test_dicom_properties.py").read_text(encoding="utf-8"))
    in_properties = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    for _, test, _ in [*CHECKPOINTS, *PATHS, *PROPERTIES]:
        module, _, name = test.rpartition("::")
        name = name.split("[")[0]
        assert (name in in_properties) if module else callable(globals().get(name)), test
