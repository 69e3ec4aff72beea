"""Serving side of sensorium-serve (grpc.aio + onnxruntime). Never imports torch."""
