"""Write the architecture panel's numbers into the model cards and the README's results table.

Each modality checkpoint's card (``hyperinit/checkpoints/<modality>/README.md``, not pinned)
gets a **Downstream** line from ``benchmarks/results/panel/panel.json``: on its own task, every
panel architecture's test score with this checkpoint and with default init, the paired
difference (mean ± standard error, seeds), and which pairs are ahead or behind by more than two
standard errors. A modality the panel has not measured keeps its line, marked as predating the
current prediction settings. The Hub copies need a new push (``docs/checkpoints.md``). The
README's table (between the ``panel table`` markers) gets every pair's paired difference and
the counts of the panel's scoreboard under it.

    python tools/panel_cards.py            # after benchmarks/panel.py
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import textwrap
from pathlib import Path

from hyperinit.bench.quick import TASK
from hyperinit.bench.stats import paired_by_seed

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

README = ROOT / "README.md"
TABLE_START = "<!-- panel table: tools/panel_cards.py writes it from panel.json -->"
TABLE_END = "<!-- /panel table -->"
COLUMNS = {
    "chest_xray": "chest X-ray (xray, AUC)",
    "busi": "BUSI (ultrasound, macro AUC)",
    "ct_covid": "COVID-CT (ct, AUC)",
    "dermamnist": "DermaMNIST (dermoscopy, macro AUC)",
    "drive": "DRIVE (fundus, Dice)",
}

log = logging.getLogger("panel_cards")


def paired(by: dict, a: str, b: str) -> tuple[float, float, int] | None:
    """Test-score ``a - b`` over the seeds both inits have: mean, standard error, seeds."""
    d = paired_by_seed(by, a, b)
    return None if d is None else d[:3]


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


def readme_table(results: dict, seeds: int = 6) -> list[str]:
    """Trained − default (test) per architecture and task: mean ± standard error, the seed
    count in brackets where it is not ``seeds``, in bold where ahead by more than 2 SE."""
    pairs = [p.split("|") for p in results]
    archs = list(dict.fromkeys(a for a, _ in pairs))
    tasks = [t for t in COLUMNS if any(t == pt for _, pt in pairs)]
    lines = [
        "| architecture | " + " | ".join(COLUMNS[t] for t in tasks) + " |",
        "|---|" + "---|" * len(tasks),
    ]
    for arch in archs:
        cells = []
        for task in tasks:
            d = paired(results.get(f"{arch}|{task}", {}), "trained", "default")
            if d is None:
                cells.append("—")
                continue
            text = f"{d[0]:+.3f} ± {d[1]:.3f}".replace("-", "−")
            text = f"**{text}**" if d[0] > 2 * d[1] else text
            cells.append(text + ("" if d[2] == seeds else f" ({d[2]})"))
        lines.append(f"| {arch} | " + " | ".join(cells) + " |")
    return lines


def _pair_text(pair: str, results: dict) -> str:
    arch, task = pair.split("|")
    d = paired(results[pair], "trained", "default")
    number = f"{d[0]:+.3f} ± {d[1]:.3f}".replace("-", "−")
    return f"{arch} on {COLUMNS[task].split(' (')[0]} ({number})"


def readme_summary(scoreboard: dict, results: dict) -> list[str]:
    """The counts under the README table, from the panel's scoreboard."""
    behind, ahead = scoreboard["behind_2se"], scoreboard["ahead_2se"]
    text = (
        f"Of these {scoreboard['pairs']} pairs, {len(ahead)} are ahead of default init by more "
        f"than two standard errors and {len(behind)} behind"
        + (": " + "; ".join(_pair_text(p, results) for p in behind) if behind else "")
        + "."
    )
    never = scoreboard["archs_never_ahead"]
    if never:
        text += f" Ahead on no task: {', '.join(never)}."
    text += (
        " The trained checkpoints are ahead of the untrained reference hypernetwork through the "
        f"same settings on {scoreboard['trained_over_reference']} pairs (by the mean)."
    )
    fair = scoreboard.get("resnets_ahead_of_fair_baseline", {})
    if fair:
        text += (
            " Against default init without its zero-initialised last norms "
            "(`zero_init_last=False`, the fair baseline for ResNets) they are ahead by more than "
            "two standard errors on "
            + ", ".join(f"{n} tasks for {a}" for a, n in fair.items())
            + "."
        )
    return ["", *textwrap.wrap(text, width=96, break_on_hyphens=False)]


def update_readme(readme: Path, table: list[str]) -> bool:
    """Replace the table between the markers; returns whether the README changed."""
    text = readme.read_text()
    if TABLE_START not in text or TABLE_END not in text:
        raise SystemExit(f"{readme}: add the lines {TABLE_START!r} and {TABLE_END!r} first")
    head, rest = text.split(TABLE_START, 1)
    tail = rest.split(TABLE_END, 1)[1]
    new = "\n".join([head + TABLE_START, *table, TABLE_END]) + tail
    if new != text:
        readme.write_text(new)
    return new != text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--panel", type=Path, default=PANEL, help="panel.json to read")
    parser.add_argument("--checkpoints", type=Path, default=CHECKPOINTS)
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    panel = json.loads(args.panel.read_text())
    results = panel["results"]
    for modality, task in TASK.items():
        card = args.checkpoints / modality / "README.md"
        if card.is_file():
            changed = update_card(card, card_line(modality, task, results))
            log.info("%s (%s): %s", modality, task, "updated" if changed else "unchanged")
    table = readme_table(results) + readme_summary(panel["scoreboard"], results)
    changed = update_readme(args.readme, table)
    log.info("README table: %s", "updated" if changed else "unchanged")


if __name__ == "__main__":
    main()
