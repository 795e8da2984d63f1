"""DeepResolve-style 3-D residual CNN: refine a cubic-upsampled volume on the output grid.

Chaudhari et al., "Super-resolution musculoskeletal MRI using deep learning" (MRM 2018): interpolate
the thick-slice volume to the thin-slice grid, then a plain stack of 3-D convolutions predicts the
residual. Working on the output grid makes the network independent of the factor: one checkpoint
serves every factor of the range it was trained on.
"""

from __future__ import annotations

import torch
from torch import nn

from medsr.models.interp import cubic_weights, resample_last

#: Negative slope of the leaky ReLUs.
LEAK = 0.1


class DeepResolve3d(nn.Module):
    """Residual 3-D CNN on the cubic-interpolated input (slice axis last).

    Args:
        features: channels of the hidden layers.
        depth: number of 3x3x3 convolutions (>= 2), leaky ReLU (slope 0.1) between them; unlike a
            plain ReLU it cannot die when an early large step pushes a layer's biases negative.

    Shapes: ``lr`` (B, 1, X, Y, m) and ``positions`` (n,) float indices into ``m`` ->
    (B, 1, X, Y, n). The output is ``cubic(lr) + net(cubic(lr))``; the last convolution starts at
    zero, so an untrained network reproduces cubic interpolation exactly.

    Parameters: ``28 F + (depth - 2)(27 F^2 + F) + 27 F + 1``; 167,841 with the defaults (F=32,
    depth=8). Receptive field: ``2 depth + 1`` output voxels along each axis (17 with the defaults),
    on top of the 4-slice support of the cubic kernel along Z. Cost: about ``27 F^2 (depth - 2)``
    multiply-adds per output voxel (0.17 M with the defaults).
    """

    def __init__(self, features: int = 32, depth: int = 8) -> None:
        super().__init__()
        if depth < 2 or features < 1:
            raise ValueError(f"DeepResolve3d needs depth >= 2 and features >= 1, got {depth}, {features}")
        layers: list[nn.Module] = [nn.Conv3d(1, features, 3, padding=1), nn.LeakyReLU(LEAK, inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv3d(features, features, 3, padding=1), nn.LeakyReLU(LEAK, inplace=True)]
        last = nn.Conv3d(features, 1, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)

    def forward(self, lr: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        base = resample_last(lr, cubic_weights(positions, lr.shape[-1]))
        return base + self.net(base)
