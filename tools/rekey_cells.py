"""Carry panel cells over to new cache keys when new prediction settings cannot change them.

A cell's key hashes the checkpoint's prediction settings, so every setting change gives every
hyperinit cell a new key, also for architectures the change provably leaves alone (for example
``postprocess={"orthogonalize": "depthwise"}`` on a network without depthwise convolutions).
This copies such cells from their key under the settings of ``--old-rev`` to their key now,
for the listed architectures only, after checking that ``initialize()`` predicts bit for bit the
same parameters under both settings for every (architecture, checkpoint) pair it copies. A
copied cell records where it came from (``"rekeyed_from"``).

    python tools/rekey_cells.py --old-rev HEAD --archs ResNet-18 ResNet-50 RegNetX-200MF DeiT-Tiny

Check a sample afterwards by rerunning it fresh (delete the copy, rerun the panel cell).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

import hyperinit
from hyperinit.bench import cell_path
from hyperinit.bench.quick import PANEL_ARCHS, TASK, checkpoint_dir, panel_cell
from hyperinit.bench.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
PANEL = ROOT / "benchmarks" / "results" / "panel"
NAMES = ("reference", *sorted(m for m in TASK if m != "mixed"))

log = logging.getLogger("rekey_cells")


def old_checkpoints(rev: str, work: Path) -> dict[str, Path]:
    """Copies of the shipped checkpoints with ``config.json`` as of ``rev``."""
    out = {}
    for name in NAMES:
        folder = work / name
        shutil.copytree(checkpoint_dir(name), folder)
        rel = f"hyperinit/checkpoints/{name}/config.json"
        text = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:{rel}"], check=True, capture_output=True
        ).stdout
        (folder / "config.json").write_bytes(text)
        out[name] = folder
    return out


def _model(arch: str, in_chans: int) -> torch.nn.Module:
    torch.manual_seed(0)  # the same default init of what is not predicted (the head)
    spec = PANEL_ARCHS[arch]
    if callable(spec):
        return spec(in_chans, 2)
    return hyperinit.create_model(spec, in_chans=in_chans, num_classes=2)


def same_prediction(arch: str, old: Path, new: Path, in_chans: int) -> bool:
    """Whether ``initialize`` gives ``arch`` the same parameters from both checkpoints."""
    a, b = _model(arch, in_chans), _model(arch, in_chans)
    hyperinit.initialize(a, checkpoint=old, seed=0)
    hyperinit.initialize(b, checkpoint=new, seed=0)
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def rekey(archs: list[str], rev: str, seeds: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        old = old_checkpoints(rev, Path(tmp))
        copied = 0
        for modality, task in TASK.items():
            if modality == "mixed":
                continue
            chans = get_task(task).in_chans
            for arch in archs:
                if get_task(task).kind == "segmentation" and callable(PANEL_ARCHS[arch]):
                    continue
                for name in ("reference", modality):
                    if not same_prediction(arch, old[name], checkpoint_dir(name), chans):
                        raise SystemExit(f"{arch} / {name}: the settings change its prediction")
                    for seed in range(seeds):
                        src = cell_path(
                            panel_cell(arch, task, f"hyperinit:{old[name]}", seed), PANEL
                        )
                        init = f"hyperinit:{checkpoint_dir(name)}"
                        dst = cell_path(panel_cell(arch, task, init, seed), PANEL)
                        if not src.is_file() or dst.is_file() or src == dst:
                            continue
                        record = json.loads(src.read_text())
                        record["rekeyed_from"] = src.name
                        dst.write_text(json.dumps(record, default=float) + "\n")
                        copied += 1
                log.info("%s %s: checked and copied", task, arch)
        return copied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-rev", default="HEAD", help="the revision of the old settings")
    parser.add_argument("--archs", nargs="+", required=True, choices=list(PANEL_ARCHS))
    parser.add_argument("--seeds", type=int, default=12)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.info("copied %d cells", rekey(args.archs, args.old_rev, args.seeds))


if __name__ == "__main__":
    main()
