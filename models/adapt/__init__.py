"""Adapt a trained model to a new recording: fit readouts for new neurons on the frozen shared core.

`sensorium-serve adapt --base RUN --data NEW/public --out RUN2` (cli.py) -> `adapter.adapt` -> a run folder
(`RUN2/best.pt`, the checkpoint contract of models/training/checkpoint.py) that `sensorium-serve export` turns
into models of the new mice. See docs/TRAINING.md ("A new recording, served in minutes").
"""
