"""Compare two hypernetwork checkpoints of one modality downstream, paired by seed.

Fine-tunes ResNet-18 and the two held-out architectures of ``downstream_check.py`` on the
modality's task (10 % of the labels, 5 epochs, 64 px) from PyTorch's default init and from each
checkpoint, for N seeds. Seed s gives both checkpoints the same data order and noise seed, so
the per-run differences B - A are paired. Decides whether a retrained checkpoint should replace
the shipped one. Cells are cached (``runs/downstream``), so re-running only adds what is new.
Writes ``benchmarks/results/compare_<modality>_<name>.{json,md}``.

    python benchmarks/compare_checkpoints.py --modality ct \\
        --a hyperinit/checkpoints/ct --b runs/long/ckpt/ct --name long --seeds 6
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
from pathlib import Path

import torch
from downstream_check import ARCHS, RESULTS, TASK, loss_spike, quick_cell, run_quick

from hyperinit.bench.inits import hypernet_version
from hyperinit.bench.tasks import get_task


def compare(modality: str, a: Path, b: Path, seeds: int, cells_dir: Path) -> dict:
    task = get_task(TASK[modality])
    size = 128 if task.kind == "segmentation" else 64
    inits = {"default": "default", "A": f"hyperinit:{a}", "B": f"hyperinit:{b}"}
    scores: dict[tuple[str, str], list[float]] = {}
    val: dict[tuple[str, str], list[float]] = {}
    spikes: dict[tuple[str, str], int] = {}
    for seed in range(seeds):
        for arch in ARCHS:
            for name, init in inits.items():
                r = run_quick(quick_cell(task.name, arch, init, seed, size=size), cells_dir)
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
    mean = statistics.mean(diffs_all)
    se = statistics.stdev(diffs_all) / math.sqrt(len(diffs_all))
    return {
        "modality": modality,
        "task": task.name,
        "metric": task.primary,
        "seeds": seeds,
        "a": {"path": str(a), "sha256": hypernet_version(f"hyperinit:{a}", modality)},
        "b": {"path": str(b), "sha256": hypernet_version(f"hyperinit:{b}", modality)},
        "rows": rows,
        "paired": {
            "n": len(diffs_all),
            "mean_b_minus_a": mean,
            "se": se,
            "b_better": sum(x > 0 for x in diffs_all),
        },
    }


def write(result: dict, name: str) -> Path:
    # not with_suffix: a name such as "lr0.1" holds a dot
    base = f"compare_{result['modality']}_{name}"
    (RESULTS / f"{base}.json").write_text(json.dumps(result, indent=2) + "\n")
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
    md = RESULTS / f"{base}.md"
    md.write_text("\n".join(lines) + "\n")
    return md


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--modality", required=True, choices=sorted(TASK))
    p.add_argument("--a", required=True, type=Path, help="the shipped checkpoint directory")
    p.add_argument("--b", required=True, type=Path, help="the candidate checkpoint directory")
    p.add_argument("--name", default="candidate", help="suffix of the result files")
    p.add_argument("--seeds", type=int, default=6)
    p.add_argument("--cells", default="runs/downstream")
    args = p.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    result = compare(args.modality, args.a, args.b, args.seeds, Path(args.cells))
    print(write(result, args.name).read_text())


if __name__ == "__main__":
    main()
