"""The Python route of docs/pipelines.md runs as written and keeps world coordinates."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.affines import apply_affine

ROOT = Path(__file__).resolve().parents[1]


def _python_example() -> str:
    text = (ROOT / "docs" / "pipelines.md").read_text()
    section = text.split("## Python API and MONAI transforms", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_documented_monai_pipeline_runs_and_keeps_the_extent(
    oblique_nifti: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(oblique_nifti.parent)
    oblique_nifti.rename("scan.nii.gz")
    scope: dict = {}
    exec(compile(_python_example(), "docs/pipelines.md", "exec"), scope)
    thin, same = scope["thin"], scope["same"]
    np.testing.assert_array_equal(thin.numpy(), same.numpy())
    source = nib.load("scan.nii.gz")
    written = nib.load("scan_thin.nii.gz")
    assert written.shape == (*source.shape[:2], 4 * source.shape[2])
    # output voxel i along the slice axis sits at input index (i + 0.5)/4 - 0.5 (docs/geometry.md)
    out_index = np.array([[0, 0, 0], [19, 17, 35], [3, 5, 10]], dtype=float)
    in_index = out_index.copy()
    in_index[:, 2] = (out_index[:, 2] + 0.5) / 4 - 0.5
    np.testing.assert_allclose(
        apply_affine(written.affine, out_index), apply_affine(source.affine, in_index), atol=1e-4
    )
    np.testing.assert_allclose(np.asarray(thin.affine), written.affine, atol=1e-4)
