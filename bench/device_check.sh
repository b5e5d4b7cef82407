#!/usr/bin/env bash
# Every accelerator number of the README in one short run (each part under a timeout, < 14 min):
#   1. the kernel benchmark: Pallas vs XLA vs dot_product_attention at 4k/8k/16k bytes;
#   2. the main model's (configs/entropy_model.py) training MFU in bfloat16;
#   3. BLT training bytes/s against its FLOP-matched byte transformer;
#   4. BLT training bytes/s with its host input path: one vs two device round trips per batch;
#   5. BLT generation bytes/s at 256 and 4096 bytes of context, batch 1 and 8, and prefill;
# then one table: $OUT/device_check.json and $OUT/device_check.md (OUT defaults to bench/out).
# On a machine whose JAX sees no accelerator it says so and exits 0.
#
#   bench/device_check.sh            # from the repository root, jaxtok installed
#
# On a lent machine without internet, install jaxtok with `pip install --no-deps -e .` and carry
# wheels of what its image lacks (the device tool's README says how); the script names them.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out}
backend=$(python3 -c "import jax; print(jax.default_backend())") || exit 1
if [[ "$backend" == cpu ]]; then
  echo "no accelerator: JAX's default backend is cpu; nothing to measure (exit 0)"
  exit 0
fi
missing=$(python3 -c "
import importlib.util
mods = ['flax', 'optax', 'orbax.checkpoint', 'ml_collections', 'tensorflow_datasets',
        'array_record', 'tensorboardX', 'tokenizers', 'gguf', 'absl', 'tqdm', 'jaxtok']
print(' '.join(m for m in mods if importlib.util.find_spec(m.split('.')[0]) is None))")
if [[ -n "$missing" ]]; then
  echo "missing Python packages: $missing (carry their wheels, see the device tool's README)"
  exit 1
fi
mkdir -p "$OUT"
python3 -c "import jax; print('devices:', jax.devices())" | tee "$OUT/devices.txt"
export PYTHONUNBUFFERED=1
timeout 300 python3 bench/kernels.py --repeats 3 --json "$OUT/kernels.json" \
  > "$OUT/kernels.md" 2>&1 || echo "kernels: failed or timed out (see $OUT/kernels.md)"
timeout 120 python3 bench/train_throughput.py --config=configs/entropy_model.py \
  --config.model.dtype=bfloat16 --repeats=3 --notorch --json="$OUT/mfu.json" \
  > "$OUT/mfu.txt" 2>&1 || echo "mfu: failed or timed out (see $OUT/mfu.txt)"
timeout 120 python3 bench/blt_throughput.py --rounds 3 --no_torch --json "$OUT/blt.json" \
  > "$OUT/blt.txt" 2>&1 || echo "blt: failed or timed out (see $OUT/blt.txt)"
timeout 180 python3 bench/blt_throughput.py --input_path --rounds 3 --json "$OUT/blt_input.json" \
  > "$OUT/blt_input.txt" 2>&1 || echo "blt input path: failed or timed out (see $OUT/blt_input.txt)"
timeout 120 python3 bench/generation.py --contexts 256,4096 --batches 1,8 --uncached_new 0 \
  --no-transformers --json "$OUT/generation.json" > "$OUT/generation.txt" 2>&1 \
  || echo "generation: failed or timed out (see $OUT/generation.txt)"
python3 bench/device_report.py "$OUT"
