"""Pre-fill the Hugging Face cache with hyperinit's modality checkpoints, for offline use later.

python examples/download_checkpoints.py [MODALITY ...] [--cache-dir DIR]

Without modalities, fetches all of them. A checkpoint that cannot be fetched (offline, 404) is
reported; initialize() then falls back to the copy embedded in the package. Afterwards set
HF_HUB_OFFLINE=1 and everything loads from the cache.
"""

import argparse

from hyperinit.errors import CheckpointError
from hyperinit.hub import download_checkpoint, list_checkpoints
from hyperinit.modalities import MODALITIES

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("modalities", nargs="*", default=list(MODALITIES))
parser.add_argument("--cache-dir", default=None)
args = parser.parse_args()

for name in args.modalities:
    try:
        folder = download_checkpoint(name, cache_dir=args.cache_dir)
        print(f"{name:<11} verified in {folder}")
    except CheckpointError as e:
        print(f"{name:<11} not downloaded ({type(e).__name__}); the embedded copy will be used")

for row in list_checkpoints(cache_dir=args.cache_dir):
    state = "trained" if row.trained else "untrained reference"
    print(f"{row.name:<11} loads from {row.source:<8} ({state}, {row.size_bytes / 1e6:.1f} MB)")
