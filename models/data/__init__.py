"""SENSORIUM 2023 data: reader and writer of the released layout, synthetic generator, torch Dataset."""
