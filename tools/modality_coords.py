"""Compute the reference cmv coordinates of each modality for ``modality="auto"``.

Reads the training split of each dataset in the data folder (:func:`hyperinit.data.data_root`),
writes ``hyperinit/modality_coords.json`` (package data, shipped in the wheel; no image leaves
the data folder, only 2-D coordinates of subset means) and
``tools/results/modality_distance.md`` (the distance of each held-out split to each reference).

    python tools/modality_coords.py            # about 20 s on 2 CPU cores
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hyperinit import modality_auto as M  # noqa: E402
from hyperinit.data import data_root, drive_split, load_split, pretraining_files  # noqa: E402

#: modality -> dataset folder, and how its files split into reference (train) / held-out (test)
DATASETS = {
    "xray": "chest_xray_kermany",
    "ct": "ct_covid",
    "ultrasound": "ultrasound_busi",
    "dermoscopy": "dermoscopy_dermamnist",
    "fundus": "fundus_drive",
}


def split_files(modality: str, split: str, data: Path | None = None) -> list[Path]:
    """Image files of a modality's reference (``train``: its pretraining images) or held-out
    (``test``) split, as fixed by hyperinit.data (``data``: default :func:`data_root`)."""
    data = data_root(data)
    if split == "train":
        return pretraining_files(modality, data)
    if modality == "fundus":
        return drive_split("test", data).images
    return load_split(modality, "test", data).files


def _nested(t: torch.Tensor) -> list:
    return [[[round(float(v), 6) for v in point] for point in net] for net in t]


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    params = {
        "subset_size": M.SUBSET_SIZE,
        "n_subsets": M.N_SUBSETS,
        "nets_per_init": M.NETS_PER_INIT,
        "max_images": M.MAX_IMAGES,
        "image_size": M.IMAGE_SIZE,
    }
    kw = {k: params[k] for k in ("subset_size", "n_subsets", "nets_per_init", "max_images")}
    coords = {}
    counts = {}
    for name in DATASETS:
        files = split_files(name, "train")
        counts[name] = len(files)
        coords[name] = M.cmv_coordinates(files, **kw)
        print(f"{name}: {len(files)} training files, {min(len(files), M.MAX_IMAGES)} used")
    eps = {
        init: 1.0 / (sum(M.cmd(c[init], c[init]) for c in coords.values()) / len(coords))
        for init in M.INITS
    }
    # mixed: the union of the five references' coordinates (per net), so it wins only for a
    # sample that sits between modalities
    coords["mixed"] = {
        init: torch.cat([coords[n][init] for n in DATASETS], dim=1) for init in M.INITS
    }
    table = {
        "generated": datetime.date.today().isoformat(),
        "method": "cmv/cmd, Rethinking medical pre-training section 3; see hyperinit.modality_auto",
        "params": params,
        "eps": {k: round(v, 6) for k, v in eps.items()},
        "data": {
            n: f"{DATASETS[n]} train split, {counts[n]} files ({min(counts[n], M.MAX_IMAGES)} "
            "used, spread evenly)"
            for n in DATASETS
        },
        "coords": {n: {i: _nested(c[i]) for i in M.INITS} for n, c in coords.items()},
    }
    out = REPO / "hyperinit" / "modality_coords.json"
    out.write_text(json.dumps(table, separators=(",", ":")) + "\n")
    print(f"wrote {out}")

    # held-out check: each test split's distance to each reference
    M.COORDS = table
    rows = []
    for name in DATASETS:
        files = split_files(name, "test")
        test = [files[i] for i in M.spread_indices(len(files), 32)]
        d = M.modality_distances(test)
        rows.append((name, len(test), d))
    names = list(coords)
    lines = [
        '# modality="auto": average cmd from held-out images to each reference',
        "",
        f"Generated {table['generated']} by `python tools/modality_coords.py`; up to 32 "
        "held-out (test-split) images, spread evenly, per dataset; distances scaled so that a "
        "reference's mean intra-dataset cmd is about 1. Bold: the smallest (what auto picks).",
        "",
        "| held-out images | n | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for name, n, d in rows:
        best = min(d, key=d.get)
        cells = [f"**{d[k]:.2f}**" if k == best else f"{d[k]:.2f}" for k in names]
        lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    res = REPO / "tools" / "results" / "modality_distance.md"
    res.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
