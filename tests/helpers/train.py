"""Tiny synthetic training sets and configs for the train/checkpoint/ddp tests."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from tests.helpers.volumes import blob_volume, make_affine

TINY_SHAPE = (24, 22, 30)


def write_tiny_set(folder: Path, n_train: int = 2, n_val: int = 1) -> Path:
    """``n_train + n_val`` 1 mm volumes on oblique, flipped grids, and a manifest listing them."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["path,subject,split,modality"]
    for i in range(n_train + n_val):
        affine = make_affine((1.0, 1.0, 1.0), rng=np.random.default_rng(i), flips=(1, -1, 1))
        data = blob_volume(TINY_SHAPE, np.random.default_rng(100 + i))
        nib.save(nib.Nifti1Image(data, affine), str(folder / f"vol{i}.nii.gz"))
        rows.append(f"vol{i}.nii.gz,subj{i},{'train' if i < n_train else 'val'},MR")
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def tiny_overrides(manifest: Path, steps: int = 4, model: str = "deepresolve3d") -> list[str]:
    """``--set`` overrides making a run of a few seconds on 2 CPU cores."""
    args = "{features: 4, depth: 3}" if model == "deepresolve3d" else "{features: 4, blocks: 1, factor: 4}"
    return [
        f"data.manifest={manifest}",
        f"model.name={model}",
        f"model.args={args}",
        "data.patch_size=[12,12,16]",
        "simulation.thickness_range=[2.0,3.0]",
        "simulation.noise=null",
        f"train.steps={steps}",
        "train.batch_size=2",
        "train.lr=3e-3",
        "train.warmup_steps=0",
        f"train.val_every={steps}",
        "train.log_every=1",
        "inference.roi_size=[16,16]",
    ]
