"""Write the architecture panel's numbers into the model cards of the shipped checkpoints.

Each modality checkpoint's card (``hyperinit/checkpoints/<modality>/README.md``, not pinned)
gets a **Downstream** line from ``benchmarks/results/panel/panel.json``: on its own task, every
panel architecture's test score with this checkpoint and with default init, the paired
difference (mean ± standard error, seeds), and which pairs are ahead or behind by more than two
standard errors. A modality the panel has not measured keeps its line, marked as predating the
current prediction settings. The Hub copies need a new push (``docs/checkpoints.md``).

    python tools/panel_cards.py            # after benchmarks/panel.py
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path

from hyperinit.bench.quick import TASK
from hyperinit.bench.stats import mean_se

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "hyperinit" / "checkpoints"
PANEL = ROOT / "benchmarks" / "results" / "panel" / "panel.json"
LINE = "- **Downstream**"
STALE = " (measured before the current prediction settings)"
#: what ``tools/set_prediction.py`` appends to the settings line
SETTINGS_CAVEAT = (
    " The Downstream line above may predate them; `benchmarks/results/panel/panel.md` has the "
    "current settings' numbers."
)

log = logging.getLogger("panel_cards")


def paired(by: dict, a: str, b: str) -> tuple[float, float, int] | None:
    """Test-score ``a - b`` over the seeds both inits have: mean, standard error, seeds."""
    seeds = sorted(set(by.get(a, {})) & set(by.get(b, {})))
    if len(seeds) < 2:
        return None
    mean, se = mean_se([by[a][s][1] - by[b][s][1] for s in seeds])
    return mean, se, len(seeds)


def downstream_line(task: str, results: dict) -> str | None:
    """The card line for the checkpoint whose own task is ``task`` (``None``: not measured)."""
    parts = []
    for pair, by in results.items():
        arch, pair_task = pair.split("|")
        d = paired(by, "trained", "default")
        if pair_task != task or d is None:
            continue
        mean = {k: sum(v[1] for v in by[k].values()) / len(by[k]) for k in ("trained", "default")}
        verdict = " ahead" if d[0] > 2 * d[1] else " behind" if d[0] < -2 * d[1] else ""
        parts.append(
            f"{arch} {mean['trained']:.3f} vs {mean['default']:.3f} "
            f"({d[0]:+.3f} ± {d[1]:.3f}, {d[2]} seeds{verdict})"
        )
    if not parts:
        return None
    return (
        f"{LINE} ({task}, 10 % labels, 5 epochs, test score at the best validation epoch, this "
        "checkpoint with its prediction settings vs the architecture's default init, paired by "
        "seed, mean ± standard error; *ahead*/*behind*: by more than two standard errors): "
        + "; ".join(parts)
        + ". Details: `benchmarks/results/panel/panel.md` in the hyperinit repository."
    )


def card_line(modality: str, task: str, results: dict) -> str | None:
    """The Downstream line of ``modality``'s card: the panel measures each task with its own
    modality's checkpoint, so ``"mixed"`` (no task of its own) has none."""
    return None if modality == "mixed" else downstream_line(task, results)


def update_card(card: Path, line: str | None) -> bool:
    """Replace the card's Downstream line with ``line`` (or mark the old one as stale);
    returns whether the card changed."""
    text = card.read_text()
    if line is None:
        new = re.sub(
            rf"^({re.escape(LINE)})(?!{re.escape(STALE)})", rf"\1{STALE}", text, flags=re.M
        )
    elif LINE in text:
        new = re.sub(rf"^{re.escape(LINE)}.*$", lambda _: line, text, flags=re.M)
    else:
        new = text.rstrip("\n") + "\n" + line + "\n"
    if line is not None:  # the settings line's caveat no longer applies
        new = new.replace(SETTINGS_CAVEAT, "")
    if new != text:
        card.write_text(new)
    return new != text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--panel", type=Path, default=PANEL, help="panel.json to read")
    parser.add_argument("--checkpoints", type=Path, default=CHECKPOINTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results = json.loads(args.panel.read_text())["results"]
    for modality, task in TASK.items():
        card = args.checkpoints / modality / "README.md"
        if card.is_file():
            changed = update_card(card, card_line(modality, task, results))
            log.info("%s (%s): %s", modality, task, "updated" if changed else "unchanged")


if __name__ == "__main__":
    main()
