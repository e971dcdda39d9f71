"""Compare default initialisation with hyperinit on one task at 10 % of the labels, and write a
report: the benchmark suite's building blocks, used directly.

python examples/run_benchmark.py [TASK] [OUT_DIR] [EPOCHS] [SIZE] [MAX_IMAGES] [SEEDS]

TASK is chest_xray, ct_covid, busi, dermamnist or drive. Finished runs are cached in OUT_DIR:
run it again and only what is missing trains. The whole suite: `hyperinit bench --help`.
"""

import logging
import sys

import torch

from hyperinit.bench import Cell, run_cell
from hyperinit.bench.report import write_report

logging.basicConfig(level=logging.WARNING)
torch.set_num_threads(1)  # small models on a shared CPU: one thread is fastest
task = sys.argv[1] if len(sys.argv) > 1 else "chest_xray"
out = sys.argv[2] if len(sys.argv) > 2 else "runs/example_benchmark"
epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 5
size = int(sys.argv[4]) if len(sys.argv) > 4 else 64
max_images = int(sys.argv[5]) if len(sys.argv) > 5 else None  # cap per split (quick tries)
seeds = range(int(sys.argv[6]) if len(sys.argv) > 6 else 3)

for seed in seeds:
    for init in ("default", "hyperinit:own"):  # own = the task's modality (xray for chest_xray)
        cell = Cell(
            task,
            "timm:resnet18",  # or a factory: f(in_chans, num_classes) -> nn.Module
            init,
            fraction=0.1,
            seed=seed,
            epochs=epochs,
            size=size,
            max_train=max_images,
            max_eval=max_images,
            cam_epochs=(1, epochs) if seed == 0 else (),
        )
        r = run_cell(cell, out)
        primary = r["task"]["primary"]
        print(f"{task} {init:<14} seed {seed}: test {primary} {r['test'][primary]:.3f}")

print("report:", write_report([out], f"{out}/REPORT.md", command=" ".join(sys.argv)))
