"""``python -m xenstream.fuzz.run``: run every fuzz target, report speed, coverage and findings.

Each target runs as its own process under atheris/libFuzzer for ``--seconds``
(default 600, a nightly run; CI's smoke run passes ``--seconds 10``), seeded
with the corpus folder of its format, with per-input time and memory limits.
New inputs go to ``--work``/<target>/, findings (crash-, timeout-, oom-
files) to ``--findings``.  Afterwards each finding is minimised with the
project's reducer (``--no-minimize`` to skip) into ``<finding>.min``; add it
to the corpus with ``xenstream corpus add FILE -f FORMAT -d "..."``.

Per target it prints executions per second, libFuzzer's ``cov:`` and, unless
``--no-coverage``, coverage.py's line coverage of ``reference/`` reached by
the target's corpus (seeds plus what the run found); the combined data is
written to ``--work``/.coverage (``coverage report``/``html`` read it).

Exit status: 0 no finding, 1 a finding, 2 a target could not run.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .harness import seed_formats, target_names

ARTIFACT_PREFIXES = ("crash-", "timeout-", "oom-", "leak-")


@dataclass
class Outcome:
    target: str
    rc: int = 0
    runs: int = 0
    exec_per_sec: float = 0.0
    cov: int | None = None
    ft: int | None = None
    line_coverage: float | None = None
    findings: list[Path] = field(default_factory=list)
    error: str | None = None


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m xenstream.fuzz.run", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=600, help="fuzzing time per target (default 600)")
    p.add_argument("--targets", default=None, help="comma-separated subset (default: all): "
                   + ", ".join(target_names()))
    p.add_argument("--work", type=Path, default=Path("fuzz-work"), help="working corpora and coverage data")
    p.add_argument("--findings", type=Path, default=Path("fuzz/crashes"), help="where findings go")
    p.add_argument("--corpus", type=Path, default=None, help="seed corpus folder (default: the package's)")
    p.add_argument("--timeout", type=int, default=10, help="seconds per input before it is a finding")
    p.add_argument("--rss-limit-mb", type=int, default=2048, help="memory per target process")
    p.add_argument("--max-len", type=int, default=65536, help="largest input libFuzzer makes")
    p.add_argument("--no-coverage", action="store_true", help="skip the coverage.py measurement")
    p.add_argument("--no-minimize", action="store_true", help="do not minimise findings")
    p.add_argument("--list", action="store_true", help="print the target names and exit")
    return p.parse_args(argv)


def _stat(pattern: str, text: str, cast=int):
    found = re.findall(pattern, text)
    return cast(found[-1]) if found else None


def run_target(target: str, args, seed_root: Path) -> Outcome:
    out = Outcome(target)
    work = args.work / target
    work.mkdir(parents=True, exist_ok=True)
    args.findings.mkdir(parents=True, exist_ok=True)
    seeds = [str(seed_root / fmt) for fmt in seed_formats(target) if (seed_root / fmt).is_dir()]
    before = set(args.findings.iterdir())
    cmd = [sys.executable, "-m", f"xenstream.fuzz.{target}", str(work), *seeds,
           f"-max_total_time={args.seconds}", f"-timeout={args.timeout}",
           f"-rss_limit_mb={args.rss_limit_mb}", f"-max_len={args.max_len}",
           f"-artifact_prefix={args.findings}/{target}-", "-print_final_stats=1"]
    log = args.work / f"{target}.log"
    started = time.monotonic()
    try:
        with open(log, "w") as fh:
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT,
                                  timeout=args.seconds + 120 + args.timeout * 2)
        out.rc = proc.returncode
    except subprocess.TimeoutExpired:
        out.rc, out.error = 2, "the target did not stop in time"
    text = log.read_text(errors="replace")
    out.runs = _stat(r"stat::number_of_executed_units:\s*(\d+)", text) or _stat(r"#(\d+)\s", text) or 0
    out.exec_per_sec = _stat(r"stat::average_exec_per_sec:\s*(\d+)", text, float) \
        or out.runs / max(time.monotonic() - started, 1e-9)
    out.cov = _stat(r"cov: (\d+)", text)
    out.ft = _stat(r"ft: (\d+)", text)
    out.findings = sorted(p for p in set(args.findings.iterdir()) - before
                          if p.name.startswith(f"{target}-") and
                          p.name[len(target) + 1:].startswith(ARTIFACT_PREFIXES))
    if out.rc != 0 and not out.findings and out.error is None:
        out.error = f"exit status {out.rc}; see {log}"
        tail = text.strip().splitlines()[-15:]
        print("\n".join(f"    | {line}" for line in tail), file=sys.stderr)
    return out


def measure_coverage(target: str, args, seed_root: Path) -> float | None:
    dirs = [str(args.work / target)] + [str(seed_root / f) for f in seed_formats(target)]
    data_file = args.work / f".coverage.{target}"
    cmd = [sys.executable, "-m", "xenstream.fuzz.cover", target, "--data-file", str(data_file), *dirs]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    m = re.search(r"line coverage of reference/: ([\d.]+)%", proc.stdout)
    if proc.returncode != 0 or not m:
        print(f"  coverage of {target} failed: {proc.stderr.strip()[-500:]}", file=sys.stderr)
        return None
    return float(m.group(1))


def minimise(finding: Path, target: str) -> Path | None:
    cmd = [sys.executable, "-m", "xenstream.fuzz.minimize", target, str(finding)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        print(f"  minimising {finding.name} failed: {proc.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    out = Path(str(finding) + ".min")
    return out if out.is_file() else None


def main(argv=None) -> int:
    args = parse_args(argv)
    names = target_names()
    if args.list:
        print("\n".join(names))
        return 0
    if args.targets:
        wanted = [t.strip() for t in args.targets.split(",") if t.strip()]
        unknown = [t for t in wanted if t not in names]
        if unknown:
            print(f"unknown target(s): {', '.join(unknown)}", file=sys.stderr)
            return 2
        names = wanted
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed: pip install '.[fuzz]'", file=sys.stderr)
        return 2
    from xenstream.corpus.build import default_dir

    seed_root = args.corpus or default_dir()
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    outcomes = []
    print(f"{'target':22} {'runs':>9} {'exec/s':>8} {'cov':>6} {'ft':>6} {'lines':>7}  findings")
    for target in names:
        o = run_target(target, args, seed_root)
        if not args.no_coverage:
            o.line_coverage = measure_coverage(target, args, seed_root)
        outcomes.append(o)
        lines = "-" if o.line_coverage is None else f"{o.line_coverage:.1f}%"
        status = ", ".join(p.name for p in o.findings) or (o.error or "none")
        print(f"{target:22} {o.runs:>9} {o.exec_per_sec:>8.0f} {o.cov or '-':>6} {o.ft or '-':>6} "
              f"{lines:>7}  {status}", flush=True)
        if o.findings and not args.no_minimize:
            for f in o.findings:
                small = minimise(f, target)
                if small is not None:
                    print(f"  minimised {f.name}: {f.stat().st_size} -> {small.stat().st_size} octets: {small}")
    if not args.no_coverage:
        combined = combine_coverage(args.work)
        if combined is not None:
            print(f"all targets: line coverage of reference/ {combined:.1f}% "
                  f"(coverage data: {args.work / '.coverage'})")
    found = sum(len(o.findings) for o in outcomes)
    broken = [o.target for o in outcomes if o.error]
    if found:
        print(f"{found} finding(s) in {args.findings}; minimised copies end in .min; add them with "
              f"`xenstream corpus add FILE.min -f FORMAT -d DESCRIPTION`")
        return 1
    if broken:
        print(f"target(s) that did not run: {', '.join(broken)}", file=sys.stderr)
        return 2
    return 0


def combine_coverage(work: Path) -> float | None:
    try:
        import coverage
    except ImportError:
        return None
    parts = sorted(str(p) for p in work.glob(".coverage.*"))
    if not parts:
        return None
    cov = coverage.Coverage(data_file=str(work / ".coverage"))
    cov.combine(parts, keep=True)
    cov.save()
    with open(os.devnull, "w") as devnull:
        return cov.report(file=devnull, include=[f"*{os.sep}reference{os.sep}*"])


if __name__ == "__main__":
    sys.exit(main())
