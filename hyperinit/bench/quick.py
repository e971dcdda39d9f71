"""The quick downstream check: short fine-tunings that compare inits and checkpoints, paired.

One quick cell fine-tunes an architecture on a modality's task with 10 % of the training
labels for 5 epochs at 64 px (DRIVE segmentation: 128 px) from some init. The scripts that
check a trained checkpoint (``tools/downstream_check.py``), compare two checkpoints
(``benchmarks/compare_checkpoints.py``) and the experiments in ``research/`` share these
cells, so the folders they cache them in are theirs to choose (``cells_dir``, ``cache_dir``).

>>> quick_cell("busi", "timm:resnet18", "default", 0).fraction
0.1
"""

from __future__ import annotations

import json
import logging
import shutil
import statistics
from pathlib import Path

from torch import nn

from hyperinit.bench import Cell, run_cell
from hyperinit.bench.inits import hypernet_version
from hyperinit.bench.stats import loss_spike, mean_se
from hyperinit.bench.tasks import get_task
from hyperinit.modalities import embedded_dir

__all__ = [
    "ARCHS",
    "PANEL_ARCHS",
    "SETTINGS_V0",
    "TASK",
    "capped_checkpoint",
    "checkpoint_copy",
    "checkpoint_dir",
    "checkpoint_init",
    "compare_checkpoints",
    "deit_tiny_64",
    "panel_cell",
    "quick_cell",
    "quick_size",
    "run_quick",
    "shown_path",
    "write_comparison",
]

log = logging.getLogger(__name__)

#: modality -> the task its checkpoint is checked on
TASK = {
    "xray": "chest_xray",
    "ct": "ct_covid",
    "ultrasound": "busi",
    "dermoscopy": "dermamnist",
    "fundus": "drive",
    "mixed": "chest_xray",
}
#: ResNet-18 and two architectures never drawn in training (hyperinit.archspace.HELD_OUT_MODELS)
ARCHS = ("timm:resnet18", "timm:regnetx_002", "timm:mobilenetv3_small_100")


def deit_tiny_64(in_chans: int, num_classes: int) -> nn.Module:
    """DeiT-Tiny with timm's position embedding at the quick check's 64 px (``arch_name``
    ``deit_tiny_64`` in cell keys)."""
    import timm

    return timm.create_model(
        "deit_tiny_patch16_224", img_size=64, in_chans=in_chans, num_classes=num_classes
    )


#: the architecture panel of the one-initializer goal (``benchmarks/panel.py``)
PANEL_ARCHS: dict[str, object] = {
    "ResNet-18": "timm:resnet18",
    "ResNet-50": "timm:resnet50",
    "RegNetX-200MF": "timm:regnetx_002",
    "MobileNetV3-S": "timm:mobilenetv3_small_100",
    "MobileNetV3-L": "timm:mobilenetv3_large_100",
    "EfficientNet-B0": "timm:efficientnet_b0",
    "DeiT-Tiny": deit_tiny_64,
}


def checkpoint_dir(name: str) -> Path:
    """The folder of a checkpoint shipped in the package (``hyperinit/checkpoints/<name>``)."""
    return embedded_dir(name)


