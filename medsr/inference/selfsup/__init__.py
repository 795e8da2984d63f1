"""Self-supervised super-resolution learned from the scan itself (``--method selfsup``).

The steps, in the order :func:`medsr.inference.selfsup.pipeline.selfsup_upscale` runs them:
``config`` (SelfSupConfig), ``thickness`` (is the slice thinner than its spacing?), ``pairs`` (training
pairs from the in-plane slices), ``noise`` (the scan's noise, matched in training inputs), ``sampler``
(random edge-weighted patches), ``train`` (the training loop), ``apply`` (the network over the
through-plane planes), ``store`` (``--save-model`` / ``--model``) and ``progress`` (the bars).
"""
