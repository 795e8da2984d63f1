"""The runtime layer shared by training and inference: where tensors compute and at which precision.

Imports only torch and :mod:`medsr.errors`; nothing here imports ``medsr.inference``, ``medsr.training``
or ``medsr.cli`` (docs/devices.md).
"""
