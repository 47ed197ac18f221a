"""Conformance of legacy-stream converters (``--impl-kind converter``).

A converter follows ``convert-legacy-stream``'s options::

    PROG -i IN -o OUT -w 32|64 -g pv|hvm -f libxc|libxl [-x] [--skip-qemu] [-v]

and exits 0 when it converted, 1 when it refused the legacy stream.  Each
legacy case is judged three ways:

1. its verdict, as for a verifier (a malformed legacy image must be refused,
   a crash is a crash);
2. when it converted, its output must pass the reference verifier (role
   strict: a converter is a writer), as ``xl`` when ``-x`` kept the xl header,
   else as the ``-f`` format;
3. its output is compared with the reference converter's
   (``xenstream convert-legacy``, run in-process through its command-line
   parser with the very same options): equal octets pass; different octets
   that decode to equal streams pass; anything else is ``output-differs``.

Conversion options come from the case's metadata (``width``, ``guest``,
``target``, ``xl``, ``skip_qemu``; a few spellings are accepted).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from xenstream.reference.formats import import_optional

from .cases import Case, citation
from .execute import ACCEPT, CRASH, FILE, MODES, PIPE, REJECT, STDIN, Builtin, Limits, Observed, \
    run_process
from .judge import BAD_OUTPUT, DIFFERS, FAIL, Judgement, failure_message, judge
from .runner import CaseRun, Runner

REFERENCE_MODULE = "xenstream.reference.legacy_convert"


@dataclass(frozen=True)
class ConvertOptions:
    width: int
    guest: str            # pv | hvm
    target: str = "libxc"  # libxc | libxl
    xl: bool = False
    skip_qemu: bool = False

    def argv(self) -> list[str]:
        out = ["-w", str(self.width), "-g", self.guest, "-f", self.target]
        if self.xl:
            out.append("-x")
        if self.skip_qemu:
            out.append("--skip-qemu")
        return out

    @property
    def output_format(self) -> str:
        return "xl" if self.xl else self.target


def _first(meta: dict, *names, default=None):
    for n in names:
        if meta.get(n) is not None:
            return meta[n]
    return default


def options_from_meta(meta: dict) -> ConvertOptions | None:
    width = _first(meta, "width", "bits", "twidth")
    guest = _first(meta, "guest", "guest_type", "gtype")
    if width is None or guest is None:
        return None
    # a legacy image whose toolstack chunk is a libxl blob converts to libxl
    target = _first(meta, "target", "to", "convert_to", "output_format",
                    default="libxl" if meta.get("libxl") else "libxc")
    guest = str(guest).lower()
    skip_qemu = _first(meta, "skip_qemu", default=None)
    if skip_qemu is None:  # an HVM libxc image without the qemu record
        skip_qemu = guest == "hvm" and target == "libxc" and meta.get("qemu") is False
    return ConvertOptions(int(width), guest, str(target),
                          bool(_first(meta, "xl", "has_xl_header", default=False)), bool(skip_qemu))


def reference_available() -> bool:
    return import_optional(REFERENCE_MODULE) is not None


def reference_missing_reason() -> str:
    return (f"the reference converter ({REFERENCE_MODULE}, `xenstream convert-legacy`) does not "
            "exist yet: converter cases need it to compare outputs")


def run_reference(in_path: Path, out_path: Path, opts: ConvertOptions) -> Observed:
    """The reference converter in-process, through its own command-line parser."""
    module = import_optional(REFERENCE_MODULE)
    if module is None:
        raise RuntimeError(reference_missing_reason())
    from xenstream.reference.errors import StreamError, UsageError

    parser = argparse.ArgumentParser(prog="xenstream convert-legacy")
    module.add_arguments(parser)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            argv = ["-i", str(in_path), "-o", str(out_path), *opts.argv()]
            if opts.target == "libxc" and not opts.skip_qemu:
                # convert-legacy-stream's default; ours refuses unless told
                argv.append("--append-qemu")
            args = parser.parse_args(argv)
            rc = module.run(args)
    except SystemExit as exc:
        return Observed(CRASH, f"reference converter rejected its options: exit {exc.code}",
                        2, err.getvalue())
    except StreamError as exc:
        return Observed(REJECT, "", 1, str(exc))
    except UsageError as exc:
        return Observed(CRASH, f"usage: {exc}", 2, str(exc))
    if rc == 0:
        return Observed(ACCEPT, "", 0, err.getvalue())
    if rc == 1:
        return Observed(REJECT, "", 1, err.getvalue())
    return Observed(CRASH, f"exit {rc}", rc, err.getvalue())


class ConverterProgram:
    """An external converter: a path following convert-legacy-stream's options,
    or a template with ``{in}``, ``{out}`` and ``{options}`` placeholders."""

    modes = MODES

    def __init__(self, path: str | None = None, template: str | None = None,
                 limits: Limits = Limits(), env: dict | None = None):
        self.path, self.template, self.limits, self.env = path, template, limits, env
        self.name = os.path.basename(path or shlex.split(template)[0])

    def argv(self, in_word: str, out_path: str, opts: ConvertOptions) -> list[str]:
        if self.template is None:
            return [self.path, "-i", in_word, "-o", out_path, *opts.argv()]
        out: list[str] = []
        for w in shlex.split(self.template):
            if w == "{options}":
                out += opts.argv()
            else:
                out.append(w.replace("{in}", in_word).replace("{out}", out_path))
        return out

    def convert(self, data: bytes, in_path: Path, out_path: Path, opts: ConvertOptions,
                mode: str) -> Observed:
        if mode == FILE:
            return run_process(self.argv(str(in_path), str(out_path), opts), self.limits,
                               mode=mode, env=self.env)
        argv = self.argv("0" if self.template is None else "/dev/stdin", str(out_path), opts)
        if mode == PIPE:
            return run_process(argv, self.limits, pipe_data=data, mode=mode, env=self.env)
        return run_process(argv, self.limits, stdin_path=in_path, mode=mode, env=self.env)

    def replay(self, in_path: Path, out_path: str, opts: ConvertOptions, kind: str = "") -> str:
        """The conversion again, then the check that failed: the reference
        verifier on the output (``bad-output``, and whenever it converted), or
        a comparison with the reference converter's output (``output-differs``)."""
        in_path, out = Path(in_path).absolute(), Path(out_path).absolute()
        convert = shlex.join(self.argv(str(in_path), str(out), opts))
        verify = shlex.join(["python3", "-m", "xenstream", "verify", "--role", "strict",
                             "-f", opts.output_format, "-i", str(out)])
        if kind == DIFFERS:
            ref = out.with_name(f"{out.name.removesuffix('.bin')}.reference.bin")
            reference = shlex.join(["python3", "-m", "xenstream", "convert-legacy", "-i",
                                    str(in_path), "-o", str(ref), *opts.argv(),
                                    *([] if opts.skip_qemu or opts.target != "libxc"
                                      else ["--append-qemu"])])
            return f"{convert} && {reference} && cmp {shlex.quote(str(out))} {shlex.quote(str(ref))}"
        if kind == BAD_OUTPUT:
            return f"{convert} && {verify}"
        return convert

    def describe(self) -> str:
        return self.template or self.path


