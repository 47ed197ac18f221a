"""The pytest plugin: options, case parametrisation, and the run's bookkeeping.

Registered by the ``pytest11`` entry point ``xenstream.conformance.plugin``
(in a checkout, the root ``conftest.py`` loads the same module), it adds its
options (group "xenstream") to every pytest run, and runs the suite
(``test_conformance.py`` beside it) only when the command line names it,
``pytest conformance`` or ``pytest --pyargs xenstream.conformance``, or gives
one of its options: otherwise it does nothing at all.  The logic lives in
plain modules (:mod:`.kinds`, :mod:`.execute`, :mod:`.cases`, :mod:`.judge`,
:mod:`.runner`, :mod:`.preflight`, :mod:`.known_failures`, :mod:`.results`,
:mod:`.containment`); this one only turns options into objects and results
into pytest outcomes.
Works under ``pytest -n auto``: each worker collects the same cases in the
same order, and the controller gathers the results from the test reports.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest

from xenstream.reference.errors import UsageError

from . import cases as casesmod
from . import containment, kinds
from .delivery import MODES
from .execute import Builtin, Limits
from .judge import CRASHED, FAIL, FLAKY, HARNESS_ERROR, PASS, Judgement
from .known_failures import KnownFailures
from .preflight import Refusal
from .results import CaseResult, Run, junit_properties
from .runner import DELIVERY_CHOICES, CaseRun, default_reason, parse_delivery

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
#: The suite's test module.
SUITE_MODULE = "test_conformance.py"
#: workerinput key: the formats the controller's preflight found refused
_REFUSED_KEY = "xenstream_refused"
#: the file that marks a --failures-dir as written by this suite
FAILURES_MARK = ".xenstream-failures"
#: our options: name -> (takes a value, default), filled by pytest_addoption
_OPTIONS: dict[str, tuple[bool, object]] = {}
#: options that say nothing about which cases run or how they are judged
_NOT_RECORDED = ("--known-failures", "--update-known-failures", "--new-failures-only", "--report",
                 "--failures-dir")
_FIXTURES = ("case", "strategy_target", "skipped_format")


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("xenstream", "xenstream conformance suite")
    g.addoption("--impl", default="builtin", metavar="PATH",
                help="program to test (verify-stream-v2 convention: PROG -f FORMAT -i FILE|0; "
                     "exit 0 accepted, 1 rejected); 'builtin' (default): the reference verifier "
                     "in-process; 'builtin-subprocess': `python -m xenstream verify` per case")
    g.addoption("--impl-cmd", default=None, metavar="TEMPLATE",
                help="command template with {format} and {path} (stdin when {path} is absent); "
                     "for converters {in}, {out}, {options}")
    g.addoption("--impl-kind", choices=tuple(kinds.KINDS), default=kinds.DEFAULT,
                help="; ".join(f"{k.name}{' (default)' if k.name == kinds.DEFAULT else ''}: "
                               f"{k.summary}" for k in kinds.KINDS.values()))
    g.addoption("--impl-protocol", choices=kinds.PROTOCOLS, default=kinds.PROTOCOLS[0],
                help="process (default): one process per run; batch: one testee per worker, "
                     "started as PROG --batch, one JSON request per case on its stdin and one "
                     "answer per case on its stdout (docs/batch-protocol.md); a sample of cases "
                     "also per process, for the transport (verifiers only)")
    g.addoption("--impl-role", choices=kinds.ROLES, default=None,
                help="how 'writer' cases are judged: strict must refuse, restore must accept "
                     "(default: " + "; ".join(f"{k.default_role} for a {k.name}"
                                              for k in kinds.KINDS.values()) + ")")
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
    g.addoption("--hypothesis-examples", type=int, default=None, metavar="N",
                help="examples per Hypothesis property (default: the max_examples of the "
                     "Hypothesis settings profile $HYPOTHESIS_PROFILE names, strategies/"
                     "settings.py: ci, the default, 25; nightly 1000)")

    g.addoption("--known-failures", default=None, metavar="FILE",
                help="case ids expected to fail, with a reason each")
    g.addoption("--update-known-failures", action="store_true",
                help="rewrite --known-failures from this run's failures")
    g.addoption("--new-failures-only", action="store_true",
                help="with --known-failures: fail only on failures the file does not cover; the "
                     "file need not describe this run (another --hypothesis-seed, more "
                     "--hypothesis-examples: the nightly run), and a listed case that passes passes")
    g.addoption("--report", default=None, metavar="DIR",
                help="write results.json and report.md here")
    for option in g.options:
        for name in option.names():
            if name.startswith("--"):
                attrs = option.attrs()
                flag = attrs.get("action") in ("store_true", "store_false")
                _OPTIONS[name] = (not flag, attrs.get("default", attrs.get("action") == "store_false"
                                                      if flag else None))


def names_suite(config: pytest.Config) -> bool:
    """Whether this run is the conformance suite's: one of its options is
    given, or the command line names its folder (``pytest conformance``,
    ``pytest conformance/test_conformance.py::...``, ``pytest .`` at a
    checkout's root) or, with ``--pyargs``, its package."""
    for name, (_takes, default) in _OPTIONS.items():
        if config.getoption(name) != default:
            return True
    for arg in config.args:
        path = Path(config.invocation_params.dir, str(arg).split("::")[0])
        if config.getoption("pyargs") and not path.exists():
            try:
                spec = importlib.util.find_spec(str(arg).split("::")[0])
            except (ImportError, ValueError):
                continue
            if spec is None or not spec.origin:
                continue
            path = Path(spec.origin)
            if path.name == "__init__.py":
                path = path.parent
        if _is_suite(path.resolve()):
            return True
    return False


def _is_suite(path: Path) -> bool:
    def holds_suite(folder: Path) -> bool:
        return (folder / SUITE_MODULE).is_file() and (folder / "plugin.py").is_file()
    if path.is_file():
        return path.name == SUITE_MODULE and holds_suite(path.parent)
    return holds_suite(path) or holds_suite(path / "conformance")


def pytest_configure(config: pytest.Config) -> None:
    """Start the suite's run when this is its run (:func:`names_suite`)."""
    if names_suite(config):
        config.pluginmanager.register(ConformanceRun(config), "xenstream-conformance-run")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The suite's tests collected in a run that is not the suite's (``pytest
    /some/folder`` above a checkout): one skip each, saying how to run them."""
    if _RUN in metafunc.config.stash:
        return
    for name in _FIXTURES:
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, [pytest.param(None, marks=pytest.mark.skip(
                reason="the conformance suite runs when the command line names it: "
                       "pytest conformance, or pytest --pyargs xenstream.conformance"))],
                ids=["not-this-run"])
            return


@pytest.fixture
def conformance(request: pytest.FixtureRequest) -> Suite:
    return suite_of(request.config)


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
    examples = opt("--hypothesis-examples")
    if examples is not None and examples < 1:
        raise pytest.UsageError(f"--hypothesis-examples={examples}: give 1 or "
                                "more (leave 'strategies' out of --sources for none)")
    sources = _split(opt("--sources"))
    bad = [s for s in sources or [] if s not in ALL_SOURCES]
    if bad or not sources:
        raise pytest.UsageError(f"--sources={opt('--sources')}: unknown "
                                f"{', '.join(bad) or 'nothing given'}; known: {', '.join(ALL_SOURCES)}")


def profile_examples() -> int:
    """``max_examples`` of the Hypothesis settings profile ``$HYPOTHESIS_PROFILE``
    names (``ci`` when unset): the project's profiles (strategies/settings.py)."""
    import os

    from hypothesis import settings
    from hypothesis.errors import InvalidArgument

    import xenstream.strategies.settings  # noqa: F401 - registers the profiles

    name = os.environ.get("HYPOTHESIS_PROFILE") or "ci"
    try:
        return settings.get_profile(name).max_examples
    except InvalidArgument:
        raise pytest.UsageError(f"HYPOTHESIS_PROFILE={name}: no such Hypothesis settings profile "
                                "(strategies/settings.py: ci, nightly, dev)") from None


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
        self.kind = kinds.get(opt("--impl-kind"))
        self.limits = Limits(opt("--impl-timeout"), opt("--impl-memory"), opt("--impl-output-limit"))
        self.sources = _split(opt("--sources")) or []
        try:
            self.role = self.kind.role(opt("--impl-role"))
            delivery = parse_delivery(opt("--delivery"))
        except (UsageError, ValueError) as exc:
            raise pytest.UsageError(str(exc)) from None
        base = config.invocation_params.dir
        self.failures_dir = (base / opt("--failures-dir")).resolve()
        kf = opt("--known-failures")
        self.known_path = (base / kf).resolve() if kf else None
        for flag in ("--update-known-failures", "--new-failures-only"):
            if opt(flag) and self.known_path is None:
                raise pytest.UsageError(f"{flag} needs --known-failures FILE")
        if opt("--update-known-failures") and opt("--new-failures-only"):
            raise pytest.UsageError("--update-known-failures writes a file that describes the run; "
                                    "--new-failures-only reads one that need not: give one of them")
        self.new_only = opt("--new-failures-only")
        self.known = KnownFailures.load(self.known_path)
        self.report_dir = (base / opt("--report")).resolve() if opt("--report") else None
        self.corpus_dir = (base / opt("--corpus")).resolve() if opt("--corpus") else None
        if self.corpus_dir is not None and not (self.corpus_dir / "manifest.json").is_file():
            raise pytest.UsageError(f"--corpus={opt('--corpus')}: no manifest.json in "
                                    f"{self.corpus_dir}")
        self.hypothesis_examples = opt("--hypothesis-examples") or profile_examples()
        # Hypothesis' own --hypothesis-seed, read as its plugin reads it (an
        # integer when it looks like one); a fixed seed when not given
        seed = config.getoption("hypothesis_seed", default=None)
        if isinstance(seed, str) and seed.lstrip("-").isdigit():
            seed = int(seed)
        self.hypothesis_seed = DEFAULT_SEED if seed is None else seed
        self.prefix_sample = opt("--prefix-sample")
        self.refused: dict[str, Refusal] = {}
        testee = kinds.Testee(opt("--impl"), opt("--impl-cmd"), self.role, self.limits, opt)
        try:
            self.impl = self.kind.make(testee)
        except UsageError as exc:
            raise pytest.UsageError(str(exc)) from None
        self.programs = testee.programs   # checked by the preflight
        self.formats_wanted = _split(opt("--formats"))
        self._collection: casesmod.Collection | None = None
        check_formats(self.formats_wanted, self._format_names())
        # last: the runner makes its work folder, which ConformanceRun's clean-up removes
        self.runner = self.kind.runner_for(self.impl)(self.impl, self.role, delivery,
                                                      self.failures_dir, None, self.known)

    def _format_names(self) -> list[str]:
        """Every format name --formats may give: the codecs' and those of the
        corpus's entries."""
        from xenstream.reference.formats import FORMAT_MODULES

        names = list(FORMAT_MODULES)
        if "corpus" in self.sources:
            names += casesmod.corpus_formats(self.corpus_dir)
        return list(dict.fromkeys(names))

    def unavailable(self) -> str | None:
        """Why no case of this run can run on this machine (one line), or None."""
        return self.impl.unavailable()

    # before any case -----------------------------------------------------
    def preflight(self) -> None:
        """The program can be started; formats it refuses outright are skipped
        (see :mod:`.preflight`).  A usage error when nothing would be left to test."""
        from . import preflight

        for word in self.programs:
            problem = preflight.program_problem(word)
            if problem:
                raise pytest.UsageError(f"{problem}; nothing was run")
        convention = self.kind.convention_of(self.impl)
        if isinstance(self.impl, Builtin) or convention is None:
            return  # the daemon and library testees say for themselves what they cannot run
        # the hand-written examples, whatever --sources says, and the listed cases
        examples = [c for c in casesmod.from_examples([]) + self.collection.cases
                    if self.kind.takes(c)]
        formats = [f for f in self.known_formats() if self.supported(f)]
        refused = preflight.probe(self.runner.probe, examples, formats)
        name = self.impl.name
        if refused and len(refused) == len(formats):
            first = next(iter(refused.values()))
            raise pytest.UsageError(
                f"{name} refuses every format it was given ({', '.join(refused)}) whatever the "
                f"stream ({first.how}: {first.words!r}); is it a program that follows "
                f"{convention}? --impl-cmd takes any other command line; nothing was run")
        named = [f for f in refused if self.formats_wanted and f in self.formats_wanted]
        if named:
            r = refused[named[0]]
            raise pytest.UsageError(
                f"--formats names {', '.join(named)}, but {name} refuses "
                f"{'it' if len(named) == 1 else 'them'} whatever the stream ({r.how}: "
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
        from xenstream.reference.formats import FORMAT_MODULES

        seen = list(dict.fromkeys([*FORMAT_MODULES, *(c.format for c in self.collection.cases)]))
        return [f for f in FORMAT_MODULES if f in seen] + [f for f in seen if f not in FORMAT_MODULES]

    def supported(self, fmt: str) -> bool:
        return fmt not in self.refused and self.kind.reads(fmt) and (
            self.formats_wanted is None or fmt in self.formats_wanted)

    def skipped_formats(self) -> dict[str, str]:
        """What is skipped, once each, with why: formats the program refused in
        the preflight, formats its kind does not read, formats --formats left
        out, and the cases of its formats its kind does not take."""
        out = {}
        kept = [f for f in self.known_formats() if self.supported(f)]
        for fmt in self.known_formats():
            if fmt in self.refused:
                out[fmt] = self.refused[fmt].line(self.impl.name, kept)
            elif not self.kind.reads(fmt):
                if self.kind.why_not_format is not None:
                    out[fmt] = f"format {fmt}: {self.kind.why_not_format(fmt)}"
            elif not self.supported(fmt):
                out[fmt] = f"format {fmt} is not in --formats={','.join(self.formats_wanted or [])}"
        if self.kind.why_not_case is not None:
            n = sum(1 for c in self.collection.cases
                    if self.supported(c.format) and not self.kind.takes(c))
            if n:
                label = ",".join(self.kind.formats or kept)
                out[f"{label}-not-applicable"] = \
                    f"{n} {label} cases not applicable: {self.kind.why_not_case}"
        return out

    def cases(self) -> list[casesmod.Case]:
        if self.unavailable():
            return []
        return [c for c in self.collection.cases if self.supported(c.format) and self.kind.takes(c)]

    def strategy_targets(self) -> list[tuple[str, str, str | None]]:
        """(format, valid|malformed, family) of every Hypothesis property of the run."""
        if "strategies" not in self.sources or not self.kind.strategies or self.unavailable():
            return []
        import xenstream.strategies as strategies

        targets = []
        for fmt in self.known_formats():
            if self.supported(fmt):
                targets.append((fmt, "valid", None))
                targets += [(fmt, "valid", variant) for variant in strategies.variants(fmt)]
                targets += [(fmt, "malformed", fam) for fam in strategies.families(fmt) or [None]]
        return targets

    def selection(self) -> str:
        """The options that decide which cases run and how they are judged, as
        the known-failures file records them."""
        formats = [f for f in self.known_formats() if self.supported(f)]
        text = (f"kind {self.kind.name}, role {self.role}; formats {','.join(formats)}; "
                f"sources {','.join(self.sources)}")
        if self.corpus_dir is not None:
            text += f" (corpus {self.config.getoption('--corpus')})"
        if "prefixes" in self.sources:
            text += f"; prefix sample {self.prefix_sample}"
        if "strategies" in self.sources and self.kind.strategies:
            text += f"; Hypothesis {self.hypothesis_examples} examples, seed {self.hypothesis_seed}"
        return text

    def case_ids(self) -> set[str]:
        """Every case id of this run's selection (what the workers collect)."""
        return {c.id for c in self.cases()} | {target_id(*t) for t in self.strategy_targets()}

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
            takes = _OPTIONS[name][0] if name in _OPTIONS else None
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

    # results -------------------------------------------------------------
    def record(self, item: pytest.Item, case_id: str, fmt: str, rule: str | None, family: str,
               source: str, expected: str, run) -> None:
        result = CaseResult(
            id=case_id, format=fmt, rule=rule, family=family, source=source, expected=expected,
            required=run.judgement.required, observed=run.judgement.observed,
            outcome=run.outcome, kind=run.judgement.kind, duration=round(run.duration, 6),
            known=run.known, saved=str(run.saved) if run.saved else None,
            section=casesmod.section_of(rule), replay=run.replay,
            state_diff=run.diff or None)
        data = result.to_json()
        if run.failed:
            data["reason"] = default_reason(run)
        # JSON, so that the --junitxml property is machine-readable too
        item.user_properties.append((RESULT_KEY, json.dumps(data)))
        item.user_properties.extend(junit_properties(result))

    def conclude(self, run) -> None:
        """Turn a CaseRun into the test's outcome."""
        if run.judgement.kind == HARNESS_ERROR:
            pytest.fail(run.message or f"{run.case_id}: harness-error: {run.judgement.reason}",
                        pytrace=False)
        if run.known is not None:
            if run.failed:
                pytest.xfail(f"known failure ({run.known}): {run.known_reason}")
            if self.new_only:
                return   # it passes: what the file says of it is not this run's business
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
        from hypothesis import HealthCheck, given, settings
        from hypothesis import strategies as st

        import xenstream.strategies as strategies

        tid = target_id(fmt, kind, family)
        # the targets come from strategies.families(): a strategy that cannot be
        # built is a bug in the strategies, an error of this test, not a skip
        strat = strategies.valid(fmt, variant=family) if kind == "valid" else \
            strategies.malformed(fmt, family=family)
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
            one(casesmod.make_id(sample.format, sample.rule, "hyp", data), sample.format, data,
                sample.expected, sample.rule, sample.description)
            # a variant's streams stay inside what one kind of reader restores:
            # a truncation (no END) is outside it, and the plain target and the
            # prefixes source try truncations already
            if kind == "valid" and family is None and data and self.prefix_sample > 0:
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
        except* AssertionError as failed:   # what one() raises: the shrunk example failed
            error = failed
        run = last.get("run")
        if error is not None and run is not None:
            self.runner.explain(run, last["fmt"], last["data"], expected=last["expected"],
                                rule=last["rule"], description=last["description"])
        summary = CaseRun(tid, run.judgement if (error and run) else
                          Judgement(PASS, "", None, f"{stats['examples']} examples "
                                    f"(ids digest {drawn.hexdigest()[:12]}), "
                                    f"{stats['known']} known failures"), [], stats["duration"],
                          saved=run.saved if (error and run) else None,
                          replay=run.replay if (error and run) else "")
        # the properties are seeded: a listed target draws the same streams on
        # every run, so one that finds nothing now is listed in vain, like any case
        # (with --new-failures-only, only the streams it drew are matched: a
        # listed target must not hide what another seed finds)
        summary.known = None if self.new_only else self.known.match(tid)
        summary.known_reason = self.known.entries.get(summary.known) if summary.known else None
        # a property breaks no rule of its own; a failure shows the rule of the
        # stream Hypothesis shrank to
        self.record(item, tid, fmt, last.get("rule") if (error and run) else None, "",
                    "strategies", "accept" if kind == "valid" else "malformed", summary)
        if error is not None and run is None:
            raise error  # an assertion of a strategy's own: not a verdict
        if error is not None:
            summary.message = run.message + "\n  (shrunk by Hypothesis; found after " \
                f"{stats['examples']} runs)"
            if budget["left"] is not None and budget["left"] <= 0:
                summary.message += (f"\n  (shrinking stopped after {SHRINK_BUDGET} more runs: "
                                    "crashes and timeouts are not shrunk further)")
        self.conclude(summary)

    def describe(self) -> str:
        return self.impl.describe()


def harness_error_run(case_id: str, exc: BaseException) -> CaseRun:
    """A case the runner itself failed on: its own result, not the implementation's."""
    reason = f"{type(exc).__name__}: {exc}"
    run = CaseRun(case_id, Judgement(FAIL, HARNESS_ERROR, None, "(no verdict)", reason), [], 0.0)
    run.message = f"{case_id}: harness-error: the runner failed, not the implementation: {reason}"
    return run


def target_id(fmt: str, kind: str, family: str | None) -> str:
    """The test id of a Hypothesis property: ``FORMAT/strategies/valid``,
    ``FORMAT/strategies/valid-VARIANT`` (``family`` names the variant),
    ``FORMAT/strategies/malformed-FAMILY``."""
    return f"{fmt}/strategies/{kind}" + (f"-{family}" if family else "")


def _reference_refusal(fmt: str, data: bytes) -> str | None:
    """The rule the reference refuses ``data`` under, or None when it accepts."""
    from xenstream.reference.checker import Checker
    from xenstream.reference.formats import validate
    from xenstream.reference.rules import Role
    from xenstream.reference.source import Source

    first = validate(Source.from_bytes(data), fmt, Checker(Role.RESTORE)).first_refused()
    return None if first is None else first.rule.id


_RUN = pytest.StashKey["ConformanceRun"]()


def suite_of(config: pytest.Config) -> Suite:
    return config.stash[_RUN].suite


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


_CONFORMANCE_TEST = re.compile(r"::test_(?:case|strategy)\[(.+)\]$")


class ConformanceRun:
    """The hooks of one run of the suite (registered by :func:`pytest_configure`
    when the run is the suite's): the preflight before any case, the
    parametrisation, the results gathered from the test reports (on the xdist
    controller, or the only process), the known-failures file, the report."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.suite = Suite(config)
        config.stash[_RUN] = self
        self.results: list[dict] = []
        self.stale: list[str] = []
        self.saved = False
        self.updated: int | None = None
        self._prepared = False
        config.addinivalue_line("markers", "xenstream_nothing: placeholder, dropped at collection")
        config.add_cleanup(self.suite.runner.close)
        atexit.register(self.suite.runner.close)   # also after an exit that skips the clean-up
        self.signals = containment.catch_termination(
            worker=_is_worker(config), forward=lambda: config.pluginmanager.hasplugin("dsession"))
        config.add_cleanup(lambda: containment.restore_signals(self.signals))
        if _is_worker(config):  # the controller's preflight decided
            self.suite.refused = {f: Refusal.from_json(r)
                                  for f, r in config.workerinput.get(_REFUSED_KEY, {}).items()}

    # before any case -------------------------------------------------------------
    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:
        """(xdist controller) Every worker gets the preflight's result, so that
        all collect the same cases without probing the implementation again."""
        node.workerinput[_REFUSED_KEY] = {f: r.to_json() for f, r in self.suite.refused.items()}

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """The preflight, once, before any case runs (and before xdist starts its workers)."""
        if _is_worker(self.config):
            return
        self.suite.preflight()
        self.suite.prepare_failures_dir()
        self._prepared = True
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None and self.config.get_verbosity() < 0:
            for line in self.suite.refusal_lines():  # -q shows no header: say it now
                tr.write_line(line, yellow=True)

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        s = self.suite
        lines = [f"xenstream conformance: {s.kind.name} {s.describe()!r}, role {s.role}, "
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

    # collection -------------------------------------------------------------------
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        suite = self.suite
        why_not = suite.unavailable()
        if "case" in metafunc.fixturenames:
            cases = suite.cases()
            if cases:
                metafunc.parametrize("case", cases, ids=[c.id for c in cases])
            elif why_not:   # said once, by the not-applicable test below
                _nothing(metafunc, "case")
            else:
                why = "; ".join(suite.collection.notes) or "no case of the chosen formats and sources"
                metafunc.parametrize("case", [pytest.param(None, marks=pytest.mark.skip(
                    reason=f"no listed cases: {why}"))], ids=["no-cases"])
        if "skipped_format" in metafunc.fixturenames:
            items = list(suite.skipped_formats().items())
            if why_not:
                items.append((suite.kind.name, why_not))
            if items:
                metafunc.parametrize("skipped_format", items, ids=[k for k, _ in items])
            else:
                _nothing(metafunc, "skipped_format")
        if "strategy_target" in metafunc.fixturenames:
            targets = suite.strategy_targets()
            if targets:
                metafunc.parametrize("strategy_target", targets,
                                     ids=[target_id(*t) for t in targets])
            else:  # strategies not among --sources, or not for this kind: nothing to run
                _nothing(metafunc, "strategy_target")

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list) -> None:
        """Drop the placeholders of empty parametrisations (nothing to run or skip).

        They are ours, not something the user deselected, so they are not
        reported as deselected."""
        items[:] = [i for i in items if not i.get_closest_marker("xenstream_nothing")]

    # results ------------------------------------------------------------------------
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        recorded = False
        for name, value in getattr(report, "user_properties", ()):
            if name == RESULT_KEY and report.when == "call":
                self.results.append(json.loads(value) if isinstance(value, str) else value)
                recorded = True
        if report.failed and report.when in ("setup", "call") and not recorded:
            m = _CONFORMANCE_TEST.search(report.nodeid)
            if m:  # the test errored before it had a result: the runner's failure
                case_id = m.group(1)
                fmt = case_id.split("/", 1)[0]
                lines = [ln for ln in str(report.longreprtext).splitlines() if ln.strip()]
                self.results.append(CaseResult(
                    id=case_id, format=fmt, rule=None, family=f"{fmt}.harness", source="?",
                    expected="?", required=None, observed="(no verdict)", outcome=HARNESS_ERROR,
                    kind=HARNESS_ERROR).to_json() | {"reason": (lines[-1] if lines else "")[:200]})

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        config = self.config
        if _is_worker(config):
            return
        suite = self.suite
        results = self.results
        self.saved = suite.tidy_failures_dir() if self._prepared else False
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
        problems = [] if suite.known_path is None or suite.new_only else \
            suite.known.problems(outcome_of, case_ids, suite.selection())
        if config.getoption("--update-known-failures"):
            updated = suite.known.updated(failed, ran, case_ids)
            updated.write(suite.known_path, impl=suite.impl.name, args=suite.regenerate_args(),
                          selection=suite.selection())
            self.updated = len(updated.entries)
            problems = []
        elif problems and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        self.stale = problems
        if suite.report_dir:
            # the xdist controller collects nothing: take what the results say
            notes = list(suite._collection.notes) if suite._collection is not None else []
            notes += suite.refusal_lines()
            run = Run(implementation=suite.impl.name, kind=suite.kind.name, role=suite.role,
                      formats=suite.formats_wanted or sorted({r["format"] for r in results}),
                      sources=suite.sources, notes=notes)
            run.failures_dir = str(suite.failures_dir) if self.saved else None
            run.known_failures = str(suite.known_path) if suite.known_path else None
            run.known_failures_problems = list(problems)
            run.cases = [CaseResult.from_json(r) for r in results]
            run.write(suite.report_dir)

    def pytest_terminal_summary(self, terminalreporter, exitstatus: int, config: pytest.Config) -> None:
        if _is_worker(config):
            return
        suite = self.suite
        results = self.results
        refusals = suite.refusal_lines()
        if not results and not refusals:
            return
        from collections import Counter

        counts = Counter(r["outcome"] for r in results)
        kinds_ = Counter(r["kind"] for r in results if r["outcome"] == "fail")
        tr = terminalreporter
        tr.section("xenstream conformance")
        for line in refusals:
            tr.write_line(line, yellow=True)
        if not results:
            return
        tr.write_line(f"{suite.impl.name}: {len(results)} cases: " +
                      ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
        if kinds_:
            tr.write_line("failures by kind: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds_.items())))
        if counts.get(HARNESS_ERROR):
            tr.write_line(f"{counts[HARNESS_ERROR]} harness-error: the runner failed on these cases, "
                          "not the implementation; they have no verdict (see their messages)", red=True)
        if self.saved:
            tr.write_line(f"failing streams (this run's only) saved under {suite.failures_dir}")
        if self.stale:
            tr.write_line(f"{suite.known_path} does not describe this run ({len(self.stale)} "
                          "problems, each a failure; --update-known-failures rewrites it):", red=True)
        for line in self.stale:
            tr.write_line(f"  {line}", red=True)
        if self.updated is not None:
            tr.write_line(f"wrote {self.updated} entries to {suite.known_path}")
        if suite.report_dir:
            tr.write_line(f"report written to {suite.report_dir}")


def _nothing(metafunc: pytest.Metafunc, name: str) -> None:
    """An empty parametrisation: one placeholder, dropped at collection."""
    metafunc.parametrize(name, [pytest.param(None, marks=pytest.mark.xenstream_nothing)], ids=["none"])
