"""Training data: manifest rows -> cached HR volumes -> on-the-fly thick-slice pairs and paired patches.

Pipeline per training sample (docs/training.md):

1. cached, deterministic (MONAI CacheDataset / PersistentDataset): :class:`LoadVolumed` reads the HR
   volume with medsr's reader (RAS affine), :class:`IntensityStatsd` measures its normalisation;
2. random, re-drawn every time: ``RandSimulateThickSlicesd`` (thickness, spacing, profile, noise and
   axis drawn from the config's ranges) adds ``"lr"`` on its own coarse grid, then
   :class:`PairedPatchd` moves the slice axis last, cuts matching LR/HR patches, works out where each
   HR slice lies in LR index units (from the two affines), normalises and flips.

Every random draw of item ``i`` in epoch ``e`` on rank ``r`` comes from a ``RandomState`` seeded with
``(seed, e, i, r)`` (:class:`PatchDataset`), so a resumed run sees exactly the samples it would have.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import Compose, MapTransform, Randomizable, Transform

from medsr import geometry
from medsr.errors import MedsrError
from medsr.io.volume import affine_of
from medsr.runtime.normalise import intensity_map, normalise
from medsr.training.config import Config, config_to_dict
from medsr.transforms import RandSimulateThickSlicesd

#: LR slices kept beyond the ones the HR patch lies in (context for the cubic kernel and the network).
LR_MARGIN = 2


class LoadVolumed(MapTransform):
    """``d["hr"]`` path -> (1, X, Y, Z) MetaTensor via :func:`medsr.io.readers.load_volume`."""

    def __init__(self, keys: Sequence[Hashable] = ("hr",)) -> None:
        super().__init__(keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from medsr.io.readers import load_volume

        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = load_volume(d[key])
        return d


class IntensityStatsd(Transform):
    """``d["norm"] = (offset, scale)`` of the whole HR volume (see medsr.runtime.normalise)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        d["norm"] = intensity_map(self.settings, d["hr"])
        return d


def slice_positions(hr_affine: np.ndarray, lr_affine: np.ndarray, axis: int, n_hr: int) -> np.ndarray:
    """Float LR index (along ``axis``) of each HR slice centre, shape (n_hr,), from the two affines."""
    idx = np.zeros((n_hr, 4))
    idx[:, axis] = np.arange(n_hr)
    idx[:, 3] = 1.0
    lr_index = (np.linalg.inv(lr_affine) @ hr_affine @ idx.T).T
    return lr_index[:, axis]


class PairedPatchd(Randomizable, Transform):
    """Cut matching patches from ``d["hr"]`` and ``d["lr"]``; returns plain tensors, slice axis last.

    Output: ``lr`` (1, px, py, m) and ``hr`` (1, px, py, n) normalised, ``positions`` (n,) float LR
    indices of the HR slices, ``ratio`` (LR/HR spacing) and ``name``. ``patch_size`` = (px, py, n) in
    HR voxels (in-plane sizes follow the array order that remains after moving the slice axis last).
    """

    def __init__(self, patch_size: tuple[int, int, int], flips: bool = True) -> None:
        self.patch_size = patch_size
        self.flips = flips

    def randomize(self, data: Any = None) -> None:
        """Draws happen in ``__call__`` from ``self.R`` (their bounds depend on the sample)."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[str, Any]:
        hr_v, lr_v = data["hr"], data["lr"]
        sim = lr_v.meta["simulation"]
        axis = int(sim["axis"])
        positions = slice_positions(affine_of(hr_v), affine_of(lr_v), axis, hr_v.shape[axis + 1])
        hr = torch.movedim(hr_v.as_subclass(torch.Tensor), axis + 1, -1)
        lr = torch.movedim(lr_v.as_subclass(torch.Tensor), axis + 1, -1)
        m = lr.shape[-1]
        covered = np.flatnonzero((positions >= -0.5) & (positions <= m - 0.5))
        n = min(self.patch_size[2], covered.size)
        j0 = int(covered[0] + self.R.randint(covered.size - n + 1))
        pos = positions[j0 : j0 + n]
        k0 = max(int(np.floor(pos[0])) - LR_MARGIN, 0)
        k1 = min(int(np.ceil(pos[-1])) + LR_MARGIN + 1, m)
        box = []
        for dim in range(2):
            size = min(self.patch_size[dim], hr.shape[1 + dim])
            start = int(self.R.randint(hr.shape[1 + dim] - size + 1))
            box.append(slice(start, start + size))
        hr_p = hr[:, box[0], box[1], j0 : j0 + n]
        lr_p = lr[:, box[0], box[1], k0:k1]
        pos_t = torch.as_tensor(pos - k0, dtype=torch.float32)
        offset, scale = data["norm"]
        hr_p, lr_p = normalise(hr_p, offset, scale), normalise(lr_p, offset, scale)
        if self.flips:
            for dim in (1, 2):
                if self.R.rand() < 0.5:
                    hr_p, lr_p = hr_p.flip(dim), lr_p.flip(dim)
            if self.R.rand() < 0.5:
                hr_p, lr_p = hr_p.flip(-1), lr_p.flip(-1)
                pos_t = (lr_p.shape[-1] - 1) - pos_t.flip(0)
        return {
            "lr": lr_p.contiguous().float(),
            "hr": hr_p.contiguous().float(),
            "positions": pos_t,
            "ratio": float(sim["spacing_ratio"]),
            "name": data.get("name", ""),
        }


def simulation_transform(config: Config) -> RandSimulateThickSlicesd:
    """The config's ``RandSimulateThickSlicesd`` (``"hr"`` -> ``"lr"``)."""
    s = config.simulation
    axes: list[Any] = [int(a) if str(a).isdigit() else a for a in s.axes]
    return RandSimulateThickSlicesd(
        keys="hr",
        thickness_range=s.thickness_range,
        spacing_range=s.spacing_range,
        axis=axes if len(axes) > 1 else axes[0],
        profiles=s.profiles,
        noise=s.noise,
        noise_range=s.noise_range,
        noise_prob=s.noise_prob,
    )


