"""Thick-slice simulation as MONAI transforms (physics in functional.py, noise in noise.py)."""

from medsr.transforms.array import (
    RandSimulateThickSlices,
    SimulateThickSlices,
    default_axis,
    simulate_thick_slices,
)
from medsr.transforms.dictionary import RandSimulateThickSlicesd, SimulateThickSlicesd
from medsr.transforms.noise import NoiseModel, parse_noise

__all__ = [
    "NoiseModel",
    "RandSimulateThickSlices",
    "RandSimulateThickSlicesd",
    "SimulateThickSlices",
    "SimulateThickSlicesd",
    "default_axis",
    "parse_noise",
    "simulate_thick_slices",
]
