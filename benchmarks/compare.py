"""Run one benchmark script against two revisions of itsmcore, side by side, in one run.

The script (from this checkout) runs in alternating subprocesses, once with this checkout's
``src`` and once with the revision's, for several rounds; every row keeps its best rate of
each side, and the table shows both and their ratio. Alternating rounds spread the noise of
a shared machine over both sides instead of favouring whichever ran on a quiet minute.

    python benchmarks/compare.py --against HEAD~3 bench_incident.py --n 20000
    python benchmarks/compare.py --against main --rounds 5 bench_sla.py --n 20000

The benchmark script must accept ``--json PATH`` and write ``{"results": {row: {...}}}``,
``{"evaluations_per_s": {row: rate}}``, ``{"mixes": {mix: {"ops_per_s": {op: rate}}}}`` or
``{"ops_per_s": {row: rate}, "client_cpu_ops_per_s": {row: rate}}``; the comparison reads the
``*_per_s`` figures (itsmcore's own, not the peers'; bench_storage.py's raw driver rows too:
the same code on both sides, they show how much the machine moved between the sides).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _rates(payload: dict[str, object]) -> dict[str, float]:
    """Every ``row: rate`` of a benchmark's JSON (higher is better)."""
    out: dict[str, float] = {}
    results = payload.get("results")
    if isinstance(results, dict):
        for row, figures in results.items():
            for key, value in figures.items():
                if key.endswith("_per_s") and key.startswith("itsmcore"):
                    out[f"{row} ({key})"] = float(value)
    rates = payload.get("evaluations_per_s")
    if isinstance(rates, dict):
        out.update({row: float(rate) for row, rate in rates.items()})
    for key in ("ops_per_s", "client_cpu_ops_per_s"):  # bench_storage.py: stores and raw code
        figures = payload.get(key)
        if isinstance(figures, dict):
            out.update({row: float(rate) for row, rate in figures.items()})
    mixes = payload.get("mixes")  # bench_calendar.py: operations per second per mix
    if isinstance(mixes, dict):
        for mix, figures in mixes.items():
            for op, rate in figures.get("ops_per_s", {}).items():
                if op.startswith("itsmcore"):
                    out[f"{mix}: {op}"] = float(rate)
    return out


def _run(src: Path, script: str, args: list[str]) -> dict[str, float]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = Path(fh.name)
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{HERE}"}
    subprocess.run(  # noqa: S603 - our own benchmark script with our own arguments
        [sys.executable, str(HERE / script), *args, "--json", str(out)],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        return _rates(json.loads(out.read_text(encoding="utf-8")))
    finally:
        out.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="a git revision to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("script", help="a benchmark script in benchmarks/")
    args, rest = parser.parse_known_args()

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(  # noqa: S603
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.against],  # noqa: S607
            check=True,
            capture_output=True,
        )
        try:
            best: dict[str, dict[str, float]] = {"base": {}, "head": {}}
            for _ in range(args.rounds):
                for side, src in (("base", base / "src"), ("head", ROOT / "src")):
                    for row, rate in _run(src, args.script, rest).items():
                        best[side][row] = max(rate, best[side].get(row, 0.0))
        finally:
            subprocess.run(  # noqa: S603
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],  # noqa: S607
                check=False,
                capture_output=True,
            )
    print(f"{args.script} {' '.join(rest)}: best of {args.rounds} alternating rounds")
    print(f"\n| row | {args.against} /s | this checkout /s | this / {args.against} |")
    print("|---|---:|---:|---:|")
    for row, rate in best["head"].items():
        old = best["base"].get(row)
        ratio = f"{rate / old:.2f}" if old else "-"
        print(f"| {row} | {old or 0:,.0f} | {rate:,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
