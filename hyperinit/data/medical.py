"""The bundled medical datasets (``../shared/data`` in a checkout) with fixed, recorded splits.

Splits are deterministic functions of the sorted file names, so every test, benchmark and
pretraining run sees the same images in the same split, on any machine:

- ``chest_xray`` (Kermany): the official test split; ``val`` is every 10th image of each class
  of the official training split, ``train`` the rest.
- ``ct_covid`` and ``busi``: no official split; within each class (files sorted by name) image
  ``i`` is ``test`` if ``i % 5 == 0``, ``val`` if ``i % 10 == 1``, else ``train``
  (20 / 10 / 70 %).
- ``dermamnist``: the official DermaMNIST split named in each file name; labels from
  ``HAM10000_metadata.csv`` (MedMNIST's class order).
- ``drive``: the official 20 training / 20 test fundus images with vessel and field-of-view masks.

Self-supervised pretraining (:func:`pretraining_files`) reads ``train`` and ``val`` images only,
never ``test`` images, so benchmarks stay honest.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset

from hyperinit.data.datasets import LabelledImages, Transform
from hyperinit.data.io import find_images, image_to_tensor, read_image
from hyperinit.errors import DataError

__all__ = [
    "DATASETS",
    "SPLIT_RULES",
    "DriveVessels",
    "data_root",
    "drive_split",
    "load_split",
    "pretraining_files",
]

#: dataset name -> folder under the data root.
DATASETS: dict[str, str] = {
    "chest_xray": "chest_xray_kermany",
    "ct_covid": "ct_covid",
    "busi": "ultrasound_busi",
    "dermamnist": "dermoscopy_dermamnist",
    "drive": "fundus_drive",
}

#: How each dataset's split is made, for recording beside results.
SPLIT_RULES: dict[str, str] = {
    "chest_xray": "official test; val = every 10th image per class of official train",
    "ct_covid": "per class, sorted: test i%5==0, val i%10==1, train otherwise",
    "busi": "per class, sorted: test i%5==0, val i%10==1, train otherwise",
    "dermamnist": "official DermaMNIST split (file name); labels from HAM10000_metadata.csv",
    "drive": "official DRIVE training (20) / test (20)",
}

_ALIASES = {
    "xray": "chest_xray",
    "chest_xray_kermany": "chest_xray",
    "ct": "ct_covid",
    "ultrasound": "busi",
    "ultrasound_busi": "busi",
    "dermoscopy": "dermamnist",
    "dermoscopy_dermamnist": "dermamnist",
    "fundus": "drive",
    "fundus_drive": "drive",
}
_SPLITS = ("train", "val", "test")
_DERMA_CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


def data_root(root: str | Path | None = None) -> Path:
    """The folder holding the bundled datasets.

    Order: ``root``; ``$HYPERINIT_DATA``; ``shared/data`` beside the source checkout;
    ``../shared/data`` from the working directory.

    Raises:
        DataError: none of them exists.
    """
    if root is not None:
        candidates = [Path(root).expanduser()]
    else:
        candidates = []
        if os.environ.get("HYPERINIT_DATA"):
            candidates.append(Path(os.environ["HYPERINIT_DATA"]).expanduser())
        candidates.append(Path(__file__).resolve().parents[3] / "shared" / "data")
        candidates.append(Path.cwd().parent / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c
    raise DataError(
        f"medical data folder not found (looked in {', '.join(map(str, candidates))}): "
        "pass root= or set HYPERINIT_DATA to the folder holding chest_xray_kermany/, ct_covid/, ..."
    )


def _dataset_name(name: str) -> str:
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)}.")
    return key


def _folder(name: str, root: str | Path | None) -> Path:
    folder = data_root(root) / DATASETS[name]
    if not folder.is_dir():
        raise DataError(f"{folder} does not exist: the data root lacks the {name} dataset.")
    return folder


def _rule_split(i: int) -> str:
    return "test" if i % 5 == 0 else "val" if i % 10 == 1 else "train"


def _split_files(name: str, split: str, folder: Path) -> tuple[list[Path], list[int], list[str]]:
    if name == "chest_xray":
        classes = ["NORMAL", "PNEUMONIA"]
        files, labels = [], []
        for k, c in enumerate(classes):
            source = folder / ("test" if split == "test" else "train") / c
            for i, f in enumerate(find_images(source)):
                if split == "test" or (i % 10 == 0) == (split == "val"):
                    files.append(f)
                    labels.append(k)
        return files, labels, classes
    if name in ("ct_covid", "busi"):
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
        files, labels = [], []
        for k, c in enumerate(classes):
            for i, f in enumerate(find_images(folder / c)):
                if _rule_split(i) == split:
                    files.append(f)
                    labels.append(k)
        return files, labels, classes
    # dermamnist
    import csv

    with (folder / "HAM10000_metadata.csv").open(newline="") as fh:
        dx = {row["image_id"]: row["dx"] for row in csv.DictReader(fh)}
    official = "val" if split == "val" else split
    files = sorted((folder / "images").glob(f"DermaMNIST_{official}_*.jpg"))
    labels = [_DERMA_CLASSES.index(dx[f.stem]) for f in files]
    return files, labels, list(_DERMA_CLASSES)


def load_split(
    name: str,
    split: str,
    root: str | Path | None = None,
    fraction: float = 1.0,
    seed: int = 0,
    transform: Transform | None = None,
    channels: int | None = None,
) -> LabelledImages:
    """One split of a bundled classification dataset as :class:`LabelledImages`.

    Args:
        name: ``chest_xray``, ``ct_covid``, ``busi`` or ``dermamnist`` (or the modality names
            ``xray``, ``ct``, ``ultrasound``, ``dermoscopy``).
        split: ``train``, ``val`` or ``test`` (see the module docstring for the rules).
        fraction: keep this stratified fraction of each class (at least one image per class),
            drawn with ``seed``: for label-scarce experiments.
        transform, channels: as in :class:`LabelledImages`.
    """
    key = _dataset_name(name)
    if key == "drive":
        raise DataError("drive is a segmentation dataset: use drive_split().")
    if split not in _SPLITS:
        raise DataError(f"unknown split {split!r}; choose from {_SPLITS}.")
    if not 0 < fraction <= 1:
        raise DataError(f"fraction must be in (0, 1], got {fraction}.")
    files, labels, classes = _split_files(key, split, _folder(key, root))
    if fraction < 1:
        rng = random.Random(seed)
        keep: list[int] = []
        for k in range(len(classes)):
            members = [i for i, y in enumerate(labels) if y == k]
            if members:
                keep += rng.sample(members, max(1, round(fraction * len(members))))
        keep.sort()
        files = [files[i] for i in keep]
        labels = [labels[i] for i in keep]
    return LabelledImages(files, labels, classes, transform, channels)


JointTransform = Callable[[Image.Image, Image.Image, Image.Image], Any]


class DriveVessels(Dataset):
    """DRIVE fundus images with their vessel annotation (1st manual) and field-of-view mask.

    Items are ``joint_transform(image, vessels, fov)`` on PIL images (RGB, L, L), or without
    one, tensors ``(3, H, W)`` in [0, 1] and binary masks ``(1, H, W)``. Apply random crops
    and flips jointly in ``joint_transform`` so the masks stay aligned.
    """

    def __init__(self, folder: Path, split: str, joint_transform: JointTransform | None) -> None:
        sub = folder / ("training" if split == "train" else "test")
        self.images = find_images(sub / "images")
        ids = [p.stem.split("_")[0] for p in self.images]
        self.vessels = [sub / "1st_manual" / f"{i}_manual1.gif" for i in ids]
        self.fovs = [sub / "mask" / f"{p.stem}_mask.gif" for p in self.images]
        missing = [p for p in self.vessels + self.fovs if not p.exists()]
        if missing:
            raise DataError(f"DRIVE annotation missing: {missing[0]}")
        self.joint_transform = joint_transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Any:
        image = read_image(self.images[index], 3)
        vessels = read_image(self.vessels[index], 1)
        fov = read_image(self.fovs[index], 1)
        if self.joint_transform is not None:
            return self.joint_transform(image, vessels, fov)
        return (
            image_to_tensor(image),
            (image_to_tensor(vessels) > 0.5).float(),
            (image_to_tensor(fov) > 0.5).float(),
        )


def drive_split(
    split: str, root: str | Path | None = None, joint_transform: JointTransform | None = None
) -> DriveVessels:
    """The DRIVE ``train`` (20 images) or ``test`` (20) split for vessel segmentation."""
    if split not in ("train", "test"):
        raise DataError(f"DRIVE has splits 'train' and 'test', not {split!r}.")
    return DriveVessels(_folder("drive", root), split, joint_transform)


_PRETRAINING = {
    "xray": [("chest_xray", ("train", "val"))],
    "ct": [("ct_covid", ("train", "val"))],
    "ultrasound": [("busi", ("train", "val"))],
    "dermoscopy": [("dermamnist", ("train",))],
    "fundus": [("drive", ("train",))],
}


def pretraining_files(modality: str, root: str | Path | None = None) -> list[Path]:
    """Unlabelled images a modality's checkpoint is pretrained on: training images only
    (``train`` and ``val`` splits; DermaMNIST ``train`` only; DRIVE training images), never a
    test image. ``mixed`` is all five modalities together."""
    from hyperinit.modalities import resolve_modality

    name = resolve_modality(modality)
    parts = list(_PRETRAINING) if name == "mixed" else [name]
    files: list[Path] = []
    for part in parts:
        for dataset, splits in _PRETRAINING[part]:
            if dataset == "drive":
                files += drive_split("train", root).images
            else:
                for split in splits:
                    files += load_split(dataset, split, root).files
    return files
