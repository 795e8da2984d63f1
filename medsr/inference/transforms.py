"""MONAI-style transforms that upscale a volume's through-plane axis (wrapping :func:`medsr.upscale`)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from medsr.inference.predict import upscale


class Upscale(Transform):
    """Upscale a (1, X, Y, Z) MetaTensor along its through-plane axis; the affine follows the grid.

    Args:
        factor / spacing: upscaling factor, or target slice spacing in mm (default: finest in-plane).
        axis: array axis or world letter (default: the thickest axis).
        method: ``selfsup``, ``model`` (with ``model=CKPT``), ``bspline``, ``linear`` or ``nearest``.
        options: passed to :func:`medsr.inference.predict.upscale` (thickness, budget_s, steps, seed...).
    """

    def __init__(
        self,
        factor: float | None = None,
        spacing: float | None = None,
        axis: int | str | None = None,
        method: str = "selfsup",
        **options: Any,
    ) -> None:
        self.factor = factor
        self.spacing = spacing
        self.axis = axis
        self.method = method
        self.options = options

    def __call__(self, volume: MetaTensor) -> MetaTensor:
        return upscale(
            volume,
            factor=self.factor,
            spacing=self.spacing,
            axis=self.axis,
            method=self.method,
            **self.options,
        )


class Upscaled(MapTransform):
    """Dictionary version of :class:`Upscale`: replaces each key's volume with its upscaled version."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False, **kwargs: Any) -> None:
        super().__init__(keys, allow_missing_keys)
        self.upscaler = Upscale(**kwargs)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.upscaler(d[key])
        return d
