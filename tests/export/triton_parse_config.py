"""Parse config.pbtxt files as Triton's ModelConfig; print one JSON summary per file.

Run in a subprocess: tritonclient registers Triton's `inference` protos, which clash with the server's own
stubs in one process (TEAM-BRIEF: tritonclient). Exit status 1 with the parse error on a malformed file.
"""

import json
import sys

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

for path in sys.argv[1:]:
    config = model_config_pb2.ModelConfig()
    try:
        with open(path) as f:
            text_format.Parse(f.read(), config)
    except text_format.ParseError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        sys.exit(1)
    states = config.sequence_batching.state
    print(
        json.dumps(
            {
                "path": path,
                "name": config.name,
                "platform": config.platform,
                "max_batch_size": config.max_batch_size,
                "inputs": {i.name: list(i.dims) for i in config.input},
                "outputs": {o.name: list(o.dims) for o in config.output},
                "data_types": sorted(
                    {model_config_pb2.DataType.Name(t.data_type) for t in [*config.input, *config.output]}
                ),
                "sequence_batching": config.HasField("sequence_batching"),
                "dynamic_batching": config.HasField("dynamic_batching"),
                "states": [
                    {
                        "input_name": s.input_name,
                        "output_name": s.output_name,
                        "dims": list(s.dims),
                        "zero_initial": len(s.initial_state) == 1 and s.initial_state[0].zero_data,
                    }
                    for s in states
                ],
            }
        )
    )
