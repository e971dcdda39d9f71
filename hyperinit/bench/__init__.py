"""The bundled benchmark suite: tasks, U-Net, cells, suites, Grad-CAM and the report."""

from hyperinit.bench.cell import SCHEMES, Cell, cell_path
from hyperinit.bench.metrics import accuracy, binary_auc, dice, macro_auc, quadratic_kappa
from hyperinit.bench.runner import build_model, run_cell
from hyperinit.bench.tasks import TASKS, Task, get_task, load_task_split
from hyperinit.bench.unet import UNet

__all__ = [
    "SCHEMES",
    "TASKS",
    "Cell",
    "Task",
    "UNet",
    "accuracy",
    "binary_auc",
    "build_model",
    "cell_path",
    "dice",
    "get_task",
    "load_task_split",
    "macro_auc",
    "quadratic_kappa",
    "run_cell",
]
