"""The runtime layer shared by training, inference and evaluation (layer 3, below them all).

Intensity normalisation and the robust intensity range (normalise.py) and the image metrics (metrics.py);
nothing here imports ``medsr.training``, ``medsr.inference``, ``medsr.evaluation``, jobs or the CLI.
"""
