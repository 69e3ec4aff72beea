"""Print the wire shape of tritonclient's copy of Triton's protocol (grpc_service.proto + model_config.proto).

Run as a subprocess (tritonclient's `inference` protos clash with the server's stubs in one process):
    python triton_protocol_dump.py  ->  one JSON object on stdout (see proto_shape.describe)
"""

import json
import sys
from pathlib import Path

from tritonclient.grpc import model_config_pb2, service_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proto_shape import describe

print(json.dumps(describe([service_pb2.DESCRIPTOR, model_config_pb2.DESCRIPTOR])))
