"""The pytest plugin: options, case parametrisation, and the run's bookkeeping.

``conformance/conftest.py`` imports these hooks, so ``pytest conformance``
runs the suite (``conformance/test_conformance.py``) against the built-in
reference, and ``pytest conformance --impl=./verify-stream-v2`` against a
program.  The logic lives in plain modules (:mod:`.execute`, :mod:`.cases`,
:mod:`.judge`, :mod:`.runner`, :mod:`.preflight`, :mod:`.known_failures`,
:mod:`.results`); this one only turns options into objects and results into
pytest outcomes.
Works under ``pytest -n auto``: each worker collects the same cases in the
same order, and the controller gathers the results from the test reports.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import shlex
import signal
import sys
import threading
from pathlib import Path

import pytest

from . import cases as casesmod
from . import containment
from .delivery import MODES
from .execute import Builtin, Limits, Program, reference_command
from .judge import CRASHED, FAIL, FLAKY, HARNESS_ERROR, Judgement
from .known_failures import KnownFailures
from .preflight import Refusal
from .results import CaseResult, Run
from .runner import DELIVERY_CHOICES, CaseRun, Runner, default_reason, parse_delivery

RESULT_KEY = "xenstream"
ALL_SOURCES = ("examples", "corpus", "large", "prefixes", "strategies")
#: Smallest --impl-memory (MiB) a program can start under: below it the
#: dynamic loader of most programs fails before main().
MIN_MEMORY_MB = 16
#: Runs a Hypothesis property may make after it found an example that
#: crashes, times out or fails to allocate (while shrinking it): after these,
#: examples not run yet count as passing, so that the search ends with the
#: smallest failing example found so far instead of paying a timeout for
#: every shrink step.
SHRINK_BUDGET = 4
#: The Hypothesis seed of the suite's properties unless --hypothesis-seed says otherwise:
#: two runs of one implementation draw the same streams.
DEFAULT_SEED = 0
#: workerinput key: the formats the controller's preflight found refused
_REFUSED_KEY = "xenstream_refused"
#: the file that marks a --failures-dir as written by this suite
FAILURES_MARK = ".xenstream-failures"
#: our options (name -> takes a value), filled by pytest_addoption
_OPTIONS: dict[str, bool] = {}
#: options that say nothing about which cases run or how they are judged
_NOT_RECORDED = ("--known-failures", "--update-known-failures", "--report", "--failures-dir")


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("xenstream", "xenstream conformance suite")
    g.addoption("--impl", default="builtin", metavar="PATH",
                help="program to test (verify-stream-v2 convention: PROG -f FORMAT -i FILE|0; "
                     "exit 0 accepted, 1 rejected); 'builtin' (default): the reference verifier "
                     "in-process; 'builtin-subprocess': `python -m xenstream verify` per case")
    g.addoption("--impl-cmd", default=None, metavar="TEMPLATE",
                help="command template with {format} and {path} (stdin when {path} is absent); "
                     "for converters {in}, {out}, {options}")
    g.addoption("--impl-kind", choices=("verifier", "converter", "libxenguest", "xenstored"),
                default="verifier",
                help="verifier (default); converter: a legacy converter (convert-legacy-stream "
                     "options); libxenguest: Xen's xc_domain_restore under a fake hypervisor (--impl "
                     "is a release directory from scripts/fetch-xen-tools, default "
                     ".cache/xen-tools/4.17); xenstored: a daemon restoring live-update streams "
                     "(--impl=the daemon or a script that execs it; judged as a restorer, its "
                     "restored store checked)")
    g.addoption("--impl-role", choices=("strict", "restore"), default="strict",
                help="how 'writer' cases are judged: strict must refuse, restore must accept")
    g.addoption("--impl-timeout", type=float, default=5.0, metavar="SECONDS",
                help="per-run timeout (default 5); after 8 cases in a row that time out in every "
                     "run, a tenth of it (at least 0.5 s) until a run ends on its own")
    g.addoption("--impl-memory", type=int, default=1024, metavar="MIB",
                help=f"address-space limit per run in MiB (RLIMIT_AS; at least {MIN_MEMORY_MB}; "
                     "0: none, e.g. for ASan builds)")
    g.addoption("--impl-output-limit", type=int, default=1 << 20, metavar="OCTETS",
                help="stdout+stderr per run before it is killed (default 1 MiB)")
    g.addoption("--formats", default=None, metavar="LIST",
                help="formats the implementation supports (others are skipped once)")
    g.addoption("--sources", default=",".join(ALL_SOURCES), metavar="LIST",
                help=f"case sources (default {','.join(ALL_SOURCES)})")
    g.addoption("--corpus", default=None, metavar="DIR", help="corpus folder with manifest.json")
    g.addoption("--failures-dir", default="failures", metavar="DIR",
                help="where failing streams are saved (default ./failures); emptied at the start "
                     "of each run, refused when it holds files no run of this suite wrote")
    g.addoption("--delivery", default="sample", metavar="MODES",
                help=f"{'|'.join(DELIVERY_CHOICES)} or a list of {','.join(MODES)} "
                     "(default sample: every mode for a stable sample of cases, file for the rest; "
                     "the large streams always in every mode)")
    g.addoption("--prefix-sample", type=int, default=casesmod.PREFIX_SAMPLE, metavar="N",
                help="truncated prefixes checked per valid stream (default %(default)s)")
    g.addoption("--hypothesis-examples", type=int, default=25, metavar="N",
                help="examples per Hypothesis property (default %(default)s)")

    g.addoption("--known-failures", default=None, metavar="FILE",
                help="case ids expected to fail, with a reason each")
    g.addoption("--update-known-failures", action="store_true",
                help="rewrite --known-failures from this run's failures")
    g.addoption("--report", default=None, metavar="DIR",
                help="write results.json and report.md here")
    for option in g.options:
        for name in option.names():
            if name.startswith("--"):
                _OPTIONS[name] = option.attrs().get("action") not in ("store_true", "store_false")


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [t.strip() for t in text.split(",") if t.strip()]


def check_options(opt) -> None:
    """Usage errors for option values no run can use, before any case runs."""
    timeout = opt("--impl-timeout")
    if not timeout > 0 or timeout != timeout or timeout == float("inf"):
        raise pytest.UsageError(f"--impl-timeout={timeout:g}: give a number of seconds above 0")
    memory = opt("--impl-memory")
    if memory < 0 or 0 < memory < MIN_MEMORY_MB:
        raise pytest.UsageError(f"--impl-memory={memory}: give 0 (no limit) or at least "
                                f"{MIN_MEMORY_MB} MiB; no program starts with less")
    if opt("--impl-output-limit") < 1:
        raise pytest.UsageError(f"--impl-output-limit={opt('--impl-output-limit')}: give a number "
                                "of octets above 0")
    if opt("--prefix-sample") < 0:
        raise pytest.UsageError(f"--prefix-sample={opt('--prefix-sample')}: give 0 or more")
    if opt("--hypothesis-examples") < 1:
        raise pytest.UsageError(f"--hypothesis-examples={opt('--hypothesis-examples')}: give 1 or "
                                "more (leave 'strategies' out of --sources for none)")
    sources = _split(opt("--sources"))
    bad = [s for s in sources or [] if s not in ALL_SOURCES]
    if bad or not sources:
        raise pytest.UsageError(f"--sources={opt('--sources')}: unknown "
                                f"{', '.join(bad) or 'nothing given'}; known: {', '.join(ALL_SOURCES)}")


def check_formats(wanted: list[str] | None, known: list[str]) -> None:
    if wanted is None:
        return
    bad = [f for f in wanted if f not in known]
    if bad or not wanted:
        raise pytest.UsageError(f"--formats: unknown format {', '.join(bad) or '(none given)'}; "
                                f"known: {', '.join(known)}")


class Suite:
    """Everything the run shares: the implementation, its runner, the cases."""

    def __init__(self, config: pytest.Config):
        opt = config.getoption
        self.config = config
        check_options(opt)
        self.kind = opt("--impl-kind")
        self.role = opt("--impl-role")
        if self.kind == "xenstored":
            self.role = "restore"   # a daemon restoring its own state is a restorer
        elif self.kind == "libxenguest" and not any(
                str(a).startswith("--impl-role") for a in config.invocation_params.args):
            self.role = "restore"   # Xen's restore code is a restorer unless told otherwise
        self.limits = Limits(opt("--impl-timeout"), opt("--impl-memory"), opt("--impl-output-limit"))
        self.sources = _split(opt("--sources")) or []
        try:
            delivery = parse_delivery(opt("--delivery"))
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
        base = config.invocation_params.dir
        self.failures_dir = (base / opt("--failures-dir")).resolve()
        kf = opt("--known-failures")
        self.known_path = (base / kf).resolve() if kf else None
        if opt("--update-known-failures") and self.known_path is None:
            raise pytest.UsageError("--update-known-failures needs --known-failures FILE")
        self.known = KnownFailures.load(self.known_path)
        self.report_dir = (base / opt("--report")).resolve() if opt("--report") else None
        self.corpus_dir = (base / opt("--corpus")).resolve() if opt("--corpus") else None
        if self.corpus_dir is not None and not (self.corpus_dir / "manifest.json").is_file():
            raise pytest.UsageError(f"--corpus={opt('--corpus')}: no manifest.json in "
                                    f"{self.corpus_dir}")
        self.hypothesis_examples = opt("--hypothesis-examples")
        # Hypothesis' own --hypothesis-seed, read as its plugin reads it (an
        # integer when it looks like one); a fixed seed when not given
        seed = config.getoption("hypothesis_seed", default=None)
        if isinstance(seed, str) and seed.lstrip("-").isdigit():
            seed = int(seed)
        self.hypothesis_seed = DEFAULT_SEED if seed is None else seed
        self.prefix_sample = opt("--prefix-sample")
        self.programs: list[str] = []   # checked by the preflight
        self.refused: dict[str, Refusal] = {}
        self.impl = self._make_impl(opt("--impl"), opt("--impl-cmd"))
        workdir = None  # the runner's own temporary folder, removed at the end
        if self.kind == "converter":
            from .converter import ConverterRunner

            self.runner: Runner = ConverterRunner(self.impl, self.role, delivery, self.failures_dir,
                                                  workdir, self.known)
        elif self.kind == "libxenguest":
            from .libxenguest.testee import LibxenguestRunner

            self.runner = LibxenguestRunner(self.impl, self.role, delivery, self.failures_dir,
                                            workdir, self.known)
        elif self.kind == "xenstored":
            from .xenstored.runner import XenstoredRunner

            self.runner = XenstoredRunner(self.impl, self.role, "file", self.failures_dir,
                                          workdir, self.known)
        else:
            self.runner = Runner(self.impl, self.role, delivery, self.failures_dir, workdir, self.known)
        self.formats_wanted = _split(opt("--formats"))
        self._collection: casesmod.Collection | None = None
        check_formats(self.formats_wanted, self._format_names())

    def _format_names(self) -> list[str]:
        """Every format name --formats may give: the codecs' (built or not) and
        those of the corpus's entries."""
        import json

        from xenstream.reference.formats import FORMAT_MODULES

        names = list(FORMAT_MODULES)
        if "corpus" in self.sources:
            manifest = (self.corpus_dir or casesmod.default_corpus_dir()) / "manifest.json"
            try:
                entries = json.loads(manifest.read_text())
                names += [e["format"] for e in entries if isinstance(e, dict)
                          and isinstance(e.get("format"), str) and e["format"] not in names]
            except (OSError, ValueError, TypeError):
                pass
        return list(dict.fromkeys(names))

    def _make_impl(self, impl: str, template: str | None):
        if self.kind == "libxenguest":
            from .libxenguest.testee import Libxenguest

            return Libxenguest(None if impl == "builtin" else impl, self.limits)
        if self.kind == "xenstored":
            from .xenstored.runner import XenstoredProgram

            if template:
                self._check_template(template)
                return XenstoredProgram(shlex.split(template), self.limits)
            if impl in ("builtin", "builtin-subprocess"):
                raise pytest.UsageError("--impl-kind xenstored needs --impl=PATH (the daemon, or a "
                                        "script that execs it, e.g. .cache/xen-tools/4.17/xenstored)")
            self.programs.append(impl)
            return XenstoredProgram([str(Path(impl).absolute()) if os.sep in impl else impl],
                                    self.limits)
        if self.kind == "converter":
            from .converter import ConverterProgram

            if template:
                self._check_template(template)
                return ConverterProgram(template=template, limits=self.limits)
            if impl in ("builtin", "builtin-subprocess"):
                t = shlex.join([sys.executable, "-m", "xenstream", "convert-legacy"]) + \
                    " -i {in} -o {out} {options}"
                return ConverterProgram(template=t, limits=self.limits)
            self.programs.append(impl)
            return ConverterProgram(path=str(Path(impl).absolute()) if os.sep in impl else impl,
                                    limits=self.limits)
        if template:
            self._check_template(template)
            return Program(template=template, limits=self.limits)
        if impl == "builtin":
            return Builtin(self.role)
        if impl == "builtin-subprocess":
            return Program(template=reference_command(self.role), limits=self.limits,
                           name=f"xenstream verify ({self.role}, subprocess)")
        self.programs.append(impl)
        return Program(path=str(Path(impl).absolute()) if os.sep in impl else impl, limits=self.limits)

    def _check_template(self, template: str) -> None:
        try:
            words = shlex.split(template)
        except ValueError as exc:
            raise pytest.UsageError(f"--impl-cmd: {exc}") from None
        if not words:
            raise pytest.UsageError("--impl-cmd: empty command")
        self.programs.append(words[0])

    # before any case -----------------------------------------------------
    def preflight(self) -> None:
        """The program can be started; formats it refuses outright are skipped
        (see :mod:`.preflight`).  A usage error when nothing would be left to test."""
        from . import preflight

        for word in self.programs:
            problem = preflight.program_problem(word)
            if problem:
                raise pytest.UsageError(f"{problem}; nothing was run")
        if isinstance(self.impl, Builtin) or self.kind not in ("verifier", "converter"):
            return  # the daemon and library testees say for themselves what they cannot run
        # the hand-written examples, whatever --sources says, and the listed cases
        examples = casesmod.from_examples([]) + self.collection.cases
        if self.kind == "converter":
            from .converter import options_from_meta

            examples = [c for c in examples if options_from_meta(c.meta) is not None]
            formats = ["legacy"]
        else:
            formats = [f for f in self.known_formats() if self.supported(f)]
        refused = preflight.probe(self.runner.probe, examples, formats)
        name = self.impl.name
        if refused and len(refused) == len(formats):
            convention = ("convert-legacy-stream's options" if self.kind == "converter" else
                          "verify-stream-v2's convention, PROG -f FORMAT -i FILE")
            first = next(iter(refused.values()))
            raise pytest.UsageError(
                f"{name} refuses every format it was given ({', '.join(refused)}) whatever the "
                f"stream (exit {first.exit_code}: {first.words!r}); is it a program that follows "
                f"{convention}? --impl-cmd takes any other command line; nothing was run")
        named = [f for f in refused if self.formats_wanted and f in self.formats_wanted]
        if named:
            r = refused[named[0]]
            raise pytest.UsageError(
                f"--formats names {', '.join(named)}, but {name} refuses "
                f"{'it' if len(named) == 1 else 'them'} whatever the stream (exit {r.exit_code}: "
                f"{r.words!r}); leave {'it' if len(named) == 1 else 'them'} out of --formats; "
                "nothing was run")
        self.refused = refused
    # where failing streams go -----------------------------------------------
    def prepare_failures_dir(self) -> None:
        """Every run saves its failing streams in a folder of its own: the
        folder of an earlier run (it holds :data:`FAILURES_MARK`) is emptied, a
        missing or empty one is made ours, and one that holds anything else
        is refused rather than mixed with or deleted."""
        import shutil

        folder = self.failures_dir
        self._made_failures_dir = not folder.exists()
        if folder.exists():
            if not folder.is_dir():
                raise pytest.UsageError(f"--failures-dir {folder}: not a folder")
            if (folder / FAILURES_MARK).is_file():
                self._made_failures_dir = True  # by an earlier run
                for entry in folder.iterdir():
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
            elif any(folder.iterdir()):
                raise pytest.UsageError(
                    f"--failures-dir {folder} holds files an earlier run did not write (no "
                    f"{FAILURES_MARK}); give an empty or new folder, or remove it; nothing was run")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / FAILURES_MARK).write_text(
            "Failing streams of the last `pytest conformance` run; the next run empties this folder.\n")

    def tidy_failures_dir(self) -> bool:
        """After the run: True when it saved a stream.  When it saved none, a
        folder a run of this suite made goes; one the user made stays, empty."""
        folder = self.failures_dir
        try:
            saved = any(p.name != FAILURES_MARK for p in folder.iterdir())
        except OSError:
            return False
        if not saved:
            (folder / FAILURES_MARK).unlink(missing_ok=True)
            if self._made_failures_dir:
                try:
                    folder.rmdir()
                except OSError:
                    pass
        return saved

    def refusal_lines(self) -> list[str]:
        kept = [f for f in self.known_formats() if self.supported(f)]
        return [r.line(self.impl.name, kept) for r in self.refused.values()]

    # cases ---------------------------------------------------------------
    @property
    def collection(self) -> casesmod.Collection:
        if self._collection is None:
            self._collection = casesmod.collect(
                [s for s in self.sources if s != "strategies"], corpus_dir=self.corpus_dir,
                prefix_sample=self.prefix_sample)
        return self._collection

    def known_formats(self) -> list[str]:
        from xenstream.reference.formats import FORMAT_MODULES, names as available

        seen = list(dict.fromkeys([*available(), *(c.format for c in self.collection.cases)]))
        return [f for f in FORMAT_MODULES if f in seen] + [f for f in seen if f not in FORMAT_MODULES]

    def supported(self, fmt: str) -> bool:
        if fmt in self.refused:
            return False
        if self.kind == "converter":
            return fmt == "legacy"
        if self.kind == "libxenguest":
            from .libxenguest.testee import SUPPORTED_FORMATS

            return fmt in SUPPORTED_FORMATS and (self.formats_wanted is None or fmt in self.formats_wanted)
        if self.kind == "xenstored":
            return fmt == "xenstore"
        return self.formats_wanted is None or fmt in self.formats_wanted

    def skipped_formats(self) -> dict[str, str]:
        out = {}
        if self.kind == "xenstored":
            from .xenstored.runner import NOT_APPLICABLE, applicable

            n = sum(1 for c in self.collection.cases
                    if c.format == "xenstore" and not applicable(c.format, c.data))
            if n:
                out["xenstore-migration"] = f"{n} xenstore cases not applicable: {NOT_APPLICABLE}"
            return out
        kept = [f for f in self.known_formats() if self.supported(f)]
        for fmt in self.known_formats():
            if fmt in self.refused:
                out[fmt] = self.refused[fmt].line(self.impl.name, kept)
            elif self.kind == "converter":
                continue  # a converter only reads legacy images; nothing to report
            elif self.kind == "libxenguest" and not self.supported(fmt):
                from .libxenguest.testee import not_supported

                out[fmt] = f"format {fmt}: {not_supported(fmt)}"
            elif not self.supported(fmt):
                out[fmt] = f"format {fmt} is not in --formats={','.join(self.formats_wanted or [])}"
        return out

    def cases(self) -> list[casesmod.Case]:
        out = [c for c in self.collection.cases if self.supported(c.format)]
        if self.kind == "libxenguest" and self.converter_skip():
            return []
        if self.kind == "converter":
            from .converter import options_from_meta, reference_available

            if not reference_available():
                return []
            out = [c for c in out if options_from_meta(c.meta) is not None]
        if self.kind == "xenstored":
            from .xenstored.runner import applicable

            if self.xenstored_skip():
                return []
            out = [c for c in out if applicable(c.format, c.data)]
        return out

    def selection(self) -> str:
        """The options that decide which cases run and how they are judged, as
        the known-failures file records them."""
        formats = [f for f in self.known_formats() if self.supported(f)]
        text = (f"kind {self.kind}, role {self.role}; formats {','.join(formats)}; "
                f"sources {','.join(self.sources)}")
        if self.corpus_dir is not None:
            text += f" (corpus {self.config.getoption('--corpus')})"
        if "prefixes" in self.sources:
            text += f"; prefix sample {self.prefix_sample}"
        if "strategies" in self.sources and self.kind != "converter":
            text += f"; Hypothesis {self.hypothesis_examples} examples, seed {self.hypothesis_seed}"
        return text

    def case_ids(self) -> set[str]:
        """Every case id of this run's selection (what the workers collect)."""
        targets, _ = _strategy_targets(self)
        return {c.id for c in self.cases()} | {
            f"{f}/strategies/{k}" + (f"-{fam}" if fam else "") for f, k, fam in targets}

    def regenerate_args(self) -> str:
        """The options of this run that the known-failures file's "Regenerate
        with" line repeats: every xenstream option given on the command line
        except where files go, and the Hypothesis seed."""
        args = list(self.config.invocation_params.args)
        out: list[str] = []
        i = 0
        while i < len(args):
            arg = str(args[i])
            name, eq, value = arg.partition("=")
            takes = _OPTIONS.get(name)
            i += 1
            if takes is None or name in _NOT_RECORDED or name == "--hypothesis-seed":
                if takes and not eq:
                    i += 1
                continue
            if takes and not eq:
                value = str(args[i]) if i < len(args) else ""
                i += 1
            out.append(f"{name}={shlex.quote(value)}" if takes else name)
        out.append(f"--hypothesis-seed={self.hypothesis_seed}")
        out.append(f"--known-failures={shlex.quote(self.config.getoption('--known-failures'))}")
        return " ".join(out) + " "

    def xenstored_skip(self) -> str | None:
        """Why no xenstored case can run here (no cc for the fake hypervisor), or None."""
        if self.kind != "xenstored":
            return None
        return self.impl.unavailable()

    def converter_skip(self) -> str | None:
        """Why no case of this kind of implementation can run (one line), or None."""
        if self.kind == "libxenguest":
            return getattr(self.impl, "problem", None)
        if self.kind == "xenstored":
            return self.xenstored_skip()
        if self.kind != "converter":
            return None
        from .converter import reference_available, reference_missing_reason

        if not reference_available():
            return reference_missing_reason()
        if not any(c.format == "legacy" for c in self.collection.cases):
            return "no legacy cases with conversion options (width, guest) in the chosen sources"
        return None

    # results -------------------------------------------------------------
    def record(self, item: pytest.Item, case_id: str, fmt: str, rule: str | None, family: str,
               source: str, expected: str, run) -> None:
        result = CaseResult(
            id=case_id, format=fmt, rule=rule, family=family, source=source, expected=expected,
            required=run.judgement.required, observed=run.judgement.observed,
            outcome=run.outcome, kind=run.judgement.kind, duration=round(run.duration, 6),
            known=run.known, saved=str(run.saved) if run.saved else None,
            section=casesmod.section_of(rule), replay=run.replay,
            state_diff=getattr(run, "diff", None) or None)
        data = result.to_json()
        if run.failed:
            data["reason"] = default_reason(run)
        item.user_properties.append((RESULT_KEY, data))

    def conclude(self, run) -> None:
        """Turn a CaseRun into the test's outcome."""
        if run.judgement.kind == HARNESS_ERROR:
            pytest.fail(run.message or f"{run.case_id}: harness-error: {run.judgement.reason}",
                        pytrace=False)
        if run.known is not None:
            if run.failed:
                pytest.xfail(f"known failure ({run.known}): {run.known_reason}")
            where = self.known_path or "the known-failures file"
            pytest.fail(f"{run.case_id} is listed in {where} as a known failure "
                        f"({run.known_reason!r}) but now {run.judgement.status}es "
                        f"(observed {run.judgement.observed}); remove it, or run with "
                        "--update-known-failures", pytrace=False)
        if run.judgement.status == FAIL:
            pytest.fail(run.message, pytrace=False)

    def check(self, item: pytest.Item, case: casesmod.Case) -> None:
        try:
            run = self.runner.run_case(case)
        except Exception as exc:  # noqa: BLE001 - the runner's own failure: a verdict of its own
            run = harness_error_run(case.id, exc)
        self.record(item, case.id, case.format, case.rule, case.family, case.source,
                    case.expected, run)
        self.conclude(run)

    def check_strategy(self, item: pytest.Item, target: tuple) -> None:  # noqa: C901
        """A Hypothesis property over one strategy; on failure the shrunk stream
        is saved like any failing case.  Failures covered by the known-failures
        file (by case id, pattern, or a rule already listed for a static case)
        are counted, not raised, so that the search goes on for new ones."""
        fmt, kind, family = target
        if fmt == "strategies":
            pytest.skip(kind)
        if self.kind == "libxenguest" and self.converter_skip():
            pytest.skip(self.converter_skip())
        from hypothesis import HealthCheck, given, settings
        from hypothesis import strategies as st

        import xenstream.strategies as strategies

        target_id = f"{fmt}/strategies/{kind}" + (f"-{family}" if family else "")
        # the targets come from strategies.families(): a strategy that cannot be
        # built is a bug in the strategies, reported as an error, not a skip
        strat = strategies.valid(fmt) if kind == "valid" else strategies.malformed(fmt, family=family)
        known_rules = {k.split("/")[1] for k in self.known.entries
                       if k.count("/") >= 2 and not any(c in k for c in "*?[")}
        known_rules.discard("valid")
        known_rules.discard("prefix")
        stats = {"examples": 0, "known": 0, "duration": 0.0, "not_run": 0}
        drawn = hashlib.sha256()  # the ids of the streams run: equal runs, equal digests
        last: dict = {}
        # After an example that crashes or times out, SHRINK_BUDGET more runs;
        # then an example seen failing fails again from memory, any other is
        # not run (and passes): shrinking ends on what was actually seen.
        budget: dict = {"left": None}
        failed_before: dict[tuple, tuple[str, dict]] = {}

        def one(case_id, fmt_, data, expected, rule, description):
            key = (fmt_, expected, rule, data)
            if budget["left"] is not None:
                if budget["left"] <= 0:
                    seen = failed_before.get(key)
                    if seen is not None:
                        last.update(seen[1])
                        raise AssertionError(seen[0])
                    stats["not_run"] += 1
                    return
                budget["left"] -= 1
            run = self.runner.run_stream(case_id, fmt_, data, expected=expected, rule=rule,
                                         description=description, save=False)
            drawn.update(case_id.encode() + b"\n")
            stats["examples"] += 1
            stats["duration"] += run.duration
            if not run.failed:
                return
            if not run.harness_error and (
                    run.known is not None or (rule in known_rules and rule is not None)):
                stats["known"] += 1
                return
            info = dict(run=run, fmt=fmt_, data=data, expected=expected, rule=rule,
                        description=description)
            message = f"{case_id}: {run.judgement.kind}: {run.judgement.observed}"
            if len(failed_before) < 256:
                failed_before[key] = (message, info)
            last.update(info)
            if budget["left"] is None and run.judgement.kind in (CRASHED, FLAKY, HARNESS_ERROR):
                budget["left"] = SHRINK_BUDGET
            raise AssertionError(message)

        @settings(max_examples=self.hypothesis_examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(sample=strat, draw=st.data())
        def prop(sample, draw):
            data = bytes(sample.data)
            rule = getattr(sample, "rule", None)
            expected = getattr(sample, "expected", "accept" if rule is None else "reject")
            one(casesmod.make_id(sample.format, rule, "hyp", data), sample.format, data,
                expected, rule, getattr(sample, "description", ""))
            if kind == "valid" and data and self.prefix_sample > 0:
                cut = draw.draw(st.integers(0, len(data) - 1), label="prefix length")
                prefix = data[:cut]
                ref_rule = _reference_refusal(sample.format, prefix)
                if ref_rule is not None:
                    one(f"{sample.format}/prefix/hyp@{cut}-{casesmod.short_hash(prefix)}",
                        sample.format, prefix, "reject", ref_rule,
                        f"the first {cut} of {len(data)} octets of a generated valid stream")

        from hypothesis import seed

        prop = seed(self.hypothesis_seed)(prop)
        error = None
        try:
            prop()
        except Exception as exc:  # the shrunk example was the last to fail
            error = exc
        run = last.get("run")
        from .judge import PASS

        if error is not None and run is not None:
            self.runner.explain(run, last["fmt"], last["data"], expected=last["expected"],
                                rule=last["rule"], description=last["description"])
        summary = CaseRun(target_id, run.judgement if (error and run) else
                          Judgement(PASS, "", None, f"{stats['examples']} examples "
                                    f"(ids digest {drawn.hexdigest()[:12]}), "
                                    f"{stats['known']} known failures"), [], stats["duration"],
                          saved=run.saved if (error and run) else None,
                          replay=run.replay if (error and run) else "")
        # the properties are seeded: a listed target draws the same streams on
        # every run, so one that finds nothing now is listed in vain, like any case
        summary.known = self.known.match(target_id)
        summary.known_reason = self.known.entries.get(summary.known) if summary.known else None
        # a property breaks no rule of its own; a failure shows the rule of the
        # stream Hypothesis shrank to
        self.record(item, target_id, fmt, last.get("rule") if (error and run) else None, "",
                    "strategies", "accept" if kind == "valid" else "malformed", summary)
        if error is not None and run is None:
            raise error  # not a verdict: a bug in a strategy or in this runner
        if error is not None:
            summary.message = run.message + "\n  (shrunk by Hypothesis; found after " \
                f"{stats['examples']} runs)"
            if budget["left"] is not None and budget["left"] <= 0:
                summary.message += (f"\n  (shrinking stopped after {SHRINK_BUDGET} more runs: "
                                    "crashes and timeouts are not shrunk further)")
        self.conclude(summary)

    def describe(self) -> str:
        return self.impl.describe() if hasattr(self.impl, "describe") else self.impl.name


def harness_error_run(case_id: str, exc: BaseException) -> CaseRun:
    """A case the runner itself failed on: its own result, not the implementation's."""
    reason = f"{type(exc).__name__}: {exc}"
    run = CaseRun(case_id, Judgement(FAIL, HARNESS_ERROR, None, "(no verdict)", reason), [], 0.0)
    run.message = f"{case_id}: harness-error: the runner failed, not the implementation: {reason}"
    return run


def _reference_refusal(fmt: str, data: bytes) -> str | None:
    """The rule the reference refuses ``data`` under, or None when it accepts."""
    from xenstream.reference.checker import Checker
    from xenstream.reference.formats import validate
    from xenstream.reference.rules import Role
    from xenstream.reference.source import Source

    first = validate(Source.from_bytes(data), fmt, Checker(Role.RESTORE)).first_refused()
    return None if first is None else first.rule.id


_SUITE = pytest.StashKey[Suite]()
_RESULTS = pytest.StashKey[list]()


def suite_of(config: pytest.Config) -> Suite:
    return config.stash[_SUITE]


def pytest_configure(config: pytest.Config) -> None:
    suite = config.stash[_SUITE] = Suite(config)
    if suite.kind == "xenstored":
        from .xenstored.containment import contain

        contain(is_worker=_is_worker(config))
    config.stash[_RESULTS] = []
    _CURRENT_RESULTS.clear()
    config.addinivalue_line("markers", "xenstream_nothing: placeholder, dropped at collection")
    config.stash[_SIGNALS] = _catch_termination(config)
    atexit.register(config.stash[_SUITE].runner.close)
    if _is_worker(config):  # the controller's preflight decided
        suite.refused = {f: Refusal.from_json(r)
                         for f, r in config.workerinput.get(_REFUSED_KEY, {}).items()}
    elif config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistController(suite), "xenstream-xdist-controller")


