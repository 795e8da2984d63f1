"""Shared fixtures: small synthetic volumes on oblique, flipped, anisotropic grids."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.helpers.volumes import blob_volume, make_affine


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def oblique_nifti(tmp_path: Path) -> Path:
    """A 20x18x9 int16 NIfTI with an oblique, flipped, 0.8 x 1.1 x 4 mm affine."""
    affine = make_affine((0.8, 1.1, 4.0), rng=np.random.default_rng(7), flips=(-1, 1, 1))
    data = blob_volume((20, 18, 9)).astype(np.int16)
    path = tmp_path / "oblique.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


@pytest.fixture(scope="session")
def mni_path() -> Path:
    """nilearn's bundled MNI152 2009a 1 mm T1 template (a real scan shipped inside a package)."""
    import nilearn

    path = (
        Path(nilearn.__file__).parent
        / "datasets"
        / "data"
        / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    )
    if not path.exists():
        pytest.fail(f"nilearn's MNI152 template is missing at {path}; install nilearn (dev extra)")
    return path
