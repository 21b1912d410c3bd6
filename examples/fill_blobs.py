"""Fill the parameter blobs of a small convolutional net with Caffe's fillers and print a summary.

Run after `pip install .`:  python examples/fill_blobs.py
"""
import numpy as np

import fillers

# (layer, blob shape, filler) -- a LeNet-like net written out by hand.
BLOBS = [
    ("conv1", (20, 1, 5, 5), "xavier"),
    ("conv1 bias", (20,), "constant"),
    ("conv2", (50, 20, 5, 5), 'type: "msra" variance_norm: FAN_OUT'),
    ("ip1", (500, 800), 'type: "gaussian" std: 0.01 sparse: 15'),
    ("ip1 bias", (500,), {"type": "constant", "value": 0.1}),
    ("upsample", (10, 1, 4, 4), "bilinear"),
    ("rows", (10, 32), "positive_unitball"),
]

for name, shape, filler in BLOBS:
    blob = fillers.fill(np.empty(shape, np.float32), filler, seed=1701)
    print(f"{name:12s} {str(shape):18s} mean {blob.mean():+.5f}  std {blob.std():.5f}  "
          f"min {blob.min():+.5f}  max {blob.max():+.5f}")
