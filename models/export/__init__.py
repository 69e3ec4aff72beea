"""ONNX export (torch): per-mouse clip and step graphs in a Triton-layout model repository."""
