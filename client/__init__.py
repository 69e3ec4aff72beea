"""Client library and command-line clients of sensorium-serve. Never imports torch."""
