"""Experiments that train several models and compare them: BLT patching schemes vs token
models at matched FLOPs, ZeTT embedding inits under unseen tokenizers, patch-level vs
token-level training."""
