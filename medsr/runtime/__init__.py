"""The runtime layer shared by training, inference and evaluation (layer 3, below them all).

Where tensors compute and at which precision (device.py, docs/devices.md), the checkpoint format
(checkpoint.py), intensity normalisation and the robust intensity range (normalise.py), slice-batched
sliding-window prediction (sliding.py) and the image metrics (metrics.py). Nothing here imports
``medsr.training``, ``medsr.inference``, ``medsr.evaluation``, ``medsr.jobs`` or ``medsr.cli``.
"""
