"""Data: the BLT byte codec, hash n-gram ids, corpora (tfds array_record, no TensorFlow),
packing. Import the submodules: `jaxtok.data.codec` does not load tensorflow_datasets."""
