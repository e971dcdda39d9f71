"""hyperinit.data: decoding, streaming datasets with skipping, bundled splits."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from torch.utils.data import DataLoader

from hyperinit.data import (
    ImageFolder,
    LabelledImages,
    drive_split,
    find_images,
    load_split,
    pretraining_files,
    read_image,
)
from hyperinit.errors import DataError, UnreadableImageError

CLASSIFICATION = ("chest_xray", "ct_covid", "busi", "dermamnist")


def _png16(path: Path, lo: int = 1000, hi: int = 40000) -> None:
    arr = np.linspace(lo, hi, 32 * 24).reshape(24, 32).astype(np.uint16)
    Image.fromarray(arr).save(path)


def test_read_16bit_png_scales_its_range(tmp_path):
    _png16(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.mode == "L" and img.size == (32, 24)
    arr = np.asarray(img)
    assert arr.min() == 0 and arr.max() == 255  # full 8-bit range from the 16-bit values
    assert read_image(tmp_path / "a.png", channels=3).mode == "RGB"


def test_read_float_tiff_rgba_and_palette(tmp_path):
    Image.fromarray(np.random.default_rng(0).random((8, 8)).astype(np.float32)).save(
        tmp_path / "f.tif"
    )
    Image.new("RGBA", (8, 8), (10, 20, 30, 40)).save(tmp_path / "a.png")
    Image.new("P", (8, 8), 3).save(tmp_path / "p.gif")
    assert read_image(tmp_path / "f.tif").mode == "L"
    assert read_image(tmp_path / "a.png").mode == "RGB"
    assert read_image(tmp_path / "p.gif").mode == "RGB"
    assert read_image(tmp_path / "a.png", channels=1).mode == "L"


def test_read_real_tif_and_gif(data_dir):
    img = read_image(data_dir / "fundus_drive" / "training" / "images" / "21_training.tif")
    assert img.mode == "RGB" and img.size == (565, 584)
    mask = read_image(data_dir / "fundus_drive" / "training" / "1st_manual" / "21_manual1.gif", 1)
    assert set(np.unique(np.asarray(mask))) <= {0, 255}


def test_read_dicom(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    arr = np.arange(16 * 20, dtype=np.uint16).reshape(16, 20) * 100
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 16, 16, 15
    ds.PixelRepresentation = 0
    ds.PhotometricInterpretation = "MONOCHROME1"  # inverted: high values are dark
    ds.PixelData = arr.tobytes()
    ds.save_as(tmp_path / "x.dcm", enforce_file_format=True)
    out = np.asarray(read_image(tmp_path / "x.dcm"))
    assert out.shape == (16, 20)
    assert out[0, 0] == 255 and out[-1, -1] == 0
    assert [p.name for p in find_images(tmp_path)] == ["x.dcm"]


def test_dicom_without_pydicom_names_the_fix(tmp_path, monkeypatch):
    (tmp_path / "x.dcm").write_bytes(b"\0" * 200)
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(UnreadableImageError, match=r"pip install hyperinit\[dicom\]"):
        read_image(tmp_path / "x.dcm")


def _folder(tmp_path: Path, n: int = 4) -> Path:
    root = tmp_path / "imgs"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".hidden").mkdir()
    for i in range(n):
        Image.new("L", (10 + i, 12), 40 * i).save(
            root / "sub" / ("deeper" if i % 2 else "") / f"{i}.png"
        )
    Image.new("L", (8, 8)).save(root / ".hidden" / "h.png")
    (root / "notes.txt").write_text("not an image")
    return root


def test_image_folder_is_recursive_and_skips_hidden(tmp_path):
    root = _folder(tmp_path)
    ds = ImageFolder(root)
    assert len(ds) == 4
    assert [f.name for f in ds.files] == ["0.png", "2.png", "1.png", "3.png"]  # sorted paths
    x = ds[2]
    assert x.shape == (1, 12, 11) and x.dtype == torch.float32 and 0 <= x.min() <= x.max() <= 1
    assert len(ImageFolder(root / "sub", recursive=False)) == 2
    assert ImageFolder(root, channels=3)[0].shape[0] == 3


def test_unreadable_files_are_skipped_counted_and_warned(tmp_path, caplog):
    root = _folder(tmp_path)
    (root / "sub" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    good = root / "sub" / "0.png"
    (root / "sub" / "trunc.jpg").write_bytes(good.read_bytes()[:40])
    ds = ImageFolder(root, transform=lambda im: im.size)
    with caplog.at_level(logging.WARNING, logger="hyperinit.data"):
        items = [ds[i] for i in range(len(ds))]
    assert len(items) == 6 and ds.skipped == 2
    assert sum("skipping unreadable image" in r.message for r in caplog.records) == 2
    # a DataLoader over it finishes too
    assert sum(len(b) for b in DataLoader(ds, batch_size=4, collate_fn=list)) == 6


def test_all_unreadable_is_a_clear_error(tmp_path):
    (tmp_path / "a.png").write_bytes(b"nope")
    (tmp_path / "b.jpg").write_bytes(b"nope")
    ds = ImageFolder(tmp_path)
    with pytest.raises(DataError, match="2 of 2 files are unreadable"):
        ds[0]


@pytest.mark.parametrize("make", ["missing", "empty", "textonly"])
def test_image_folder_bad_roots(tmp_path, make):
    root = tmp_path / "x"
    if make != "missing":
        root.mkdir()
    if make == "textonly":
        (root / "a.txt").write_text("x")
    with pytest.raises(DataError, match=r"does not exist|no image files"):
        ImageFolder(root)


def test_labelled_from_folders_and_same_class_fallback(tmp_path):
    for c, v in (("a", 0), ("b", 255)):
        (tmp_path / c).mkdir()
        for i in range(2):
            Image.new("L", (4, 4), v).save(tmp_path / c / f"{i}.png")
    (tmp_path / "b" / "0.png").write_bytes(b"broken")
    ds = LabelledImages.from_folders(tmp_path)
    assert ds.classes == ["a", "b"] and ds.class_counts() == {"a": 2, "b": 2}
    x, y = ds[2]  # b/0.png is broken: replaced by b/1.png, label kept
    assert y == 1 and x.mean() == 1.0 and ds.skipped == 1


def test_labelled_from_csv_on_busi(data_dir):
    root = data_dir / "ultrasound_busi"
    ds = LabelledImages.from_csv(root / "all_captions.csv", "image_path", "label", channels=1)
    assert len(ds) == 780 and ds.classes == ["benign", "malignant", "normal"]
    x, y = ds[0]
    assert x.shape[0] == 1 and ds.classes[y] == ds.files[0].parent.name
    with pytest.raises(DataError, match="no column"):
        LabelledImages.from_csv(root / "all_captions.csv", "path", "label")
    with pytest.raises(DataError, match="do not exist"):
        LabelledImages.from_csv(root / "all_captions.csv", "image_path", "label", root=data_dir)


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_splits_are_disjoint_complete_and_fixed(data_dir, name):
    parts = {s: load_split(name, s) for s in ("train", "val", "test")}
    sets = {s: set(d.files) for s, d in parts.items()}
    assert not sets["train"] & sets["test"] and not sets["val"] & sets["test"]
    assert not sets["train"] & sets["val"]
    assert all(
        len(d.class_counts()) == len(d.classes) and min(d.class_counts().values()) > 0
        for d in parts.values()
    )
    assert load_split(name, "test").files == parts["test"].files  # deterministic
    for d in parts.values():  # labels follow the class folder / metadata
        if name != "dermamnist":
            assert all(d.classes[y] in f.parts for f, y in zip(d.files[:50], d.labels[:50]))


@given(fraction=st.floats(0.005, 1.0), seed=st.integers(0, 2**16))
def test_fraction_is_stratified_subset(data_dir, fraction, seed):
    full = load_split("busi", "train")
    part = load_split("busi", "train", fraction=fraction, seed=seed)
    assert set(part.files) <= set(full.files)
    for c, n in full.class_counts().items():
        assert part.class_counts()[c] == max(1, round(fraction * n))
    assert part.files == load_split("busi", "train", fraction=fraction, seed=seed).files


def test_pretraining_never_reads_test_images(data_dir):
    test = set()
    for name in CLASSIFICATION:
        test |= set(load_split(name, "test").files)
    test |= set(drive_split("test").images)
    mixed = pretraining_files("mixed")
    assert not test & set(mixed)
    assert len(mixed) == sum(
        len(pretraining_files(m)) for m in ("xray", "ct", "ultrasound", "dermoscopy", "fundus")
    )
    assert len(pretraining_files("cxr")) == 5216  # alias; the whole official training split


def test_drive_split_triples(data_dir):
    ds = drive_split("test")
    assert len(ds) == 20
    image, vessels, fov = ds[0]
    assert image.shape == (3, 584, 565) and vessels.shape == fov.shape == (1, 584, 565)
    assert set(vessels.unique().tolist()) == {0.0, 1.0}
    assert 0.05 < vessels.mean() < 0.2 and fov.mean() > 0.5


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: load_split("mnist", "train"), "unknown dataset"),
        (lambda: load_split("busi", "dev"), "unknown split"),
        (lambda: load_split("busi", "train", fraction=0), "fraction"),
        (lambda: load_split("drive", "train"), "drive_split"),
        (lambda: drive_split("val"), "splits 'train' and 'test'"),
        (lambda: load_split("busi", "train", root="/nonexistent"), "HYPERINIT_DATA"),
        (lambda: LabelledImages(["a.png"], [3], ["x"]), "do not index"),
    ],
)
def test_bad_arguments(data_dir, call, match):
    with pytest.raises(DataError, match=match):
        call()
