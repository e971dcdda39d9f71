"""Datasets that stream images from disk: unlabelled folders, class folders and CSV labels.

Files are decoded when an item is asked for, never all at once. A file that cannot be read is
skipped with one warning and counted in :attr:`skipped`; the item falls back to the next readable
file (of the same class, for labelled data), so a long run never stops on one bad image. When every
candidate is unreadable, :class:`~hyperinit.errors.DataError` says so.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset

from hyperinit.data.io import find_images, image_to_tensor, read_image
from hyperinit.errors import DataError, UnreadableImageError

__all__ = ["ImageFolder", "LabelledImages"]

log = logging.getLogger(__name__)

Transform = Callable[[Image.Image], Any]


class _FileDataset(Dataset):
    """Shared decoding, skipping and counting of unreadable files."""

    def __init__(
        self, files: Sequence[str | Path], transform: Transform | None, channels: int | None
    ) -> None:
        if not files:
            raise DataError("the dataset has no files.")
        if channels not in (None, 1, 3):
            raise DataError(f"channels must be 1, 3 or None, got {channels!r}")
        self.files: list[Path] = [Path(f) for f in files]
        self.transform = transform
        self.channels = channels
        self.unreadable: set[int] = set()

    @property
    def skipped(self) -> int:
        """How many files this process has found unreadable (and skipped) so far."""
        return len(self.unreadable)

    def __len__(self) -> int:
        return len(self.files)

    def _candidates(self, index: int) -> Sequence[int]:
        n = len(self.files)
        return [(index + k) % n for k in range(n)]

    def _load(self, index: int) -> tuple[int, Any]:
        """The first readable file from ``index`` on, transformed; and its index."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} files")
        index %= len(self)
        for i in self._candidates(index):
            if i in self.unreadable:
                continue
            try:
                img = read_image(self.files[i], self.channels)
            except UnreadableImageError as e:
                self.unreadable.add(i)
                log.warning("skipping unreadable image (%d so far): %s", self.skipped, e)
                continue
            return i, image_to_tensor(img) if self.transform is None else self.transform(img)
        raise DataError(
            f"no readable image left to stand in for {self.files[index]}: "
            f"{self.skipped} of {len(self)} files are unreadable."
        )


class ImageFolder(_FileDataset):
    """Unlabelled images under a folder (searched recursively), for self-supervised training.

    Args:
        root: a folder, or a list of image files.
        transform: applied to each PIL image (mode L or RGB). Without one, items are float
            tensors (C, H, W) in [0, 1].
        channels: 1 (grayscale), 3 (RGB) or None (each file's own).
        recursive: search sub-folders too.

    Raises:
        DataError: the folder does not exist or holds no images.
    """

    def __init__(
        self,
        root: str | Path | Sequence[str | Path],
        transform: Transform | None = None,
        channels: int | None = None,
        recursive: bool = True,
    ) -> None:
        if isinstance(root, str | Path):
            files: Sequence[str | Path] = find_images(root, recursive)
        else:
            files = list(root)
        super().__init__(files, transform, channels)

    def __getitem__(self, index: int) -> Any:
        return self._load(index)[1]

    def __repr__(self) -> str:
        return f"ImageFolder({len(self)} files, channels={self.channels})"


class LabelledImages(_FileDataset):
    """Images with integer class labels; items are ``(image, label)``.

    Build one from files and labels, from class sub-folders (:meth:`from_folders`) or from a
    CSV (:meth:`from_csv`). An unreadable file is replaced by the next readable one *of the
    same class*, so labels stay right.

    Attributes:
        files, labels: one entry per image.
        classes: class names; ``labels[i]`` indexes into it.
    """

    def __init__(
        self,
        files: Sequence[str | Path],
        labels: Sequence[int],
        classes: Sequence[str],
        transform: Transform | None = None,
        channels: int | None = None,
    ) -> None:
        super().__init__(files, transform, channels)
        if len(labels) != len(files):
            raise DataError(f"{len(files)} files but {len(labels)} labels.")
        bad = sorted({int(y) for y in labels if not 0 <= int(y) < len(classes)})
        if bad:
            raise DataError(f"labels {bad} do not index the {len(classes)} classes {classes}.")
        self.labels: list[int] = [int(y) for y in labels]
        self.classes: list[str] = list(classes)

    def _candidates(self, index: int) -> Sequence[int]:
        label = self.labels[index]
        return [i for i in super()._candidates(index) if self.labels[i] == label]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        i, img = self._load(index)
        return img, self.labels[i]

    def class_counts(self) -> dict[str, int]:
        """Images per class."""
        return {c: self.labels.count(k) for k, c in enumerate(self.classes)}

    def __repr__(self) -> str:
        return f"LabelledImages({len(self)} files, classes={self.class_counts()})"

    @classmethod
    def from_folders(
        cls,
        root: str | Path,
        transform: Transform | None = None,
        channels: int | None = None,
    ) -> LabelledImages:
        """One class per sub-folder of ``root`` (sorted by name), images searched recursively."""
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DataError(f"{root} is not a folder of class sub-folders.")
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name[0] != ".")
        if not classes:
            raise DataError(f"{root} has no class sub-folders (one folder of images per class).")
        files: list[Path] = []
        labels: list[int] = []
        for k, name in enumerate(classes):
            found = find_images(root / name)
            files += found
            labels += [k] * len(found)
        return cls(files, labels, classes, transform, channels)

    @classmethod
    def from_csv(
        cls,
        csv_path: str | Path,
        image_column: str,
        label_column: str,
        root: str | Path | None = None,
        extension: str = "",
        transform: Transform | None = None,
        channels: int | None = None,
        classes: Sequence[str] | None = None,
    ) -> LabelledImages:
        """Images named in a CSV column, labels from another column.

        Args:
            csv_path: the CSV file (with a header row).
            image_column, label_column: column names.
            root: folder the image paths are relative to (default: the CSV's folder).
            extension: appended to each image name (e.g. ``".jpg"`` for ids without one).
            classes: class order; default: the sorted distinct labels.

        Raises:
            DataError: missing CSV, missing columns, or rows naming files that do not exist.
        """
        csv_path = Path(csv_path).expanduser()
        if not csv_path.is_file():
            raise DataError(f"{csv_path} does not exist.")
        base = Path(root).expanduser() if root is not None else csv_path.parent
        with csv_path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {image_column, label_column} - set(reader.fieldnames or [])
            if missing:
                raise DataError(
                    f"{csv_path} has no column(s) {sorted(missing)}; columns: {reader.fieldnames}"
                )
            rows = [(r[image_column], r[label_column]) for r in reader]
        if not rows:
            raise DataError(f"{csv_path} has no rows.")
        names = list(classes) if classes is not None else sorted({y for _, y in rows})
        index = {c: k for k, c in enumerate(names)}
        unknown = sorted({y for _, y in rows} - set(index))
        if unknown:
            raise DataError(f"labels {unknown} in {csv_path} are not among classes {names}.")
        files = [base / (f + extension) for f, _ in rows]
        absent = [f for f in files if not f.exists()]
        if absent:
            raise DataError(
                f"{len(absent)} of {len(files)} files named in {csv_path} do not exist, "
                f"e.g. {absent[0]} (check root= and extension=)."
            )
        return cls(files, [index[y] for _, y in rows], names, transform, channels)
