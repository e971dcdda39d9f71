"""Multi-label chest X-rays with optional disease boxes, in the ChestX-ray14 layout.

A folder holds the images (directly or in ``images/``), a label CSV (``Image Index``,
``Finding Labels`` with ``|``-separated findings, as NIH's ``Data_Entry_2017*.csv``) and, for
scoring only, a box CSV (``Image Index``, ``Finding Label``, x, y, w, h, as
``BBox_List_2017.csv``). Images are decoded when an item is asked for.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from hyperinit.data.io import IMAGE_EXTENSIONS, find_images, image_to_tensor, read_image
from hyperinit.errors import DataError, LocalizationError, UnreadableImageError

__all__ = ["BOX_FINDINGS", "LocalizationImages", "load_localization_data"]

logger = logging.getLogger(__name__)

#: the eight findings with boxes in ChestX-ray14, in the seed's table order
BOX_FINDINGS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
)
#: box CSV spellings that differ from the label CSV's
ALIASES = {"Infiltrate": "Infiltration"}
#: grayscale normalisation (the ImageNet channel means, as hyperinit.c2l)
GRAY_MEAN, GRAY_STD = 0.449, 0.226


class LocalizationImages(Dataset):
    """Items ``(image, labels)``: a normalised ``(in_chans, S, S)`` tensor and a multi-hot
    float vector over :attr:`classes`.

    Attributes:
        files: image paths; labels: ``(N, C)`` float tensor; classes: class names;
        boxes: per image, true ``(class_name, x, y, w, h)`` in ``image_size`` pixels (empty
        lists without a box CSV).
    """

    def __init__(
        self,
        files: Sequence[str | Path],
        labels: Tensor,
        classes: Sequence[str],
        boxes: Sequence[Sequence[tuple]] | None = None,
        *,
        image_size: int = 256,
        in_chans: int = 1,
    ) -> None:
        if not files:
            raise DataError("the localisation dataset has no images.")
        if labels.shape != (len(files), len(classes)):
            raise DataError(
                f"labels of shape {tuple(labels.shape)} for {len(files)} images and "
                f"{len(classes)} classes"
            )
        if in_chans not in (1, 3):
            raise DataError(f"in_chans must be 1 or 3 for image files; got {in_chans}")
        self.files = [Path(f) for f in files]
        self.labels = labels.float()
        self.classes = list(classes)
        self.boxes = [list(b) for b in boxes] if boxes is not None else [[] for _ in files]
        self.image_size = int(image_size)
        self.in_chans = int(in_chans)
        self.unreadable: set[int] = set()

    def __len__(self) -> int:
        return len(self.files)

    def image(self, index: int) -> Tensor:
        """Image ``index`` as a normalised ``(in_chans, S, S)`` tensor."""
        img = read_image(self.files[index], 1).resize(
            (self.image_size, self.image_size), Image.BILINEAR
        )
        x = (image_to_tensor(img) - GRAY_MEAN) / GRAY_STD
        return x.repeat(self.in_chans, 1, 1)

    @property
    def skipped(self) -> int:
        """How many images training has found unreadable (and skipped) so far."""
        return len(self.unreadable)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        """Image ``index`` and its labels; an unreadable file is skipped with one warning and
        the next readable image stands in with its own labels, so a long run never stops on
        one bad file (:meth:`image` still raises for it)."""
        n = len(self.files)
        for i in ((index + k) % n for k in range(n)):
            if i in self.unreadable:
                continue
            try:
                return self.image(i), self.labels[i]
            except UnreadableImageError as e:
                self.unreadable.add(i)
                logger.warning("skipping unreadable image (%d so far): %s", self.skipped, e)
        raise DataError(f"none of the {n} images of the localisation dataset is readable.")

    def subset(self, indices: Sequence[int]) -> LocalizationImages:
        """The images at ``indices``, with their labels and boxes."""
        idx = list(indices)
        return LocalizationImages(
            [self.files[i] for i in idx], self.labels[idx], self.classes,
            [self.boxes[i] for i in idx], image_size=self.image_size, in_chans=self.in_chans,
        )  # fmt: skip

    def __repr__(self) -> str:
        pos = {c: int(v) for c, v in zip(self.classes, self.labels.sum(0))}
        return f"LocalizationImages({len(self)} images, {self.image_size} px, positives {pos})"


def _find_csv(folder: Path, pattern: str) -> Path | None:
    found = sorted(folder.glob(pattern))
    return found[0] if found else None


def _image_index(folder: Path) -> dict[str, Path]:
    """Stem -> file for every image under ``folder`` (labels may say .png for a .jpg copy)."""
    return {p.stem: p for p in find_images(folder) if p.suffix.lower() in IMAGE_EXTENSIONS}


def load_localization_data(
    path: str | Path | None = None,
    *,
    image_size: int = 256,
    in_chans: int = 1,
    classes: Sequence[str] = BOX_FINDINGS,
    labels_csv: str | Path | None = None,
    boxes_csv: str | Path | None = None,
    box_frame: float | None = 1024.0,
) -> LocalizationImages:
    """Images, image-level labels and (if present) boxes from a folder or a label CSV.

    Args:
        path: a folder (images directly or in ``images/``; ``Data_Entry*.csv`` and
            ``BBox_List*.csv`` in it) or a label CSV (images and an optional ``BBox_List*.csv``
            beside it, images possibly in ``images/``).
            Default: ``chestxray14_bbox`` in :func:`hyperinit.data.data_root`.
        image_size: side the images are resized to (boxes are scaled to it).
        classes: the findings to learn, in order; label-CSV findings not in it are ignored.
        labels_csv, boxes_csv: explicit CSV paths.
        box_frame: side of the square image the box coordinates refer to (1024 for
            ChestX-ray14, whose boxes refer to the 1024-px originals); ``None``: each image
            file's own size.

    Raises:
        DataError: no label CSV, missing columns, or listed images not found.
    """
    if path is None:
        from hyperinit.data import data_root

        path = data_root() / "chestxray14_bbox"
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path} does not exist: pass a folder of images or a label CSV.")
    folder = path if path.is_dir() else path.parent
    if labels_csv is None:
        labels_csv = path if path.is_file() else _find_csv(folder, "Data_Entry*.csv")
    if labels_csv is None:
        raise DataError(
            f"no label CSV in {folder}: add one with the columns 'Image Index' and "
            "'Finding Labels' ('|'-separated), or pass labels_csv="
        )
    if boxes_csv is None:
        boxes_csv = _find_csv(folder, "BBox_List*.csv")
    image_dir = folder / "images" if (folder / "images").is_dir() else folder
    index = _image_index(image_dir)
    names = list(classes)
    pos = {c: k for k, c in enumerate(names)}
    files: list[Path] = []
    rows: list[list[float]] = []
    missing: list[str] = []
    with open(labels_csv, newline="") as fh:
        reader = csv.DictReader(fh)
        need = {"Image Index", "Finding Labels"} - set(reader.fieldnames or [])
        if need:
            raise DataError(f"{labels_csv} has no column(s) {sorted(need)}")
        for r in reader:
            stem = Path(r["Image Index"]).stem
            if stem not in index:
                missing.append(r["Image Index"])
                continue
            y = [0.0] * len(names)
            for f in r["Finding Labels"].split("|"):
                f = ALIASES.get(f.strip(), f.strip())
                if f in pos:
                    y[pos[f]] = 1.0
            files.append(index[stem])
            rows.append(y)
    if missing:
        raise DataError(
            f"{len(missing)} images named in {labels_csv} are not under {image_dir}, e.g. "
            f"{missing[0]}"
        )
    if not files:
        raise DataError(f"{labels_csv} lists no images.")
    boxes: list[list[tuple]] = [[] for _ in files]
    if boxes_csv is not None:
        where = {f.stem: i for i, f in enumerate(files)}
        with open(boxes_csv, newline="") as fh:
            reader2 = csv.reader(fh)
            next(reader2, None)
            for r in reader2:
                if len(r) < 6 or Path(r[0]).stem not in where:
                    continue
                name = ALIASES.get(r[1].strip(), r[1].strip())
                if name not in pos:
                    continue
                i = where[Path(r[0]).stem]
                frame = box_frame
                if frame is None:
                    with Image.open(files[i]) as im:
                        frame = float(max(im.size))
                s = image_size / frame
                x, y, w, h = (float(v) * s for v in r[2:6])
                boxes[i].append((name, x, y, w, h))
    labels = torch.tensor(rows, dtype=torch.float32)
    ds = LocalizationImages(files, labels, names, boxes, image_size=image_size, in_chans=in_chans)
    logger.info("%r from %s", ds, labels_csv)
    return ds


def check_labels(labels: Tensor, classes: Sequence[str]) -> None:
    """Raise if some class has no positive image (its branch could not learn)."""
    empty = [c for c, v in zip(classes, labels.sum(0)) if v <= 0]
    if empty:
        raise LocalizationError(
            f"no positive image for class(es) {empty}: their branches cannot learn. Drop "
            "them from the classes (num_classes and class_names) or add images that have them."
        )
