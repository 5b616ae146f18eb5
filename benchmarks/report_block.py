"""What the benchmark scripts share when they write their figures into docs/.

Each script owns one generated block of a markdown page, between `<!-- NAME:begin -->` and
`<!-- NAME:end -->`; the hand-written text around it (what the figures mean, where cegate loses)
must survive every rerun, so only the block is replaced.
"""

from __future__ import annotations

import datetime as _dt
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux; `platform` says only "x86_64" there)."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return name


def measured_header(machine: str, minutes: float, command: str, date: str | None = None) -> list[str]:
    """The lines every generated block starts with: date, machine, duration, the exact command.
    `date` is when the runs were made (a block rendered later from their --json files); None: today."""
    return [
        f"Measured {date or _dt.date.today().isoformat()} on {machine}; {minutes:.0f} minutes in all.",
        "",
        "```",
        command,
        "```",
        "",
    ]


def replace_block(path: Path, name: str, lines: list[str], new_page_heading: str) -> None:
    """Write `lines` as the block NAME of `path` (appended, or a new page, if it has none yet)."""
    from cegate_cli.infra.atomic import write_text_atomic

    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = "\n".join([begin, *lines, end])
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if begin in old and end in old:
        new = old[: old.index(begin)] + block + old[old.index(end) + len(end) :]
    else:
        new = (old.rstrip() + "\n\n" if old else new_page_heading) + block + "\n"
    write_text_atomic(path, new)


def run_dates(headers: list[dict]) -> str | None:
    """The day, or first and last day, the runs of some bench_real.py --json files started on."""
    days = sorted({str(h["started"])[:10] for h in headers if h.get("started")})
    if not days:
        return None
    return days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}"


def per_seed_commands(headers: list[dict], seeds: list[int], rendered_by: str) -> str:
    """The commands of runs made once per seed, each written once with the seed as S (files named
    by it), then the loop and the command that rendered them: a block of 30 runs stays readable."""
    import re

    def per_seed(command: str) -> str:  # a command that ran several seeds at once is kept as it ran
        one_seed = re.search(r"--seeds (\d+) (?!\d)", command + " ")
        if one_seed is None:
            return command
        seed = one_seed.group(1)  # "_s3" names seed 3 in any path: the json, and a --work folder like w_tdef_s3
        named = re.sub(rf"_s{seed}(?=[./\s]|$)", "_sS", command + " ")
        return re.sub(r"--seeds \d+ ", "--seeds S ", named).rstrip()

    commands = sorted({per_seed(h.get("command", "?")) for h in headers})
    commands.append(f"# for S in {' '.join(map(str, seeds))}; rendered by: {rendered_by}")
    return "\n".join(commands)


def study_header(headers: list[dict], seeds: list[int], rendered_by: str) -> list[str]:
    """The start of a block rendered from bench_real.py --json files run once per seed: date,
    machines, minutes, the commands, and the range of load averages the runs met."""
    machines = "; ".join(sorted({h.get("machine", "?") for h in headers}))
    minutes = sum(float(h.get("minutes", 0.0)) for h in headers)
    lines = measured_header(machines, minutes, per_seed_commands(headers, seeds, rendered_by), run_dates(headers))
    loads = [float(x) for h in headers for x in (h.get("load_start"), h.get("load_end")) if x is not None]
    if loads:
        lines += [
            f"1-minute load average at the start and end of the {len(headers)} runs: {min(loads):.2f} to {max(loads):.2f} "
            "(the machine was shared; mIoU does not depend on load, seconds do).",
            "",
        ]
    return lines


def write_or_print(path: Path | None, name: str, lines: list[str], new_page_heading: str) -> None:
    """The block into the page at `path` (see replace_block), or to stdout without one."""
    if path is not None:
        replace_block(path, name, lines, new_page_heading)
    else:
        print("\n".join(lines))
