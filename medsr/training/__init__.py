"""``medsr train``: 3-D networks learned from data manifests (docs/training.md).

config.py (typed, frozen config), data.py (MONAI pipeline, paired patches), loop.py (optimisation),
validate.py, checkpoint.py (safetensors, never pickle), normalise.py, losses.py, distributed.py
(torchrun/DDP), run_setup.py, records.py (metrics.csv, TensorBoard).
"""
