"""In-silico experiments on models of visual cortex (docs/INSILICO.md).

numpy-only and shared by both sides (the client runs them through PredictClip, the report pages read their
results): `stimuli` (drifting gratings, sparse noise), `experiment` (run a protocol on any `ResponseModel`),
`tuning` and `receptive_fields` (the fits), `results` (files), `truth_check` (agreement with the synthetic
ground truth), `generator_model` (the synthetic generator's own noise-free response function).
`mei` (most exciting inputs by gradient ascent) is the one torch module: import it only on the training side.
"""
