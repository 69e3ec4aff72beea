"""Drive our server with tritonclient.grpc, unchanged (run as a subprocess: see test_server_kserve.py).

tritonclient registers Triton's own `inference.*` protos; importing it next to our stubs in one process fails
(duplicate symbols), so this script never imports project code.

Usage: python triton_client_check.py TARGET MODEL INPUTS.npz OUT.npz; prints a JSON summary on stdout.
"""

import json
import sys

import numpy as np
import tritonclient.grpc as triton


def main(target: str, model: str, inputs_path: str, out_path: str) -> None:
    client = triton.InferenceServerClient(url=target)
    data = np.load(inputs_path)
    metadata = client.get_model_metadata(model, as_json=True)
    inputs = []
    for name in ("video", "behavior", "pupil_center"):
        array = data[name]
        tensor = triton.InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = client.infer(model, inputs, outputs=[triton.InferRequestedOutput("responses")], request_id="r-1")
    np.savez(out_path, responses=result.as_numpy("responses"))
    try:
        client.get_model_metadata("no-such-model")
        unknown_error = ""
    except triton.InferenceServerException as exc:
        unknown_error = f"{exc.status()} {exc.message()}"
    summary = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "server": client.get_server_metadata(as_json=True),
        "model_ready": client.is_model_ready(model),
        "metadata": metadata,
        "response": result.get_response(as_json=True),
        "unknown_error": unknown_error,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main(*sys.argv[1:5])
