"""Every bench, one markdown table each, with the machine and the date: `make bench`.

Runs, each in a process of its own (so each peak RSS is that run's):
the README scenario (`calls_per_interaction.py`), the naive recipe beside
crmhub (`naive.py`), the warm cycle at each history size on SQLite and
PostgreSQL (`warm_cycle.py`; PostgreSQL is skipped, with the reason, when
the local server is absent), and the webhook latency bench (`latency.py`)
when it is there. Prints the tables and writes them to
`bench/results/latest.md`. `--smoke` runs everything at tiny sizes, writes
no file unless `--out` says so, and is what `tests/test_bench_smoke.py`
runs, so the benches never rot. A bench that fails is a row saying so, and
the exit status is 1.

    .venv/bin/python bench/run.py                       # full: 10k, 100k, 1M interactions of history
    .venv/bin/python bench/run.py --sizes 10000,100000  # smaller, labelled as such in the file
    .venv/bin/python bench/run.py --smoke
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _sandbox as sb

HERE = Path(__file__).resolve().parent
LATEST = HERE / "results" / "latest.md"
FULL_SIZES = (10_000, 100_000, 1_000_000)


@dataclass(frozen=True)
class Plan:
    """The sizes one run uses."""

    messages: int = 2000  # README scenario
    customers: int = 400
    naive_messages: int = 300
    naive_customers: int = 100
    sizes: Sequence[int] = FULL_SIZES
    interactions: int = 300  # K of the warm cycle
    stores: Sequence[str] = ("sqlite", "postgresql")
    latency_args: Sequence[str] = ()
    same_process: bool = False  # benches run in this process (no per-size peak RSS): the smoke run


SMOKE = Plan(messages=24, customers=8, naive_messages=8, naive_customers=4, sizes=(200,), interactions=9,
             latency_args=("--smoke",), same_process=True)


@dataclass
class Report:
    """The markdown being built, and whether any bench failed."""

    sections: list[str] = field(default_factory=list)
    failed: bool = False

    def add(self, title: str, intro: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        lines = [f"## {title}", "", intro, "", "| " + " | ".join(header) + " |",
                 "|" + "|".join(" --- " for _ in header) + "|"]
        lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
        section = "\n".join(lines) + "\n"
        self.sections.append(section)
        print(section, flush=True)

    def failure(self, title: str, intro: str, result: dict[str, Any]) -> bool:
        """Whether the bench failed; if so its table is the one row saying why."""
        if "error" not in result:
            return False
        self.failed = True
        self.add(title, intro, ["error"], [[result["error"]]])
        return True


def bench(script: str, *args: str, same_process: bool = False) -> dict[str, Any]:
    """Run `bench/<script> --json ...` in a fresh process; its result, or {"error": why}.

    `same_process` calls the bench's `cli` here instead (the smoke run: one interpreter start, not one per bench).
    """
    if same_process:
        try:
            return importlib.import_module(Path(script).stem).cli(list(args))  # type: ignore[no-any-return]
        except (Exception, SystemExit) as exc:  # noqa: BLE001  # a failed bench is a row, the others go on
            return {"error": f"{script}: {type(exc).__name__}: {str(exc)[:300]}"}
    done = subprocess.run([sys.executable, str(HERE / script), "--json", *args], capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        why = (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or ["no output"])[-1]
        return {"error": f"{script} exited {done.returncode}: {why[:300]}"}
    return json.loads(lines[-1])  # type: ignore[no-any-return]  # a bench prints one JSON object


def readme_scenario(report: Report, plan: Plan) -> None:
    result = bench("calls_per_interaction.py", "--messages", str(plan.messages), "--customers", str(plan.customers),
                   same_process=plan.same_process)
    intro = (f"One cold cycle: {plan.messages} inbound SMS from {plan.customers} customers (half already contacts in "
             "every CRM), polled, routed and written to the three CRMs. Calls per interaction include the first "
             "mirror load.")
    if report.failure("README scenario (calls_per_interaction.py)", intro, result):
        return
    rows = [[r["system"], r["delivered"], r["dead"], r["calls"], r["per_interaction"]] for r in result["rows"]]
    rows.append(["hub CPU", f"{result['cpu_ms_per_interaction']} ms per interaction",
                 f"{result['cpu_ms_per_write']} ms per CRM write", f"wall {result['wall_s']} s",
                 f"peak RSS {result['peak_rss_mb']} MB"])
    report.add("README scenario (calls_per_interaction.py)", intro,
               ["system", "delivered", "dead", "API calls", "calls per interaction"], rows)


def naive_ratio(report: Report, plan: Plan) -> None:
    result = bench("naive.py", "--messages", str(plan.naive_messages), "--customers", str(plan.naive_customers),
                   same_process=plan.same_process)
    intro = (f"The same {plan.naive_messages} SMS from {plan.naive_customers} customers: per message and CRM, the naive "
             "recipe searches the contact by phone, creates it if missing, finds the open case, creates or updates "
             "it and logs the activity (same SDKs, same emulators); crmhub runs one cycle. Calls counted by the "
             "emulators; CPU of the thread doing the work.")
    if report.failure("Naive recipe beside crmhub (naive.py)", intro, result):
        return
    rows = [[r["crm"], r["naive_calls"], r["crmhub_calls"], r["naive_per_message"], r["crmhub_per_message"],
             f"{r['ratio']}x"] for r in result["rows"]]
    rows.append(["CPU ms per message", result["naive_cpu_ms_per_message"], result["crmhub_cpu_ms_per_message"],
                 "", "", f"{result['cpu_ratio']}x"])
    report.add("Naive recipe beside crmhub (naive.py)", intro,
               ["CRM", "naive calls", "crmhub calls", "naive per message", "crmhub per message", "naive / crmhub"],
               rows)


def warm_cycles(report: Report, plan: Plan) -> None:
    intro = (f"One warm cycle of {plan.interactions} new inbound SMS (a third each: new customers, customers known to "
             "every CRM, follow-ups to open conversations) over a store holding N interactions of history, after a "
             "small warm-up cycle. CPU is the cycle's thread (emulators excluded); SQL counts statements sent; the "
             "flatness ratio is CPU per interaction at the largest size over the smallest; peak RSS is the process "
             "of that size alone.")
    rows: list[list[Any]] = []
    for store in plan.stores:
        if store == "postgresql" and sb.postgres_version() is None:
            rows.append(["postgresql", "skipped: no PostgreSQL server on 127.0.0.1:5432", "", "", "", "", ""])
            continue
        cpu: dict[int, float] = {}
        for size in plan.sizes:
            began = time.perf_counter()
            result = bench("warm_cycle.py", "--size", str(size), "--store", store, "--interactions",
                           str(plan.interactions), *(["--same-process"] if plan.same_process else []),
                           same_process=plan.same_process)
            if "error" in result:
                report.failed = True
                rows.append([store, f"{size:,}", result["error"], "", "", "", ""])
                continue
            cpu[size] = result["cpu_ms_per_interaction"]
            calls = " / ".join(f"{result['calls_per_interaction'][crm]}" for crm in sb.CRMS)
            rows.append([store, f"{size:,}", result["cpu_ms_per_interaction"], result["sql_per_interaction"], calls,
                         result["peak_rss_mb"], f"{time.perf_counter() - began:.0f} s"])
            print("warm cycle:", " | ".join(str(cell) for cell in rows[-1]), flush=True)  # progress of a long run
        if len(cpu) > 1:
            low, high = min(cpu), max(cpu)
            rows.append([store, f"flatness {high:,} / {low:,}", f"{cpu[high] / max(cpu[low], 1e-9):.2f}x", "", "", "",
                         ""])
    report.add("Warm cycle over history (warm_cycle.py)", intro,
               ["store", "history (interactions)", "hub CPU ms per interaction", "SQL per interaction",
                "calls per interaction (SF / ZD / HS)", "peak RSS MB", "bench wall time"], rows)


def latency(report: Report, plan: Plan) -> None:
    """The webhook -> record latency bench (`bench/latency.py`, its own tables), when it is there."""
    if not (HERE / "latency.py").exists():
        print("latency: bench/latency.py is not there yet; skipped\n", flush=True)
        return
    done = subprocess.run([sys.executable, str(HERE / "latency.py"), *plan.latency_args], capture_output=True,
                          text=True)
    title = "Webhook latency (latency.py)"
    if report.failure(title, "", {"error": f"latency.py exited {done.returncode}: "
                                           f"{(done.stderr.strip().splitlines() or ['no output'])[-1][:300]}"}
                      if done.returncode != 0 or "|" not in done.stdout else {}):
        return
    section = f"## {title}\n\n{done.stdout.strip()}\n"  # it prints its own markdown tables
    report.sections.append(section)
    print(section, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every bench at tiny sizes (seconds), no file written")
    parser.add_argument("--sizes", help="history sizes of the warm cycle, comma-separated (default 10k,100k,1M)")
    parser.add_argument("--stores", help="sqlite,postgresql (default both)")
    parser.add_argument("--benches", default="readme,naive,warm,latency",
                        help="which benches, comma-separated (default all: readme,naive,warm,latency)")
    parser.add_argument("--out", type=Path, help=f"write the tables here (default {LATEST.relative_to(HERE.parent)}; "
                                                 "with --smoke, nowhere)")
    args = parser.parse_args()
    plan = SMOKE if args.smoke else Plan()
    if args.sizes:
        plan = Plan(**{**plan.__dict__, "sizes": tuple(int(s) for s in args.sizes.split(","))})
    if args.stores:
        plan = Plan(**{**plan.__dict__, "stores": tuple(args.stores.split(","))})
    began = time.perf_counter()
    info = sb.machine()
    every = args.benches == parser.get_default("benches") and tuple(plan.stores) == Plan.stores
    label = "smoke run (tiny sizes)" if args.smoke else (
        ("full run" if tuple(plan.sizes) == FULL_SIZES else
         f"smaller run: history sizes {', '.join(f'{s:,}' for s in plan.sizes)}")
        + ("" if every else f" of {args.benches} on {', '.join(plan.stores)} only"))
    command = " ".join([".venv/bin/python bench/run.py", *sys.argv[1:]])
    command = f"`make bench` (`{command}`)" if len(sys.argv) == 1 else f"`{command}`"
    head = (f"# crmhub benchmarks\n\n{label}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit `{info['commit']}`. "
            f"Machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}, SQLite {info['sqlite']}, "
            f"PostgreSQL {info['postgresql']}. Command: {command}.\n")
    print(head, flush=True)
    report = Report()
    steps = {"readme": readme_scenario, "naive": naive_ratio, "warm": warm_cycles, "latency": latency}
    for name in args.benches.split(","):
        steps[name](report, plan)
    took = f"All benches took {time.perf_counter() - began:.0f} s.\n"
    print(took)
    out = args.out or (None if args.smoke else LATEST)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join([head, *report.sections, took]))
    sys.exit(1 if report.failed else 0)


if __name__ == "__main__":
    main()
