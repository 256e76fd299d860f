"""`make bench`: run every bench_*.py module and print its figures as one table.

Machines are noisy: compare ratios measured in the same run, not absolute numbers.
`python -m bench NAME...` runs only those modules; `--quick` shrinks the sizes.
`python -m bench csink --sizes 10000 --connections 4` is the C-sink send bench (issue 20)
cut down to a few minutes; its options apply to that module only.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import pkgutil
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

import bench


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("only", nargs="*", help="module names without bench_ (e.g. send ledger)")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--json", type=Path, help="also write the rows to this file")
    from bench import bench_csink

    bench_csink.add_arguments(ap.add_argument_group("csink (C sink send bench, issue 20)"))
    args = ap.parse_args()
    csink_opts = bench_csink.options_from(args)
    console = Console(width=140)
    names = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))
    if args.only:
        names = [n for n in names if n.removeprefix("bench_") in args.only]
    table = Table(title="mailer benchmarks (one run; compare ratios within it)")
    for col in ("bench", "measure", "value", "unit", "note"):
        table.add_column(col)
    all_rows = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        console.print(f"[bold]running {name}...[/]")
        t0 = time.perf_counter()
        if "opts" in inspect.signature(module.run).parameters:
            rows = module.run(quick=args.quick, opts=csink_opts)
        else:
            rows = module.run(quick=args.quick)
        console.print(f"  done in {time.perf_counter() - t0:.1f}s")
        for r in rows:
            table.add_row(name.removeprefix("bench_"), r["measure"], f"{r['value']:,.2f}" if isinstance(r["value"], float) else str(r["value"]),
                          r.get("unit", ""), r.get("note", ""))
            all_rows.append({"bench": name, **r})
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(all_rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
