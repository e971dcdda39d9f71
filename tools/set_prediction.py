"""Set the prediction settings of every shipped checkpoint and re-pin their sha256.

The settings in a checkpoint's ``config.json`` that change what it predicts without changing
its weights (``noise``, ``spectrum``, ``centre_rows``, ``postprocess``) are chosen on
validation splits (``research/``). This writes them into the six modality checkpoints and the
untrained reference alike (so the reference stays the same design minus training), re-pins the
sha256 of each ``config.json`` in ``hyperinit/modalities.json`` and states the settings in each
model card. The Hub copies need a new push (``docs/checkpoints.md``); until then a download's
integrity check fails over to the embedded copy with one log line.

    python tools/set_prediction.py --noise orthogonal --spectrum flat \\
        --centre-rows except_depthwise --why "research/orthogonalize"
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path

from hyperinit.hub import sha256_file
from hyperinit.hypernet.config import HyperInitConfig

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "hyperinit" / "checkpoints"
REGISTRY = ROOT / "hyperinit" / "modalities.json"
CARD_LINE = "- **Prediction settings**"
PREDICTION_KEYS = ("noise", "spectrum", "centre_rows", "postprocess")

log = logging.getLogger("set_prediction")


def set_prediction(
    settings: dict, why: str, root: Path = CHECKPOINTS, registry_path: Path = REGISTRY
) -> dict[str, str]:
    """Write ``settings`` into every checkpoint under ``root`` and re-pin them in
    ``registry_path``; returns ``{name: config sha}``."""
    shas = {}
    configs = {}
    for folder in sorted(p for p in root.iterdir() if (p / "config.json").is_file()):
        config = HyperInitConfig.load(folder / "config.json")
        for key, value in settings.items():
            setattr(config, key, value)
        problem = config.problem()
        if problem:  # checked for every checkpoint before any is written
            raise SystemExit(f"{folder.name}: {problem}")
        configs[folder] = config
    for folder, config in configs.items():
        config.save(folder / "config.json")
        shas[folder.name] = sha256_file(folder / "config.json")
        card = folder / "README.md"
        if card.is_file():
            # every prediction setting, not only the ones just set
            stated = {k: getattr(config, k) for k in PREDICTION_KEYS}
            line = f"{CARD_LINE}: " + ", ".join(f"`{k}={v}`" for k, v in stated.items())
            line += (
                f" (chosen on validation splits: {why}). The Downstream line above may predate"
                " them; `benchmarks/results/panel/panel.md` has the current settings' numbers."
            )
            text = card.read_text()
            if CARD_LINE in text:
                text = re.sub(rf"^{re.escape(CARD_LINE)}.*$", line, text, flags=re.M)
            else:
                text = text.rstrip("\n") + "\n" + line + "\n"
            card.write_text(text)
        log.info("%s: %s", folder.name, settings)
    registry = json.loads(registry_path.read_text())
    for name, sha in shas.items():
        entry = registry["reference"] if name == "reference" else registry["trained"].get(name)
        if entry is not None:
            entry["sha256"]["config.json"] = sha
    registry_path.write_text(json.dumps(registry, indent=2) + "\n")
    return shas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", choices=["kron", "gaussian", "orthogonal"])
    parser.add_argument("--spectrum", choices=["predicted", "flat"])
    parser.add_argument("--centre-rows", choices=["all", "except_depthwise", "none"])
    parser.add_argument("--postprocess", type=json.loads, help='JSON, e.g. {"noise": 0.1}')
    parser.add_argument("--why", required=True, help="the experiment that chose the settings")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = {
        k: v
        for k, v in {
            "noise": args.noise,
            "spectrum": args.spectrum,
            "centre_rows": args.centre_rows,
            "postprocess": args.postprocess,
        }.items()
        if v is not None
    }
    if not settings:
        raise SystemExit("nothing to set: give --noise, --spectrum, --centre-rows or --postprocess")
    set_prediction(settings, args.why)


if __name__ == "__main__":
    main()
