"""Medical image data: streaming datasets for folders and CSV labels, and the bundled datasets
with fixed splits.

>>> from hyperinit.data import ImageFolder, load_split
>>> unlabelled = ImageFolder("scans/", channels=1)             # any folder, recursively
>>> train = load_split("chest_xray", "train", fraction=0.1)    # 10 % of the labels, stratified"""

from __future__ import annotations

from hyperinit.data.datasets import ImageFolder, LabelledImages
from hyperinit.data.io import find_images, image_to_tensor, read_image
from hyperinit.data.medical import (
    DriveVessels,
    data_root,
    drive_split,
    load_split,
    pretraining_files,
)

__all__ = [
    "DriveVessels",
    "ImageFolder",
    "LabelledImages",
    "data_root",
    "drive_split",
    "find_images",
    "image_to_tensor",
    "load_split",
    "pretraining_files",
    "read_image",
]
