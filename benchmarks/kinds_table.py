"""The module-kind study as markdown: each kind alone and the toolbox with and without prompts.

    python benchmarks/kinds_table.py benchmarks/results/kinds/*.json --out docs/benchmarks-kinds.md

Reads `bench_real.py` result files, one per (setting, kinds, seed): a cegate row made with
`--rules fisher-cost --kinds K` is labelled by its kinds, one made with `--rules none` is the head
alone; the per-pixel classifier comes from the same files. Per setting, each row gets mean ± std
mIoU over its seeds, mean IoU per class, and its paired difference to the head alone and to the
default toolbox (lora, adapter, earth) over the seeds both have, with the seeds it is ahead on.
The block between the markers in `--out` is replaced; nothing in it is typed in by hand.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

BEGIN, END = "<!-- kinds_table:begin -->", "<!-- kinds_table:end -->"
TOOLBOX = "lora,adapter,earth"
ORDER = ("pixel", "head", "lora", "adapter", "earth", "prompt", TOOLBOX, TOOLBOX + ",prompt")
LABELS = {
    "pixel": "per-pixel classifier (bands only)",
    "head": "frozen backbone + head (`--selection none`)",
    "lora": "LoRA alone (`--modules lora`)",
    "adapter": "Adapter alone (`--modules adapter`)",
    "earth": "Earth-Adapter alone (`--modules earth`)",
    "prompt": "prompt tuning alone (`--modules prompt`)",
    TOOLBOX: "the toolbox (default, `--modules all`)",
    TOOLBOX + ",prompt": "the toolbox + prompts (`--modules lora,adapter,earth,prompt`)",
}


def rows_of(files: list[Path]) -> tuple[dict[str, dict[str, dict[int, dict]]], list[str]]:
    """setting -> row -> seed -> record, and the commands that made them."""
    table: dict[str, dict[str, dict[int, dict]]] = {}
    commands = []
    for path in files:
        data = json.loads(path.read_text(encoding="utf-8"))
        commands.append(f"{data['command']}   # {data['started'][:10]}, {data['machine']}, load {data['load_start']:.1f}-{data['load_end']:.1f}")
        kinds = data["args"].get("kinds")
        kinds = None if kinds in (None, "None") else kinds
        for record in data["records"]:
            if record["row"] == "pixel":
                row = "pixel"
            elif record["row"] == "none":
                row = "head"
            elif record["row"] == "fisher-cost":
                row = kinds or TOOLBOX
            else:
                continue
            table.setdefault(record["setting"], {}).setdefault(row, {})[record["seed"]] = record
    return table, commands


def paired(row: dict[int, dict], other: dict[int, dict] | None) -> str:
    if not other or row is other:
        return "–"
    seeds = sorted(set(row) & set(other))
    if not seeds:
        return "–"
    diffs = [row[s]["miou"] - other[s]["miou"] for s in seeds]
    ahead = sum(d > 0 for d in diffs)
    spread = f" ± {statistics.stdev(diffs):.3f}" if len(diffs) > 1 else ""
    return f"{statistics.mean(diffs):+.3f}{spread} ({ahead}/{len(diffs)})"


def render(table: dict[str, dict[str, dict[int, dict]]], commands: list[str]) -> str:
    lines = [BEGIN, "Made by these runs (bench_real.py; date, machine, load at start and end):", "", "```", *sorted(set(commands)), "```", ""]
    for setting in sorted(table):
        rows = table[setting]
        classes = list(next(iter(next(iter(rows.values())).values()))["iou"])
        lines += [
            f"### {setting}: galileo-nano, fisher-cost, linear-pixel head, 300 steps",
            "",
            "| row | seeds | mIoU, mean ± std | "
            + " | ".join(f"IoU {c}" for c in classes)
            + " | trained parameters | minus head alone, paired (ahead) | minus the toolbox, paired (ahead) |",
            "|---|---:|---:|" + "---:|" * len(classes) + "---:|---:|---:|",
        ]
        for name in ORDER:
            if name not in rows:
                continue
            row = rows[name]
            mious = [r["miou"] for r in row.values()]
            spread = f" ± {statistics.stdev(mious):.3f}" if len(mious) > 1 else ""
            per_class = [statistics.mean(r["iou"][c] for r in row.values() if r["iou"].get(c) is not None) for c in classes]
            params = statistics.mean(r["trained_parameters"] for r in row.values())
            lines.append(
                f"| {LABELS[name]} | {', '.join(map(str, sorted(row)))} | {statistics.mean(mious):.3f}{spread} | "
                + " | ".join(f"{v:.3f}" for v in per_class)
                + f" | {params:,.0f} | {paired(row, rows.get('head')) if name != 'pixel' else '–'} | "
                f"{paired(row, rows.get(TOOLBOX)) if name not in ('pixel', TOOLBOX) else '–'} |"
            )
        lines.append("")
    lines.append(END)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="markdown file whose kinds_table block is replaced (else printed)")
    args = parser.parse_args(argv)
    block = render(*rows_of(args.files))
    if args.out is None:
        print(block)
        return 0
    text = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
    if BEGIN in text and END in text:
        text = text.split(BEGIN)[0] + block + text.split(END, 1)[1].lstrip("\n")
    else:
        text += ("\n" if text else "") + block
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
