"""The BLT comparison (python -m experiments.blt_compare), with two presets.

  python -m experiments.blt_compare --config=configs/blt_compare.py:small --workdir=workdirs/cmp
  python -m experiments.blt_compare --config=configs/blt_compare.py:large --workdir=workdirs/cmp_l

small: tiny models on 128-byte rows, a few minutes on a laptop CPU (CI-sized);
large: the default BLT sizes (configs/blt_*.py) and their FLOP-matched baselines
on 512-byte rows; its numbers are in the README. Every arm is a full training
config under `arms.<name>`, overridable like any field
(`--config.arms.bpe.model.n_layers=6`).
"""

from ml_collections import config_dict

from configs import blt_base, blt_baseline_bpe, blt_baseline_bytes, entropy_model

ARMS = "blt_entropy,blt_space,blt_static,bytes,bpe"


def _common(c, data, train):
  c.data.update(data)
  c.train.update(train)
  c.train.progress_bar = False
  return c


def get_config(preset: str = "small"):
  if preset not in ("small", "large"):
    raise ValueError(f"blt_compare preset must be 'small' or 'large', got {preset!r}")
  small = preset == "small"
  data = dict(seq_len=128 if small else 256, batch_size=8, eval_batches=8 if small else 32)
  train = dict(lr=3e-3, log_every=25)

  em = _common(entropy_model.get_config(), data, train)
  if small:
    em.model.update(d_model=64, n_layers=2, n_heads=4, sliding_window=128)
    em.train.update(steps=150, warmup_steps=15, eval_every=0, ckpt_every=150)
  else:
    em.model.update(d_model=128, n_layers=2, n_heads=4, sliding_window=512)
    em.train.update(steps=600, warmup_steps=60, eval_every=0, ckpt_every=300)

  arms = config_dict.ConfigDict()
  for scheme in ("entropy", "space", "static"):
    a = _common(blt_base.get_config(scheme), data, train)
    if small:
      a.model.update(
        d_local=32,
        d_global=64,
        n_layers_global=2,
        n_layers_decoder=1,
        n_heads_local=2,
        cross_attn_heads=2,
        hash_vocab=1024,
        local_window=128,
      )
    # Room for rows of 2.67 bytes/patch (the target is 4); overflow is reported.
    a.patching.update(patch_size=4, max_patch_length=16, max_patches=3 * a.data.seq_len // 8)
    arms[f"blt_{scheme}"] = a
  b = _common(blt_baseline_bytes.get_config(), data, train)
  t = _common(blt_baseline_bpe.get_config(), data, train)
  if small:
    b.model.update(d_model=64, n_layers=2)
    t.data.update(tokenizer="bpe:1024", seq_len=40)  # ~3 bytes/token: ~128-byte rows
    t.model.update(d_model=64, n_layers=2)
  else:
    t.data.seq_len = 80  # ~3.3 bytes/token: ~256-byte rows
  arms.bytes, arms.bpe = b, t

  c = config_dict.ConfigDict()
  c.entropy_model = em
  c.arms = arms
  c.arm_names = ARMS
  c.reference_arm = "blt_entropy"
  c.reference_steps = 150 if small else 400
  c.target_bytes_per_patch = 4.0  # entropy threshold calibrated to the static patch size
  c.calibration_bytes = 65536  # of training text to calibrate the entropy threshold on
  c.warmup_fraction = 0.1
  return c
