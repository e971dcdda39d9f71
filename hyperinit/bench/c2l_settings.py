"""The C2L pretraining settings of the C2L benchmark (``benchmarks/c2l_benchmark.py``), shared
with the experiments that pretrain other architectures the same way (``research/ssl_ceiling``).

>>> C2L_SETTINGS["queue_size"]
4096
"""

from __future__ import annotations

__all__ = ["BATCH", "C2L_SETTINGS", "SIZE"]

#: input size (px) of pretraining and of the fine-tuning after it
SIZE = 64
#: pretraining batch size
BATCH = 64
#: keyword arguments of :class:`hyperinit.C2LPretrainer`
C2L_SETTINGS = {
    "feature_dim": 128,
    "queue_size": 4096,
    "momentum": 0.99,
    "temperature": 0.07,
    "mixup_alpha": 1.0,
}
