"""Training in other processes: a run killed with SIGKILL resumes exactly, and two gloo ranks
under torchrun end with identical hypernetwork weights (subprocesses; about 20 s)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hyperinit.cli import main as cli_main
from hyperinit.hypernet.reference import make_reference
from hyperinit.training.checkpoint import STATE_NAME
from tests.conftest import REPO


@pytest.fixture(scope="module")
def image_dir(data_dir: Path, tmp_path_factory) -> Path:
    root = data_dir / "chest_xray_kermany" / "train"
    out = tmp_path_factory.mktemp("cxr")
    for cls in ("NORMAL", "PNEUMONIA"):
        for f in sorted((root / cls).glob("*.jpeg"))[:8]:
            shutil.copy(f, out / f"{cls}_{f.name}")
    return out


def _args(data: Path, out: Path, steps: int) -> list[str]:
    return [
        "train",
        "--data",
        str(data),
        "--steps",
        str(steps),
        "--checkpoint-every",
        "2",
        "--batch-size",
        "8",
        "--image-size",
        "32",
        "--load-size",
        "40",
        "--max-params",
        "300000",
        "--objective",
        "rotation+c2l",
        "--out",
        str(out),
        "--threads",
        "1",
        "--device",
        "cpu",
    ]


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    return env


def _saved_step(path: Path) -> int:
    try:
        return int(torch.load(path, weights_only=True)["step"])
    except (FileNotFoundError, RuntimeError, EOFError):
        return -1


def test_killed_run_resumes_exactly(image_dir, tmp_path):
    steps = 12
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "hyperinit.cli", *_args(image_dir, killed, steps)]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while _saved_step(killed / STATE_NAME) < 4:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    at_kill = _saved_step(killed / STATE_NAME)
    assert 4 <= at_kill < steps
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resumed {killed} at step {at_kill}" in done.stderr

    straight = tmp_path / "straight"
    assert cli_main(_args(image_dir, straight, steps)) == 0
    a = load_file(str(killed / "hypernet" / "model.safetensors"))
    b = load_file(str(straight / "hypernet" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ref = make_reference().state_dict()
    assert not torch.equal(a["core_fc.weight"], ref["core_fc.weight"])
    log_a = (killed / "log.csv").read_text().splitlines()
    log_b = (straight / "log.csv").read_text().splitlines()
    assert len(log_a) == len(log_b) == 3  # header, step 10, the last step
    col = log_a[0].split(",").index("loss")
    assert [r.split(",")[col] for r in log_a] == [r.split(",")[col] for r in log_b]


@pytest.mark.parametrize(
    "extra",
    [[], ["--inner-steps", "1", "--scale-range", "3", "--batch-size", "16"]],
    ids=["one-level", "bi-level"],
)
def test_two_gloo_ranks_hold_identical_weights(image_dir, tmp_path, extra):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "hyperinit.cli",
        *_args(image_dir, out, 3),
        *extra,
    ]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "process group gloo: rank 1 of 2" in done.stderr
    r0 = load_file(str(out / "ranks" / "rank0.safetensors"))
    r1 = load_file(str(out / "ranks" / "rank1.safetensors"))
    assert r0.keys() == r1.keys() and all(torch.equal(r0[k], r1[k]) for k in r0)
    ref = make_reference().state_dict()
    assert not torch.equal(r0["core_fc.weight"], ref["core_fc.weight"])
    exported = load_file(str(out / "hypernet" / "model.safetensors"))
    assert all(torch.equal(exported[k], r0[k]) for k in r0)
    if extra:  # the scale head is trained through the inner step, in step on both ranks
        assert torch.count_nonzero(r0["log_scale.weight"]) > 0
