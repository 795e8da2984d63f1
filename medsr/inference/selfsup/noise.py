"""The scan's own noise level, and the noise training inputs get so the network does not amplify it."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from medsr.profiles import profile_shapes
from medsr.transforms.functional import DEFAULT_PROFILE, slab_weights

#: Laplacian mask of Immerkaer (1996); its response to white noise of std s has std 6 s.
_LAPLACE = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])[None, None]


def estimate_noise(slices: torch.Tensor, floor: float = 0.1, max_slices: int = 32) -> float:
    """Noise std of (S, A, B) images (same units), from the median absolute Laplacian response.

    Pixels at or below ``floor`` (in normalised units: air, masked background, and MRI's Rician
    background, whose lower noise would bias the estimate low) are left out; the median keeps edges
    from inflating the estimate. Uses at most ``max_slices`` evenly spaced images.
    """
    pick = torch.linspace(0, slices.shape[0] - 1, min(max_slices, slices.shape[0])).round().long().unique()
    images = slices[pick, None].float()
    if images.shape[-1] < 3 or images.shape[-2] < 3:
        return 0.0
    # A few images per convolution: its im2col buffer for all 32 of 512 x 512 would be over 500 MB.
    response = torch.cat([F.conv2d(part, _LAPLACE)[:, 0].abs() for part in images.split(4)])
    keep = images[:, 0, 1:-1, 1:-1] > floor
    if not bool(keep.any()):
        return 0.0
    return float(response[keep].median()) / (0.6745 * 6.0)


def input_noise(
    sigma: float, factor: int, thickness: float, slice_spacing: float, profile: str = DEFAULT_PROFILE
) -> float:
    """Std of the noise to add to training LR pixels so they are as noisy as the acquired slices.

    A training LR pixel averages ``factor`` noisy in-plane pixels (std ``sigma`` each) with the slab
    weights ``w``, which leaves std ``sigma * |w|``; an acquired thick slice has std ``sigma``. The
    difference, ``sigma * sqrt(1 - |w|^2)``, is added during training so that the network learns to
    sharpen without amplifying the scan's noise. For ``"mixed"``, ``|w|^2`` is the mean over the shapes
    (one noise level for all stacks; at x4 the shapes' levels differ by about 5 %).
    """
    hr_spacing = slice_spacing / factor
    energies = []
    for shape in profile_shapes(profile):
        weights = slab_weights(8 * factor, hr_spacing, thickness, slice_spacing, shape)
        energies.append(float(np.median((weights**2).sum(axis=1))))
    return float(sigma * np.sqrt(max(0.0, 1.0 - float(np.mean(energies)))))
