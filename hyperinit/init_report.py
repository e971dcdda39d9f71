"""`InitReport`: what :func:`hyperinit.initialize` did to a model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["InitReport"]


@dataclass
class InitReport:
    """Which parameters were predicted, which kept their initialisation and why, and timings.

    Attributes:
        model: the model's class name.
        modality: the resolved modality name.
        checkpoint: where the hypernetwork came from.
        seed: the seed of the symmetry-breaking noise (pass it back to reproduce).
        predicted: names of the parameters written.
        kept: ``{name: reason}`` for parameters left as they were.
        predicted_elements, total_elements, head_elements: element counts.
        timings: seconds per stage (``trace``, ``predict``, ``assign``, ``total``).
        graph: nodes, edges, how the forward pass was traced (``traced_as``: ``batch0``, ``meta``
            or ``real``) and, when a cheaper pass was not used, why (``note``).
        modality_distances: with ``modality="auto"``, the distance (average cmd) from the sample
            to each modality's reference images, closest first.
        postprocess: the post-processing applied to the predictions (``{}``: none).
    """

    model: str
    modality: str
    checkpoint: str
    seed: int
    device: str
    predicted: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)
    predicted_elements: int = 0
    total_elements: int = 0
    head_elements: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    graph: dict[str, Any] = field(default_factory=dict)
    modality_distances: dict[str, float] = field(default_factory=dict)
    postprocess: dict[str, Any] = field(default_factory=dict)

    @property
    def coverage(self) -> float:
        """Share of the non-head parameter elements that were predicted."""
        denominator = self.total_elements - self.head_elements
        return self.predicted_elements / denominator if denominator > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["coverage"] = self.coverage
        return d

    def __str__(self) -> str:
        t = self.timings
        reasons: dict[str, int] = {}
        for reason in self.kept.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        lines = [
            f"hyperinit: initialised {self.model} for modality '{self.modality}'",
        ]
        if self.modality_distances:
            dist = ", ".join(f"{k} {v:.2f}" for k, v in self.modality_distances.items())
            lines.append(f"  auto         : closest modality by cmd ({dist})")
        lines += [
            f"  hypernetwork : {self.checkpoint}",
            f"  graph        : {self.graph.get('nodes', 0)} nodes, {self.graph.get('edges', 0)} "
            f"edges (traced as {self.graph.get('traced_as', '?')})",
            *([f"  trace        : {self.graph['note']}"] if self.graph.get("note") else []),
            f"  predicted    : {len(self.predicted)} tensors, {self.predicted_elements:,} of "
            f"{self.total_elements - self.head_elements:,} non-head elements "
            f"({100 * self.coverage:.1f} %)",
        ]
        if self.postprocess:
            opts = ", ".join(f"{k}={v}" for k, v in self.postprocess.items() if k != "version")
            lines.append(f"  postprocess  : {opts}")
        if self.kept:
            detail = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda x: -x[1]))
            lines.append(f"  kept         : {len(self.kept)} tensors ({detail})")
        lines.append(
            f"  time         : trace {1000 * t.get('trace', 0):.0f} ms, predict "
            f"{1000 * t.get('predict', 0):.0f} ms, assign {1000 * t.get('assign', 0):.0f} ms, "
            f"total {1000 * t.get('total', 0):.0f} ms on {self.device}"
        )
        lines.append(f"  seed         : {self.seed}")
        return "\n".join(lines)
