"""Property-based tests of the DICOM series sorter and writer (hypothesis).

The reader must depend only on the slices' positions: any order of the files, any file names and
folder layout, any InstanceNumber, and junk files beside the series give the same volume and affine.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsr.errors import MedsrError
from medsr.io.dicom import read_dicom_series, write_dicom_series
from medsr.io.volume import affine_of, make_volume
from tests.helpers.dicom import CT5N, assert_same_world
from tests.helpers.volumes import random_rotation

N_SLICES = 7
NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=12).filter(
    lambda s: s not in (".", "..") and s != "DICOMDIR"
)


def _oblique(rng: np.random.Generator, spacing=(0.7, 1.3, -3.0)) -> np.ndarray:
    """Oblique RAS affine, in-plane axes orthogonal, slice axis against the normal (reversed files)."""
    affine = np.eye(4)
    affine[:3, :3] = random_rotation(rng, 40.0) @ np.diag(spacing)
    affine[:3, 3] = rng.uniform(-100, 100, size=3)
    return affine


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> tuple[Path, list[Path]]:
    """A written 6 x 5 x 7 int16 series (reference folder, its files)."""
    rng = np.random.default_rng(11)
    data = rng.integers(-1000, 3000, size=(6, 5, N_SLICES)).astype(np.float32)
    volume = make_volume(
        data, _oblique(rng), original_dtype="int16", dicom_template=str(sorted(CT5N.iterdir())[0])
    )
    folder = tmp_path_factory.mktemp("series")
    write_dicom_series(volume, folder)
    return folder, sorted(folder.iterdir())


@contextmanager
def scratch(base: Path) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(dir=base))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _same(a, b) -> None:
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(affine_of(a), affine_of(b))


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_order_of_the_files_gives_the_same_volume(series, data) -> None:
    folder, files = series
    reference = read_dicom_series(folder)
    _same(read_dicom_series(data.draw(st.permutations(files))), reference)


@settings(max_examples=30, deadline=None)
@given(
    names=st.lists(NAMES, min_size=N_SLICES, max_size=N_SLICES, unique_by=str.lower),
    depth=st.lists(st.integers(0, 2), min_size=N_SLICES, max_size=N_SLICES),
    instances=st.permutations(range(1, N_SLICES + 1)),
)
def test_names_folders_and_instance_numbers_do_not_matter(series, tmp_path_factory, names, depth, instances):
    """Files renamed, scattered into sub-folders, with InstanceNumber/SliceLocation scrambled."""
    folder, files = series
    reference = read_dicom_series(folder)
    with scratch(tmp_path_factory.getbasetemp()) as root:
        for src, name, level, number in zip(files, names, depth, instances, strict=True):
            target = root.joinpath(*[f"D{level}"] * level, name)  # upper case: never a drawn file name
            target.parent.mkdir(parents=True, exist_ok=True)
            ds = pydicom.dcmread(src)
            ds.InstanceNumber = number
            ds.SliceLocation = float(number)
            ds.save_as(target)
        vol = read_dicom_series(root)
    _same(vol, reference)


@settings(max_examples=40, deadline=None)
@given(
    junk=st.binary(min_size=0, max_size=400),
    prefix=st.sampled_from([b"", b"\x08\x00", b"\x02\x00", b"\0" * 128 + b"DICM"]),
)
def test_junk_beside_the_series_is_skipped_or_named(series, tmp_path_factory, junk, prefix) -> None:
    """Any extra file: the volume is unchanged, or a MedsrError names that file; never another exception."""
    folder, files = series
    reference = read_dicom_series(folder)
    with scratch(tmp_path_factory.getbasetemp()) as root:
        for src in files:
            shutil.copy(src, root / src.name)
        (root / "zz_junk").write_bytes(prefix + junk)
        try:
            vol = read_dicom_series(root)
        except MedsrError as err:
            assert "zz_junk" in str(err)
        else:
            _same(vol, reference)


@settings(max_examples=40, deadline=None)
@given(first=st.integers(0, N_SLICES - 2), length=st.integers(2, N_SLICES))
def test_any_run_of_slices_is_the_matching_sub_volume(series, first, length) -> None:
    folder, _ = series
    reference = read_dicom_series(folder)
    last = min(N_SLICES, first + length)
    by_position = sorted(folder.iterdir(), key=_along_normal)
    part = read_dicom_series(by_position[first:last])
    np.testing.assert_array_equal(part.numpy(), reference.numpy()[..., first:last])
    expected = affine_of(reference).copy()
    expected[:3, 3] = (affine_of(reference) @ [0, 0, first, 1])[:3]
    np.testing.assert_allclose(affine_of(part), expected, atol=1e-4)


def _along_normal(path: Path) -> float:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    iop = np.array(ds.ImageOrientationPatient, dtype=float)
    return float(np.dot(np.array(ds.ImagePositionPatient, dtype=float), np.cross(iop[:3], iop[3:])))


@settings(max_examples=30, deadline=None)
@given(drop=st.integers(1, N_SLICES - 2), twin=st.integers(0, N_SLICES - 1))
def test_a_gap_or_a_twin_slice_is_always_refused(series, tmp_path_factory, drop, twin) -> None:
    folder, _ = series
    ordered = sorted(folder.iterdir(), key=_along_normal)
    with pytest.raises(MedsrError, match="non-uniform slice spacing"):
        read_dicom_series(ordered[:drop] + ordered[drop + 1 :])
    with scratch(tmp_path_factory.getbasetemp()) as root:
        for src in ordered:
            shutil.copy(src, root / src.name)
        ds = pydicom.dcmread(ordered[twin])
        ds.SOPInstanceUID = pydicom.uid.generate_uid()  # a second acquisition at the same place
        ds.save_as(root / "twin.dcm")
        with pytest.raises(MedsrError, match="duplicate slice position"):
            read_dicom_series(root)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    shape=st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(2, 6)),
    spacing=st.tuples(st.floats(0.3, 4.0), st.floats(0.3, 4.0), st.floats(0.5, 8.0)),
    flip=st.sampled_from([-1.0, 1.0]),
)
def test_write_then_read_puts_every_voxel_back_in_place(tmp_path_factory, seed, shape, spacing, flip) -> None:
    """Any oblique grid (in-plane axes orthogonal) and int16 data: the same value at the same world mm."""
    rng = np.random.default_rng(seed)
    affine = _oblique(rng, (spacing[0], spacing[1], flip * spacing[2]))
    data = rng.integers(-2000, 2000, size=shape).astype(np.float32)
    with scratch(tmp_path_factory.getbasetemp()) as root:
        write_dicom_series(make_volume(data, affine, original_dtype="int16"), root)
        back = read_dicom_series(root)
    assert back.numpy().shape == (1, *shape)
    assert_same_world(data, affine, back[0].numpy(), affine_of(back), atol_mm=1e-3, tol=0)
