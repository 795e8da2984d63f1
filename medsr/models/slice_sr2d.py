"""2-D slice super-resolution along one image axis (the SMORE / ECLARE family).

The network sees 2-D images whose first spatial axis ``L`` is low resolution (thick slices) and whose
second axis ``W`` is high resolution, and returns ``factor`` times more samples along ``L``. Output
sample ``i`` sits at input index ``(i + 0.5) / factor - 0.5`` (the medsr upscaling convention, which
is also ``torch.nn.functional.interpolate(..., align_corners=False)``).

``grid="lr"`` computes on the low-resolution grid and ends with a learned sub-pixel step that turns
``factor`` channels into ``factor`` phases along ``L`` (about ``factor`` times cheaper);
``grid="hr"`` refines an interpolated image on the output grid (classic SMORE). Both predict a residual
on top of ``base`` interpolation (or the whole image when ``base="none"``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_BASES = ("cubic", "linear", "none")


class ResBlock(nn.Module):
    """conv-ReLU-conv with an identity skip; the ReLU acts on ``features * expand`` channels (WDSR)."""

    def __init__(self, features: int, kernel: tuple[int, int], expand: int = 1) -> None:
        super().__init__()
        pad = (kernel[0] // 2, kernel[1] // 2)
        self.conv1 = nn.Conv2d(features, features * expand, kernel, padding=pad)
        self.conv2 = nn.Conv2d(features * expand, features, kernel, padding=pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x), inplace=True))


def upsample_rows(x: torch.Tensor, factor: int, base: str) -> torch.Tensor:
    """Interpolate (N, C, L, W) to (N, C, L * factor, W) along ``L`` on the convention grid."""
    if base == "none":
        return torch.zeros(*x.shape[:2], x.shape[2] * factor, x.shape[3], dtype=x.dtype, device=x.device)
    mode = "bicubic" if base == "cubic" else "bilinear"
    return F.interpolate(x, size=(x.shape[2] * factor, x.shape[3]), mode=mode, align_corners=False)


class SliceSR2d(nn.Module):
    """Upsample 2-D images by an integer ``factor`` along their first spatial axis.

    Args:
        factor: integer upsampling factor along ``L`` (>= 1).
        features: channels of the hidden layers.
        blocks: residual blocks between the head and tail convolutions.
        kernel: convolution kernel (along L, along W).
        grid: ``"lr"`` (compute on the input grid, sub-pixel output) or ``"hr"`` (refine an
            interpolated image on the output grid).
        base: interpolation the residual is added to: ``"cubic"``, ``"linear"`` or ``"none"``.
        expand: channel expansion inside each residual block (wide activation, as in WDSR).
        fold: ``grid="lr"`` only: fold this many neighbouring columns into channels before the
            convolutions and unfold them after (space-to-depth along W): ``fold`` times fewer pixels
            to convolve and a ``fold`` times wider receptive field along W.

    Shapes: input (N, 1, L, W) -> output (N, 1, L * factor, W).
    """

    def __init__(
        self,
        factor: int,
        features: int = 64,
        blocks: int = 4,
        kernel: tuple[int, int] = (3, 3),
        grid: str = "lr",
        base: str = "cubic",
        expand: int = 1,
        fold: int = 1,
    ) -> None:
        super().__init__()
        if int(factor) != factor or factor < 1:
            raise ValueError(f"SliceSR2d needs an integer factor >= 1, got {factor}")
        if grid not in ("lr", "hr"):
            raise ValueError(f"grid {grid!r} is not 'lr' or 'hr'")
        if base not in _BASES:
            raise ValueError(f"base {base!r} is not one of {_BASES}")
        if int(fold) < 1 or (fold > 1 and grid != "lr"):
            raise ValueError(f"fold {fold} must be >= 1 and needs grid='lr'")
        self.factor, self.grid, self.base, self.fold = int(factor), grid, base, int(fold)
        kernel = (int(kernel[0]), int(kernel[1]))
        pad = (kernel[0] // 2, kernel[1] // 2)
        out_channels = self.factor * self.fold if grid == "lr" else 1
        self.head = nn.Conv2d(self.fold, features, kernel, padding=pad)
        self.body = nn.Sequential(*[ResBlock(features, kernel, expand) for _ in range(blocks)])
        self.tail = nn.Conv2d(features, out_channels, kernel, padding=pad)
        # Start as the base interpolation: training then only has to learn the correction.
        if base != "none":
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    @property
    def halo(self) -> int:
        """Receptive-field radius in input pixels along either axis (for tiling)."""
        k = max(self.head.kernel_size)
        return (2 * len(self.body) + 2) * (k // 2) * self.fold + self.fold - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = upsample_rows(x, self.factor, self.base)
        source = (
            x
            if self.grid == "lr"
            else (base if self.base != "none" else upsample_rows(x, self.factor, "cubic"))
        )
        width, f = x.shape[3], self.fold
        if f > 1:  # (N, 1, L, W) -> (N, f, L, W / f), column j*f + i into channel i
            source = F.pad(source, (0, -width % f, 0, 0), mode="replicate")
            n, _, length, wide = source.shape
            source = source.reshape(n, length, wide // f, f).permute(0, 3, 1, 2)
        feats = self.head(source)
        feats = feats + self.body(feats)
        res = self.tail(feats)
        if self.grid == "lr":  # channel p * f + i -> row l * R + p, column j * f + i
            n, _, length, cols = res.shape
            res = res.reshape(n, self.factor, f, length, cols).permute(0, 3, 1, 4, 2)
            res = res.reshape(n, 1, length * self.factor, cols * f)[..., :width]
        return base + res
