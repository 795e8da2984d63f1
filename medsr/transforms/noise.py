"""Acquisition noise for simulated thick-slice volumes: Gaussian (CT, in HU) or Rician (magnitude MRI).

Noise is added to the LR volume, independently per LR voxel, because each thick slice is acquired
(and its noise drawn) once. Two models:

* ``gaussian:SIGMA`` adds ``N(0, SIGMA^2)`` in image units (HU for CT).
* ``rician:SNR`` takes the magnitude of complex Gaussian noise added to the image,
  ``sqrt((x + n1)^2 + n2^2)`` with ``n1, n2 ~ N(0, sigma^2)`` and ``sigma = S / SNR``, where ``S``, the
  foreground signal level, is the median of the noise-free LR voxels brighter than the volume's mean
  intensity (a robust foreground estimate for images with a dark background).

Draws go through an explicit ``torch.Generator`` seeded from a numpy ``RandomState`` (a MONAI
transform's ``self.R``), a ``Generator``, an int, or fresh OS entropy; never global random state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from medsr.errors import MedsrError

NOISE_KINDS = ("gaussian", "rician")

#: Anything that can seed the noise draws.
RandomSource = np.random.RandomState | np.random.Generator | int | None


@dataclass(frozen=True)
class NoiseModel:
    """A noise model: ``kind`` and ``level`` (sigma in image units for gaussian, SNR for rician)."""

    kind: Literal["gaussian", "rician"]
    level: float

    def __post_init__(self) -> None:
        if self.kind not in NOISE_KINDS:
            raise MedsrError(f"noise {self.kind!r} is not one of {', '.join(NOISE_KINDS)}")
        if not (np.isfinite(self.level) and self.level > 0):
            what = "sigma" if self.kind == "gaussian" else "SNR"
            raise MedsrError(f"{self.kind} noise {what} {self.level} must be a positive number")

    def sigma(self, clean: torch.Tensor) -> float:
        """Standard deviation of the Gaussian components for the noise-free volume ``clean``."""
        if self.kind == "gaussian":
            return float(self.level)
        return foreground_signal(clean) / float(self.level)


def parse_noise(spec: str | NoiseModel | None) -> NoiseModel | None:
    """``None``/``"none"`` -> None; ``"gaussian:10"`` (sigma) or ``"rician:20"`` (SNR) -> NoiseModel."""
    if spec is None or isinstance(spec, NoiseModel):
        return spec
    text = str(spec).strip().lower()
    if text in ("", "none"):
        return None
    kind, sep, value = text.partition(":")
    try:
        level = float(value)
    except ValueError:
        level = float("nan")
    if not sep or kind not in NOISE_KINDS or not np.isfinite(level):
        raise MedsrError(
            f"noise {spec!r} is not understood; write gaussian:SIGMA (image units, e.g. gaussian:10 for "
            "10 HU) or rician:SNR (e.g. rician:20), or none"
        )
    return NoiseModel(kind, level)  # type: ignore[arg-type]


def foreground_signal(clean: torch.Tensor) -> float:
    """Median of the voxels brighter than the mean of ``clean`` (the signal level S of an SNR)."""
    values = clean.detach().as_subclass(torch.Tensor).reshape(-1).float()
    fg = values[values > values.mean()]
    level = float(fg.median()) if fg.numel() else float("nan")
    if not level > 0:
        raise MedsrError(
            f"Rician noise needs a positive foreground signal, but the volume's foreground median is "
            f"{level:g}; Rician noise models magnitude MRI, use gaussian:SIGMA for CT or signed images"
        )
    return level


def torch_generator(rng: RandomSource, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator on ``device`` seeded from ``rng`` (the same ``rng`` state gives the same draws)."""
    if isinstance(rng, np.random.RandomState):
        seed = int(rng.randint(0, 2**31 - 1))
    elif isinstance(rng, np.random.Generator):
        seed = int(rng.integers(0, 2**31 - 1))
    elif rng is None:
        seed = int(np.random.default_rng().integers(0, 2**31 - 1))
    else:
        seed = int(rng)
    return torch.Generator(device=device).manual_seed(seed)


def add_noise(clean: torch.Tensor, model: NoiseModel, rng: RandomSource = None) -> tuple[torch.Tensor, float]:
    """``clean`` with noise added (same shape, dtype and device) and the sigma used (image units)."""
    sigma = model.sigma(clean)
    data = clean.as_subclass(torch.Tensor)
    gen = torch_generator(rng, data.device)

    def draw() -> torch.Tensor:
        return torch.randn(data.shape, generator=gen, device=data.device, dtype=torch.float32) * sigma

    if model.kind == "gaussian":
        noisy = data.float() + draw()
    else:
        noisy = torch.sqrt((data.float() + draw()) ** 2 + draw() ** 2)
    return noisy.to(data.dtype), sigma
