#!/bin/bash
# Serving benchmark on a device machine (16 cores; its Python lacks grpcio-health-checking/-reflection, carried
# in build/devdeps): latency with 1 onnxruntime thread, then latency + capacity with 8.
# Usage: bash bench/device_bench.sh   (writes $OUT/serving_t1.json, $OUT/serving_t8.json, $OUT/bench.log)
export PYTHONPATH=$PWD/build/devdeps
python3 -c "import server.cli as c; c.build_parser(); import server.app" || exit 3
{
  python3 bench/bench_serving.py --repeats 3 --frames 300 --threads 1 --skip-capacity --json "$OUT/serving_t1.json"
  python3 bench/bench_serving.py --repeats 3 --frames 300 --threads 8 --capacity-seconds 3 --max-streams 256 \
    --client-procs 6 --json "$OUT/serving_t8.json"
} 2>&1 | tee "$OUT/bench.log"