def manifest_items(config: Config, split: str) -> list[dict[str, Any]]:
    """Dataset items ``{"hr": path, "name", "modality"}`` of one split of the config's manifest."""
    from medsr.io.manifest import read_manifest, verify_row

    manifest = Path(config.data.manifest)
    rows = [r for r in read_manifest(manifest) if r.split == split]
    items = []
    for row in rows:
        if config.data.verify_sha256:
            verify_row(row)
        elif not row.path.exists():
            raise MedsrError(f"{manifest}: {row.path} does not exist; fix the path or rebuild the manifest")
        stem = row.path.name.split(".")[0]
        name = f"{row.subject}/{stem}" if row.subject else stem
        items.append({"hr": str(row.path), "name": name, "modality": row.modality})
    return items


def cached_dataset(items: list[dict[str, Any]], config: Config) -> torch.utils.data.Dataset:
    """The deterministic stage (load + intensity statistics), cached as the config says."""
    from monai.data import CacheDataset, Dataset, PersistentDataset

    norm = config_to_dict(config.normalisation)
    steps = Compose([LoadVolumed(("hr",)), IntensityStatsd(norm)])
    if config.data.cache == "memory":
        return CacheDataset(items, steps, cache_rate=1.0, num_workers=0, progress=False)
    if config.data.cache == "disk":
        if not config.data.cache_dir:
            raise MedsrError(
                "config data.cache = disk needs data.cache_dir (a folder for the cached volumes)"
            )
        return PersistentDataset(items, steps, cache_dir=config.data.cache_dir)
    return Dataset(items, steps)


class PatchDataset(torch.utils.data.Dataset):
    """Item ``i`` of epoch ``e``: a random pair from volume ``i % n``, drawn with seed (seed, e, i, rank)."""

    def __init__(
        self, base: torch.utils.data.Dataset, config: Config, rank: int = 0, repeats: int = 1
    ) -> None:
        self.base, self.rank, self.repeats = base, rank, max(int(repeats), 1)
        self.seed = int(config.train.seed)
        self.epoch = 0
        self.random = Compose(
            [simulation_transform(config), PairedPatchd(config.data.patch_size, config.simulation.flips)]
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.base) * self.repeats  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        seq = np.random.SeedSequence([self.seed, self.epoch, int(index), self.rank])
        self.random.set_random_state(state=np.random.RandomState(int(seq.generate_state(1)[0])))
        return self.random(dict(self.base[index % len(self.base)]))  # type: ignore[arg-type]


def name_seed(name: str) -> int:
    """A 32-bit seed from a volume's name (validation degradation; fastMRI's ``temp_seed`` idea)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:4], "little")


def validation_pair(item: Mapping[str, Any], config: Config) -> dict[str, Any]:
    """A cached validation item degraded with the seed of its name: ``hr``, ``lr`` MetaTensors, ``norm``."""
    from monai.transforms import CenterSpatialCrop

    hr = item["hr"]
    if config.data.val_crop is not None:
        hr = CenterSpatialCrop(config.data.val_crop)(hr)
    sim = simulation_transform(config)
    sim.set_random_state(seed=name_seed(item["name"]))
    out = sim({"hr": hr})
    return {"hr": hr, "lr": out["lr"], "norm": item["norm"], "name": item["name"]}


def factor_ranges(volumes: Sequence[Any], config: Config) -> tuple[list[float], list[float]]:
    """Spacing-ratio (factor) and thickness/spacing ranges the simulation covers on these HR volumes."""
    s = config.simulation
    spacing = s.spacing_range or s.thickness_range
    hr_sizes = []
    for vol in volumes:
        affine = affine_of(vol)
        for spec in s.axes:
            axis = geometry.resolve_axis(affine, int(spec) if str(spec).isdigit() else spec)
            hr_sizes.append(float(geometry.voxel_sizes(affine)[axis]))
    if not hr_sizes:
        raise MedsrError("no training volumes to measure the HR spacing from")
    factors = [spacing[0] / max(hr_sizes), spacing[1] / min(hr_sizes)]
    if factors[0] < 1.0:
        raise MedsrError(
            f"config simulation spacing {list(spacing)} mm is finer than the HR data ({max(hr_sizes):.3g} mm "
            "along the slice axis): thick slices must be at least as far apart as the HR slices"
        )
    thick = (
        [1.0, 1.0]
        if s.spacing_range is None
        else [s.thickness_range[0] / spacing[1], s.thickness_range[1] / spacing[0]]
    )
    return [round(f, 4) for f in factors], [round(t, 4) for t in thick]
