"""Training of SENSORIUM models: Poisson loss, AdamW, reduce-on-plateau, early stopping on oracle correlation.

Entry points: `sensorium-serve train` (models/training/cli.py), `models.training.trainer.train`, and
`models.training.evaluate.evaluate_against_truth`. This package's `__init__` stays free of torch imports so the
CLI can register the subcommand on a serving install.
"""