class _XdistController:
    """Hands the preflight's result to every pytest-xdist worker, so that all
    collect the same cases without probing the implementation again."""

    def __init__(self, suite: Suite):
        self.suite = suite

    def pytest_configure_node(self, node) -> None:
        node.workerinput[_REFUSED_KEY] = {f: r.to_json() for f, r in self.suite.refused.items()}


def pytest_sessionstart(session: pytest.Session) -> None:
    """The preflight, once, before any case runs (and before xdist starts its workers)."""
    if not _is_worker(session.config):
        suite = suite_of(session.config)
        suite.preflight()
        suite.prepare_failures_dir()
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None and session.config.get_verbosity() < 0:
            for line in suite.refusal_lines():  # -q shows no header: say it now
                tr.write_line(line, yellow=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    suite = config.stash.get(_SUITE, None)
    if suite is not None:
        suite.runner.close()
    for signum, previous in (config.stash.get(_SIGNALS, None) or {}).items():
        signal.signal(signum, previous)
    _CONTROLLER.clear()


_SIGNALS = pytest.StashKey[dict]()
_TERMINATING: list[int] = []


def _terminate(signum, frame):
    """SIGTERM or SIGINT: end the run through KeyboardInterrupt (the clean-up
    of a running case holds further signals until it is done).  An xdist
    controller first has its workers end their running cases the same way
    and waits for them (up to 10 s; not on a second signal), so that nothing
    they started outlives the run."""
    first = not _TERMINATING
    _TERMINATING.append(signum)
    config = _CONTROLLER[0] if _CONTROLLER else None
    if first and config is not None and config.pluginmanager.hasplugin("dsession"):
        workers = containment.children()
        for pid in workers:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        containment.wait_childless(workers, 10.0)
    raise KeyboardInterrupt(f"{signal.Signals(signum).name}: ending the running case")


_CONTROLLER: list = []   # the config of a process that may be an xdist controller


def _catch_termination(config: pytest.Config) -> dict:
    """Install :func:`_terminate` for SIGTERM (and SIGINT, in place of
    Python's own handler) in the main thread; returns the handlers to restore.
    An xdist worker also gets SIGTERM when its controller dies, whatever
    killed it."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    _TERMINATING.clear()
    _CONTROLLER[:] = [] if _is_worker(config) else [config]
    atexit.register(containment.end_all_live)
    if _is_worker(config) and not getattr(_catch_termination, "watching", False):
        containment.die_with_parent(signal.SIGTERM)
        _catch_termination.watching = True
    previous = {}
    for signum, default in ((signal.SIGTERM, signal.SIG_DFL), (signal.SIGINT, signal.default_int_handler)):
        current = signal.getsignal(signum)
        if current in (default, signal.SIG_DFL, None):
            signal.signal(signum, _terminate)
            previous[signum] = current
    return previous


def pytest_report_header(config: pytest.Config) -> list[str]:
    s = suite_of(config)
    lines = [f"xenstream conformance: {s.kind} {s.describe()!r}, role {s.role}, "
             f"delivery {config.getoption('--delivery')}, timeout {s.limits.timeout:g} s, "
             f"memory {s.limits.memory_mb or 'unlimited'} MiB",
             f"  sources: {','.join(s.sources)}; formats: {','.join(s.formats_wanted or ['all'])}; "
             f"failures saved under {s.failures_dir}"]
    if s.known_path:
        lines.append(f"  known failures: {s.known_path} ({len(s.known.entries)} entries)")
    lines.append(f"  Hypothesis seed {s.hypothesis_seed}"
                 + (" (the default; --hypothesis-seed=N draws other streams)"
                    if config.getoption("hypothesis_seed", default=None) is None else ""))
    lines += [f"  note: {n}" for n in s.collection.notes]
    lines += [f"  {line}" for line in s.refusal_lines()]
    return lines


def _strategy_targets(suite: Suite) -> tuple[list, str | None]:
    if "strategies" not in suite.sources or suite.kind == "converter" or suite.xenstored_skip():
        return [], None
    from importlib import import_module as import_optional

    module = import_optional("xenstream.strategies")
    if module is None or not hasattr(module, "valid") or not hasattr(module, "malformed"):
        return [], "xenstream.strategies has no valid()/malformed() strategies yet"
    families = getattr(module, "families", None)
    targets = []
    for fmt in suite.known_formats():
        if not suite.supported(fmt):
            continue
        targets.append((fmt, "valid", None))
        fams = [None]
        if callable(families):
            try:
                fams = list(families(fmt)) or [None]
            except Exception:
                fams = [None]
        for fam in fams:
            targets.append((fmt, "malformed", fam))
    return targets, None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    suite = suite_of(metafunc.config)
    if "case" in metafunc.fixturenames:
        cases = suite.cases()
        if cases:
            metafunc.parametrize("case", cases, ids=[c.id for c in cases])
        else:
            why = suite.converter_skip() or "; ".join(suite.collection.notes) or \
                "no case of the chosen formats and sources"
            metafunc.parametrize("case", [pytest.param(None, marks=pytest.mark.skip(
                reason=f"no listed cases: {why}"))], ids=["no-cases"])
    if "skipped_format" in metafunc.fixturenames:
        skipped = suite.skipped_formats()
        reason = suite.converter_skip() if suite.kind != "xenstored" else None
        items = list(skipped.items()) + ([(suite.kind, reason)] if reason else [])
        if items:
            metafunc.parametrize("skipped_format", items, ids=[k for k, _ in items])
        else:
            metafunc.parametrize("skipped_format", [pytest.param(None, marks=pytest.mark.xenstream_nothing)],
                                 ids=["none"])
    if "strategy_target" in metafunc.fixturenames:
        targets, missing = _strategy_targets(suite)
        if missing:
            targets = [("strategies", missing, None)]
        ids = [f"{f}/strategies/{k}" + (f"-{fam}" if fam else "") for f, k, fam in targets]
        if targets:
            metafunc.parametrize("strategy_target", targets, ids=ids)
        else:  # strategies not among --sources, or no xenstored: nothing to run or skip
            metafunc.parametrize("strategy_target", [pytest.param(
                None, marks=pytest.mark.xenstream_nothing)], ids=["none"])


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    """Drop the placeholder of an empty 'not applicable' list (nothing to skip).

    It is ours, not something the user deselected, so it is not reported as
    deselected."""
    items[:] = [i for i in items if not i.get_closest_marker("xenstream_nothing")]


@pytest.fixture
def conformance(request: pytest.FixtureRequest) -> Suite:
    return suite_of(request.config)


# gathering results (on the xdist controller, or the only process) ---------


_CONFORMANCE_TEST = re.compile(r"::test_(?:case|strategy)\[(.+)\]$")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    recorded = False
    for name, value in getattr(report, "user_properties", ()):
        if name == RESULT_KEY and report.when == "call":
            _CURRENT_RESULTS.append(value)
            recorded = True
    if report.failed and report.when in ("setup", "call") and not recorded:
        m = _CONFORMANCE_TEST.search(report.nodeid)
        if m:  # the test errored before it had a result: the runner's failure
            case_id = m.group(1)
            fmt = case_id.split("/", 1)[0]
            lines = [ln for ln in str(report.longreprtext).splitlines() if ln.strip()]
            _CURRENT_RESULTS.append(CaseResult(
                id=case_id, format=fmt, rule=None, family=f"{fmt}.harness", source="?",
                expected="?", required=None, observed="(no verdict)", outcome=HARNESS_ERROR,
                kind=HARNESS_ERROR).to_json() | {"reason": (lines[-1] if lines else "")[:200]})


_CURRENT_RESULTS: list[dict] = []


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if _is_worker(config):
        return
    suite = suite_of(config)
    results = list(_CURRENT_RESULTS)
    _CURRENT_RESULTS.clear()
    config.stash[_RESULTS] = results
    config.stash[_SAVED] = suite.tidy_failures_dir() if hasattr(suite, "_made_failures_dir") \
        else False
    if not results:
        return
    # The file must describe this run: stale and unknown entries and another
    # selection of cases are failures of their own (see known_failures.py).
    # a harness error says nothing about the implementation: as if not run
    judged = [r for r in results if r["outcome"] != HARNESS_ERROR]
    outcome_of = {r["id"]: r["outcome"] in ("fail", "xfail") for r in judged}
    ran = set(outcome_of)
    failed = {r["id"]: r.get("reason", "") for r in judged if r["outcome"] in ("fail", "xfail")}
    case_ids = suite.case_ids()
    problems = [] if suite.known_path is None else \
        suite.known.problems(outcome_of, case_ids, suite.selection())
    if config.getoption("--update-known-failures"):
        updated = suite.known.updated(failed, ran, case_ids)
        updated.write(suite.known_path, impl=suite.impl.name, args=suite.regenerate_args(),
                      selection=suite.selection())
        config.stash[_UPDATED] = len(updated.entries)
        problems = []
    elif problems and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    config.stash[_STALE] = problems
    if suite.report_dir:
        # the xdist controller collects nothing: take what the results say
        notes = list(suite._collection.notes) if suite._collection is not None else []
        notes += suite.refusal_lines()
        run = Run(implementation=suite.impl.name, kind=suite.kind, role=suite.role,
                  formats=suite.formats_wanted or sorted({r["format"] for r in results}),
                  sources=suite.sources, notes=notes)
        run.failures_dir = str(suite.failures_dir) if config.stash[_SAVED] else None
        run.known_failures = str(suite.known_path) if suite.known_path else None
        run.known_failures_problems = list(problems)
        run.cases = [CaseResult.from_json(r) for r in results]
        run.write(suite.report_dir)


_STALE = pytest.StashKey[list]()
_SAVED = pytest.StashKey[bool]()
_UPDATED = pytest.StashKey[int]()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _is_worker(config):
        return
    suite = suite_of(config)
    results = config.stash.get(_RESULTS, [])
    refusals = suite.refusal_lines()
    if not results and not refusals:
        return
    from collections import Counter

    counts = Counter(r["outcome"] for r in results)
    kinds = Counter(r["kind"] for r in results if r["outcome"] == "fail")
    tr = terminalreporter
    tr.section("xenstream conformance")
    for line in refusals:
        tr.write_line(line, yellow=True)
    if not results:
        return
    tr.write_line(f"{suite.impl.name}: {len(results)} cases: " +
                  ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    if kinds:
        tr.write_line("failures by kind: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
    if counts.get(HARNESS_ERROR):
        tr.write_line(f"{counts[HARNESS_ERROR]} harness-error: the runner failed on these cases, "
                      "not the implementation; they have no verdict (see their messages)", red=True)
    if config.stash.get(_SAVED, False):
        tr.write_line(f"failing streams (this run's only) saved under {suite.failures_dir}")
    problems = config.stash.get(_STALE, [])
    if problems:
        tr.write_line(f"{suite.known_path} does not describe this run ({len(problems)} "
                      "problems, each a failure; --update-known-failures rewrites it):", red=True)
    for line in problems:
        tr.write_line(f"  {line}", red=True)
    if config.stash.get(_UPDATED, None) is not None:
        tr.write_line(f"wrote {config.stash[_UPDATED]} entries to {suite.known_path}")
    if suite.report_dir:
        tr.write_line(f"report written to {suite.report_dir}")