def shown_path(path: str | Path) -> str:
    """``path`` as result files record it: relative to the working directory when inside it
    (``hyperinit/checkpoints/ct`` from the repository root), else as given."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def checkpoint_init(modality: str, name: str) -> str:
    """The init spec of ``name`` in the downstream check of ``modality``'s checkpoint:
    ``default`` (PyTorch's init), ``reference`` (the untrained reference hypernetwork) or
    ``trained`` (the modality's shipped checkpoint)."""
    if name == "default":
        return "default"
    return f"hyperinit:{checkpoint_dir('reference' if name == 'reference' else modality)}"


def quick_size(task: str) -> int:
    """The input size of the quick check on ``task``: 128 px for segmentation, else 64 px."""
    return 128 if get_task(task).kind == "segmentation" else 64


def quick_cell(
    task: str,
    arch: str,
    init: object,
    seed: int,
    *,
    size: int = 64,
    init_name: str | None = None,
    epochs: int = 5,
) -> Cell:
    """One fine-tuning of the quick downstream check: 10 % of the labels, ``epochs`` epochs."""
    return Cell(
        task=task,
        arch=arch,
        init=init,
        init_name=init_name,
        fraction=0.1,
        seed=seed,
        epochs=epochs,
        size=size,
    )


def panel_cell(arch: str, task: str, init: object, seed: int, init_name: str | None = None) -> Cell:
    """A quick-check cell of a :data:`PANEL_ARCHS` architecture, keyed as the panel's."""
    spec = PANEL_ARCHS[arch]
    c = quick_cell(task, spec, init, seed, size=quick_size(task), init_name=init_name)
    if callable(spec):
        c.arch_name = spec.__name__
    return c


def run_quick(cell: Cell, cells_dir: Path, cache_dir: Path) -> dict:
    """Run (or read back from ``cells_dir``) a quick-check cell; ``cache_dir`` holds the decoded
    data, shared by every script that runs quick cells."""
    return run_cell(cell, cells_dir, cache_dir=cache_dir, progress=False)


def compare_checkpoints(
    modality: str, a: Path, b: Path, seeds: int, cells_dir: Path, cache_dir: Path
) -> dict:
    """Fine-tune :data:`ARCHS` on ``modality``'s task from default init and from checkpoints
    ``a`` and ``b``, ``seeds`` seeds paired by seed (the same data order and noise seed).

    Returns:
        The per-architecture means, standard deviations, mean best validation scores and
        loss-spike counts, and ``paired``: the mean and standard error of B - A over all
        architectures and seeds, and in how many B is ahead.
    """
    task = get_task(TASK[modality])
    size = quick_size(task.name)
    inits = {"default": "default", "A": f"hyperinit:{a}", "B": f"hyperinit:{b}"}
    scores: dict[tuple[str, str], list[float]] = {}
    val: dict[tuple[str, str], list[float]] = {}
    spikes: dict[tuple[str, str], int] = {}
    for seed in range(seeds):
        for arch in ARCHS:
            for name, init in inits.items():
                cell = quick_cell(task.name, arch, init, seed, size=size)
                r = run_quick(cell, cells_dir, cache_dir)
                scores.setdefault((arch, name), []).append(r["test"][task.primary])
                val.setdefault((arch, name), []).append(
                    max(v[task.primary] for v in r["curves"]["val"])
                )
                spike = loss_spike(r["curves"]["train_loss"])
                spikes[(arch, name)] = spikes.get((arch, name), 0) + spike
    rows = []
    diffs_all: list[float] = []
    for arch in ARCHS:
        d = [x - y for x, y in zip(scores[(arch, "B")], scores[(arch, "A")])]
        diffs_all += d
        rows.append(
            {
                "arch": arch,
                **{
                    name: {
                        "mean": statistics.mean(scores[(arch, name)]),
                        "sd": statistics.stdev(scores[(arch, name)]),
                    }
                    for name in inits
                },
                "b_minus_a": statistics.mean(d),
                "b_better": sum(x > 0 for x in d),
                "val": {name: statistics.mean(val[(arch, name)]) for name in inits},
                "loss_spikes": {name: spikes[(arch, name)] for name in inits},
            }
        )
    mean, se = mean_se(diffs_all)
    log.info("%s: B - A = %+.4f ± %.4f over %d paired runs", modality, mean, se, len(diffs_all))
    return {
        "modality": modality,
        "task": task.name,
        "metric": task.primary,
        "seeds": seeds,
        "a": {"path": shown_path(a), "sha256": hypernet_version(f"hyperinit:{a}", modality)},
        "b": {"path": shown_path(b), "sha256": hypernet_version(f"hyperinit:{b}", modality)},
        "rows": rows,
        "paired": {
            "n": len(diffs_all),
            "mean_b_minus_a": mean,
            "se": se,
            "b_better": sum(x > 0 for x in diffs_all),
        },
    }


def write_comparison(result: dict, name: str, out: Path) -> Path:
    """Write a :func:`compare_checkpoints` result to ``out/compare_<modality>_<name>.{json,md}``
    and return the markdown's path."""
    # not with_suffix: a name such as "lr0.1" holds a dot
    base = f"compare_{result['modality']}_{name}"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{base}.json").write_text(json.dumps(result, indent=2) + "\n")
    p, m = result["paired"], result["metric"]
    lines = [
        f"# {result['modality']}: checkpoint B vs A downstream ({result['task']})",
        "",
        f"A = `{result['a']['path']}` (sha256 {result['a']['sha256']}), B = "
        f"`{result['b']['path']}` (sha256 {result['b']['sha256']}). 10 % of the labels, "
        f"5 epochs, test {m}, {result['seeds']} seeds paired by seed; "
        f"`python benchmarks/compare_checkpoints.py --modality {result['modality']} --a "
        f"{result['a']['path']} --b {result['b']['path']} --name {name} "
        f"--seeds {result['seeds']}`.",
        "",
        "| architecture | default | A | B | B - A (mean of paired runs) | B better in |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        cells = [f"{r[k]['mean']:.3f} ± {r[k]['sd']:.3f}" for k in ("default", "A", "B")]
        lines.append(
            f"| {r['arch']} | " + " | ".join(cells) + f" | {r['b_minus_a']:+.3f} | "
            f"{r['b_better']} / {result['seeds']} |"
        )
    lines += [
        "",
        f"All {p['n']} paired runs: B - A = {p['mean_b_minus_a']:+.3f} ± {p['se']:.3f} "
        f"(standard error); B better in {p['b_better']} of {p['n']}.",
    ]
    md = out / f"{base}.md"
    md.write_text("\n".join(lines) + "\n")
    return md


#: The prediction settings every checkpoint shipped with until 2026-12-02: the experiments in
#: ``research/`` that compare against "the shipped checkpoint" of that time pin them.
SETTINGS_V0: dict = {
    "max_structured_share": None,
    "noise": "kron",
    "spectrum": "predicted",
    "centre_rows": "all",
    "postprocess": None,
}


def checkpoint_copy(modality: str, work_dir: Path, name: str = "v0", **settings: object) -> Path:
    """A copy of ``modality``'s shipped checkpoint in ``work_dir/name/<modality>``: the same
    weights file, and a ``config.json`` with :data:`SETTINGS_V0` updated by ``settings``.

    Its cells keep the keys they had when those were the shipped settings: the init label is
    ``hyperinit:<modality>`` and the cache key hashes the weights plus the settings that differ
    from the defaults. Rewritten on every call.
    """
    src = checkpoint_dir(modality)
    dst = work_dir / name / modality
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / "model.safetensors", dst / "model.safetensors")
    config = json.loads((src / "config.json").read_text())
    config.update(SETTINGS_V0)
    config.update(settings)
    (dst / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    log.debug("copy of %s with %s in %s", modality, settings, dst)
    return dst


def capped_checkpoint(
    modality: str, cap: float | None, work_dir: Path, noise: str = "kron"
) -> Path:
    """A copy of ``modality``'s shipped checkpoint in ``work_dir`` with
    ``max_structured_share = cap`` and ``noise`` in its ``config.json`` (same weights file;
    otherwise :data:`SETTINGS_V0`, the settings it was measured with).

    The copy is ``work_dir/<uncapped|cap<c>>[-<noise>]/<modality>``; rewritten on every call.
    """
    name = ("uncapped" if cap is None else f"cap{cap:g}") + ("" if noise == "kron" else f"-{noise}")
    return checkpoint_copy(modality, work_dir, name, max_structured_share=cap, noise=noise)
