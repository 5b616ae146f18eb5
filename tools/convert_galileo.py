"""Convert the authors' Galileo encoder (encoder.pt + config.json) into the files cegate ships.

    PYTHONPATH=. python tools/convert_galileo.py --encoder .../nano/encoder.pt \
        --config .../nano/config.json --normalization .../normalization.json --out cegate_cli/weights

writes <name>.safetensors (every tensor of encoder.pt, ".backbone" removed from names, no
metadata but a format tag, so two runs give the same bytes), <name>.json (the authors'
`model.encoder`, the 13-band normalisation, where the weights came from) and <name>.LICENSE
(the authors' licence, which must travel with the weights). The pickle is read with
`weights_only=True`: tensors only, never code.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from safetensors.torch import save_file

from cegate_cli.backbone.galileo import (
    GROUPS,
    SPACE_TIME_BANDS,
    GalileoConfig,
    GalileoEncoder,
    PretrainedNormalization,
    galileo_state_dict,
)
from cegate_cli.backbone.weights_io import load_state_strict

FORMAT = "cegate-galileo/1"
SOURCE_REPOSITORY = "https://github.com/nasaharvest/galileo"
SOURCE_COMMIT = "0f0b5b95ac81acef4b74cf4686dc877202f4541b"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def convert(encoder: Path, config: Path, normalization: Path, out: Path, name: str, license_path: Path, source_folder: str) -> dict[str, object]:
    """Write the three files; return the record written as <name>.json."""
    authors_config = json.loads(config.read_text(encoding="utf-8"))
    model_config = GalileoConfig.from_authors_config(authors_config, str(config))
    state = {key: tensor.contiguous() for key, tensor in galileo_state_dict(encoder).items()}
    load_state_strict(GalileoEncoder(model_config), state, encoder, "galileo")  # refuse what would not load
    norm = PretrainedNormalization.from_json(normalization)

    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{name}.safetensors"
    save_file(state, str(weights), metadata={"format": FORMAT})  # one key: metadata order is not stable
    shutil.copyfile(license_path, out / f"{name}.LICENSE")
    record: dict[str, object] = {
        "format": FORMAT,
        "what": "Galileo encoder (Tseng et al., ICML 2025), pretrained by its authors; loaded by cegate_cli.backbone.galileo.load_galileo.",
        "architecture": "galileo_encoder",
        "model": {"encoder": authors_config["model"]["encoder"]},
        "bands": list(SPACE_TIME_BANDS),
        "groups": {group: [SPACE_TIME_BANDS[i] for i in index] for group, index in GROUPS.items()},
        "normalization": {
            "formula": "(x - (mean - std_multiplier * std)) / (2 * std_multiplier * std); unscaled_bands as is",
            "bands": list(norm.bands),
            "mean": list(norm.mean),
            "std": list(norm.std),
            "std_multiplier": norm.std_multiplier,
            "unscaled_bands": list(norm.unscaled_bands),
        },
        "weights_file": weights.name,
        "sha256": sha256(weights),
        "bytes": weights.stat().st_size,
        "parameters": sum(t.numel() for t in state.values()),
        "tensors": len(state),
        "license": {"name": "MIT", "file": f"{name}.LICENSE"},
        "source": {
            "repository": SOURCE_REPOSITORY,
            "commit": SOURCE_COMMIT,
            "folder": source_folder,
            "encoder": {"file": "encoder.pt", "sha256": sha256(encoder)},
            "config": {"file": "config.json", "sha256": sha256(config)},
            "normalization": {"file": "config/normalization.json", "key": "13", "sha256": sha256(normalization)},
        },
    }
    (out / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", type=Path, required=True, help="the authors' encoder.pt")
    parser.add_argument("--config", type=Path, required=True, help="the authors' config.json beside it")
    parser.add_argument("--normalization", type=Path, required=True, help="the authors' config/normalization.json")
    parser.add_argument("--out", type=Path, required=True, help="folder to write <name>.safetensors/.json/.LICENSE")
    parser.add_argument("--name", default="galileo-nano", help="file stem (default galileo-nano)")
    parser.add_argument("--license", type=Path, help="the authors' LICENSE (default: LICENSE beside --encoder)")
    parser.add_argument("--source-folder", default="data/models/nano/", help="the encoder's folder in the authors' repository")
    args = parser.parse_args(argv)
    license_path = args.license or args.encoder.parent / "LICENSE"
    for path in (args.encoder, args.config, args.normalization, license_path):
        if not path.is_file():
            parser.error(f"{path} is not a file")
    record = convert(args.encoder, args.config, args.normalization, args.out, args.name, license_path, args.source_folder)
    print(f"wrote {args.out / str(record['weights_file'])} ({record['parameters']:,} parameters, sha256 {record['sha256']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