def _first_difference(a: bytes, b: bytes) -> int:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def same_stream(fmt: str, a: bytes, b: bytes) -> bool:
    """Equal octets, or both decode to equal values."""
    if a == b:
        return True
    try:
        from xenstream.reference.formats import get_codec

        codec = get_codec(fmt)
        return codec.decode(a) == codec.decode(b)
    except Exception:
        return False


class ConverterRunner(Runner):
    """Runs converter cases; ``impl`` is a :class:`ConverterProgram`."""

    reference: Callable[[Path, Path, ConvertOptions], Observed] = staticmethod(run_reference)

    def run_case(self, case: Case, modes=None) -> CaseRun:
        opts = options_from_meta(case.meta)
        if opts is None:
            raise ValueError(f"{case.id}: no width/guest type in the case's metadata")
        modes = tuple(modes) if modes else self.modes_for(case.id)
        in_path = self._stream_file(case.data)
        outs: dict[str, Path] = {}
        observations = []
        for mode in modes:
            out = self.workdir / f"{in_path.stem}.{mode}.out"
            out.unlink(missing_ok=True)
            outs[mode] = out
            observations.append(self.impl.convert(case.data, in_path, out, opts, mode))
        verdict = judge(case.expected, self.role, observations)
        extra = ""
        ref_out = self.workdir / f"{in_path.stem}.ref.out"
        if verdict.status != FAIL and observations[0].verdict == ACCEPT:
            verdict, extra = self._check_outputs(case, opts, verdict, observations, outs, in_path,
                                                 ref_out)
        run = CaseRun(case.id, verdict, observations, sum(o.duration for o in observations))
        run.known = self.known.match(case.id)
        if run.known is not None:
            run.known_reason = self.known.entries[run.known]
        if verdict.status == FAIL:
            run.saved = self.save(case.id, case.data)
            for mode, out in outs.items():
                if out.exists():
                    dest = run.saved.with_name(f"{run.saved.stem}.{mode}.out.bin")
                    dest.write_bytes(out.read_bytes())
                    extra += f"\n  output ({mode}): {dest}"
            if ref_out.exists():
                dest = run.saved.with_name(f"{run.saved.stem}.reference.out.bin")
                dest.write_bytes(ref_out.read_bytes())
                extra += f"\n  reference output: {dest}"
            run.replay = self.impl.replay(run.saved, str(run.saved.with_name(
                f"{run.saved.stem}.replay.out.bin")), opts, verdict.kind)
            run.message = failure_message(
                case_id=case.id, citation=citation(case.rule), description=case.description,
                expected=case.expected, role=self.role, judgement=verdict,
                observations=observations, saved=str(run.saved), replay=run.replay,
                extra=extra.rstrip())
        return run

    def probe(self, case: Case) -> tuple[Observed, list[str]]:
        opts = options_from_meta(case.meta)
        in_path = self._stream_file(case.data)
        out = self.workdir / f"{in_path.stem}.probe.out"
        out.unlink(missing_ok=True)
        observed = self.impl.convert(case.data, in_path, out, opts, FILE)
        out.unlink(missing_ok=True)
        return observed, [str(in_path), str(out)]

    def _check_outputs(self, case, opts, verdict, observations, outs, in_path, ref_out):
        checker = Builtin("strict")
        for obs in observations:
            out = outs[obs.mode]
            data = out.read_bytes() if out.exists() else b""
            seen = checker.verify(opts.output_format, data, None, FILE)
            if seen.verdict != ACCEPT:
                return (Judgement(FAIL, BAD_OUTPUT, verdict.required, verdict.observed,
                                  f"converted, but the output ({obs.mode}) fails the reference "
                                  f"verifier as {opts.output_format}"),
                        f"  verifier: {seen.stderr or seen.label}")
        ref = self.reference(in_path, ref_out, opts)
        if ref.verdict != ACCEPT:
            return verdict, f"  reference converter: {ref.label} {ref.stderr[:200]}"
        ref_data = ref_out.read_bytes()
        for obs in observations:
            data = outs[obs.mode].read_bytes()
            if not same_stream(opts.output_format, data, ref_data):
                at = _first_difference(data, ref_data)
                return (Judgement(FAIL, DIFFERS, verdict.required, verdict.observed,
                                  f"the output ({obs.mode}) differs from the reference "
                                  f"converter's from offset {at} (0x{at:x})"), "")
        return verdict, ""


__all__ = ["ConvertOptions", "ConverterProgram", "ConverterRunner", "options_from_meta",
           "reference_available", "reference_missing_reason", "run_reference", "STDIN"]
