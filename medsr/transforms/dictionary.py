"""Dictionary wrappers of the thick-slice transforms: ``keys="hr"`` adds ``"lr"``.

Each output key defaults to ``"lr"`` for the input key ``"hr"`` and ``"<key>_lr"`` for any other key;
the input entries are left as they are.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable, RandomizableTransform
from monai.utils import ensure_tuple

from medsr.errors import MedsrError
from medsr.transforms import functional as F
from medsr.transforms.array import AxisSpec, RandSimulateThickSlices, SimulateThickSlices
from medsr.transforms.noise import NoiseModel


def output_keys_for(keys: Sequence[Hashable], output_keys: KeysCollection | None) -> tuple[Hashable, ...]:
    """Output keys for ``keys``: given ones (same count), else ``"lr"`` for ``"hr"`` and ``"<key>_lr"``."""
    if output_keys is None:
        return tuple("lr" if k == "hr" else f"{k}_lr" for k in keys)
    out = ensure_tuple(output_keys)
    if len(out) != len(keys):
        raise MedsrError(f"output_keys {out} must name one output for each of the keys {tuple(keys)}")
    return out


class SimulateThickSlicesd(MapTransform, Randomizable):
    """Dictionary version of :class:`SimulateThickSlices`: ``d[output_key] = simulate(d[key])``."""

    backend = SimulateThickSlices.backend

    def __init__(
        self,
        keys: KeysCollection,
        slice_thickness: float | None,
        slice_spacing: float | None = None,
        axis: AxisSpec = None,
        profile: F.Profile = "gaussian",
        noise: str | NoiseModel | None = None,
        kernel_step: float | None = None,
        output_keys: KeysCollection | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.output_keys = output_keys_for(self.keys, output_keys)
        self.simulate = SimulateThickSlices(slice_thickness, slice_spacing, axis, profile, noise, kernel_step)

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> SimulateThickSlicesd:
        super().set_random_state(seed, state)
        self.simulate.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        """Nothing to draw up front (noise is drawn by the array transform)."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, out_key in self.key_iterator(d, self.output_keys):
            d[out_key] = self.simulate(d[key])
        return d


class RandSimulateThickSlicesd(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`RandSimulateThickSlices`: one parameter draw per call for all keys."""

    backend = RandSimulateThickSlices.backend

    def __init__(
        self,
        keys: KeysCollection,
        thickness_range: float | Sequence[float],
        spacing_range: float | Sequence[float] | None = None,
        axis: AxisSpec | Sequence[AxisSpec] = None,
        profiles: F.Profile | Sequence[F.Profile] = ("gaussian",),
        noise: str | None = None,
        noise_range: float | Sequence[float] | None = None,
        noise_prob: float = 1.0,
        kernel_step: float | None = None,
        output_keys: KeysCollection | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob=1.0)
        self.output_keys = output_keys_for(self.keys, output_keys)
        self.simulate = RandSimulateThickSlices(
            thickness_range, spacing_range, axis, profiles, noise, noise_range, noise_prob, kernel_step
        )

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandSimulateThickSlicesd:
        super().set_random_state(seed, state)
        self.simulate.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        self.simulate.randomize()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        for key, out_key in self.key_iterator(d, self.output_keys):
            d[out_key] = self.simulate(d[key], randomize=False)
        return d
