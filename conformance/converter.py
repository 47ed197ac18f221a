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

The converter runs in a private working directory with its own copy of the
stream and writes its output there; the output is read back up to
:func:`output_limit` octets (4 times the input and 1 MiB, at least 16 MiB,
at most the file limit, which ``RLIMIT_FSIZE`` also enforces): a larger
output, sparse or not, is an ``output-flood``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .cases import Case, citation
from . import containment
from .delivery import FD, SOCKET, STREAM_FD, Feed
from .execute import ACCEPT, CRASH, FILE, FLOOD, HARNESS, MODES, PIPE, REJECT, STDIN, TIMEOUT, \
    Builtin, Implementation, Limits, Observed, absolute_path, absolute_words, deliver_command, run_process, \
    stream_marks
from .judge import BAD_OUTPUT, DIFFERS, FAIL, Judgement, failure_message, judge
from .runner import CaseRun, Runner, shortened


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


def run_reference(in_path: Path, out_path: Path, opts: ConvertOptions) -> Observed:
    """The reference converter in-process, through its own command-line parser."""
    from xenstream.reference import legacy_convert as module
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


class ConverterProgram(Implementation):
    """An external converter: a path following convert-legacy-stream's options
    (``-i FILE|FD``: every delivery mode), or a template with ``{in}``,
    ``{out}`` and ``{options}`` placeholders (file, stdin and pipe modes;
    ``/dev/stdin`` in ``{in}``)."""

    def __init__(self, path: str | None = None, template: str | None = None,
                 limits: Limits = Limits(), env: dict | None = None):
        self.path = absolute_path(path) if path is not None else None
        self.template, self.limits, self.env = template, limits, env
        self.name = os.path.basename(path or shlex.split(template)[0])
        self.modes = MODES if template is None else (FILE, STDIN, PIPE)

    def argv(self, in_word: str, out_path: str, opts: ConvertOptions) -> list[str]:
        if self.template is None:
            return [self.path, "-i", in_word, "-o", out_path, *opts.argv()]
        out: list[str] = []
        for w in absolute_words(shlex.split(self.template)):
            if w == "{options}":
                out += opts.argv()
            else:
                out.append(w.replace("{in}", in_word).replace("{out}", out_path))
        return out

    def _in_word(self, mode: str, in_path: Path) -> str:
        if mode == FILE:
            return str(in_path)
        if mode in (FD, SOCKET):
            return str(STREAM_FD)
        return "0" if self.template is None else "/dev/stdin"

    def convert(self, data: bytes, in_path: Path, out_path: Path, opts: ConvertOptions,
                mode: str) -> Observed:
        argv = self.argv(self._in_word(mode, in_path), str(out_path), opts)
        marks = stream_marks("legacy", data, _legacy_options(opts)) if mode in (PIPE, SOCKET) else ()
        return run_process(argv, self.limits, mode=mode, env=self.env, cwd=in_path.parent,
                           feed=Feed.for_mode(mode, data, in_path, marks))

    def replay(self, in_path: Path, out_path: str, opts: ConvertOptions, mode: str = FILE,
               kind: str = "") -> str:
        """The conversion again (in the delivery mode that failed), then the
        check that failed: the reference verifier on the output
        (``bad-output``) or a comparison with the reference converter's
        output (``output-differs``).  Every path is absolute."""
        in_path, out = Path(in_path).absolute(), Path(out_path).absolute()
        cmd = shlex.join(self.argv(self._in_word(mode, in_path), str(out), opts))
        if mode == STDIN:
            cmd = f"{cmd} < {shlex.quote(str(in_path))}"
        elif mode != FILE:
            cmd = deliver_command(mode, "legacy", in_path, cmd)
        if kind == DIFFERS:
            ref = out.with_name(f"{out.name.removesuffix('.bin')}.reference.bin")
            reference = shlex.join(["python3", "-m", "xenstream", "convert-legacy", "-i",
                                    str(in_path), "-o", str(ref), *opts.argv(),
                                    *([] if opts.skip_qemu or opts.target != "libxc"
                                      else ["--append-qemu"])])
            return f"{cmd} && {reference} && cmp {shlex.quote(str(out))} {shlex.quote(str(ref))}"
        if kind == BAD_OUTPUT:
            verify = shlex.join(["python3", "-m", "xenstream", "verify", "--role", "strict",
                                 "-f", opts.output_format, "-i", str(out)])
            return f"{cmd} && {verify}"
        return cmd

    def describe(self) -> str:
        return self.template or self.path


def _legacy_options(opts: ConvertOptions) -> dict:
    return {"width": opts.width, "guest": opts.guest}


def output_limit(input_size: int, file_limit: int) -> int:
    """The most octets of converted output read back (see the module's docstring)."""
    limit = max(16 << 20, 4 * input_size + (1 << 20))
    return min(limit, file_limit) if file_limit else limit


def read_output(path: Path, limit: int) -> tuple[bytes | None, str]:
    """The output file's content, or (None, why) when there is none to read
    or it is larger than ``limit``; never follows a link, never blocks."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None, "no output file"
    except OSError as exc:
        return None, f"its output cannot be read ({exc.strerror})"
    with open(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, "its output is not a regular file"
        if st.st_size > limit:
            return None, f"an output of {st.st_size} octets, more than the limit of {limit}"
        data = f.read(limit + 1)
    if len(data) > limit:
        return None, f"an output of more than {limit} octets"
    return data, ""


def _first_difference(a: bytes, b: bytes) -> int:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def same_stream(fmt: str, a: bytes, b: bytes) -> bool:
    """Equal octets, or both decode to equal values."""
    from xenstream.reference.errors import StreamError
    from xenstream.reference.formats import get_codec

    if a == b:
        return True
    codec = get_codec(fmt)
    try:
        return codec.decode(a) == codec.decode(b)
    except StreamError:
        return False


class ConverterRunner(Runner):
    """Runs converter cases; ``impl`` is a :class:`ConverterProgram`."""

    reference: Callable[[Path, Path, ConvertOptions], Observed] = staticmethod(run_reference)

    def convert_once(self, data: bytes, opts: ConvertOptions, mode: str,
                     attempt: int = 1) -> tuple[Observed, bytes | None]:
        """One conversion in a private directory: what it did, and its output
        (read back within :func:`output_limit`) when it converted."""
        folder = None
        out = None
        try:
            folder = self.private_dir()
            in_path = folder / "stream.bin"
            in_path.write_bytes(data)
            out_path = folder / "converted.bin"
            with self._limits_for_this_run() as short:
                seen = self.impl.convert(data, in_path, out_path, opts, mode)
            seen = shortened(seen, short)
            if seen.verdict == ACCEPT:
                out, why = read_output(out_path, output_limit(len(data), self.impl.limits.file_limit))
                if out is None and why.startswith("an output of"):
                    seen = dataclasses.replace(seen, verdict=FLOOD, detail=why)
                elif out is None:
                    out = b""
        except Exception as exc:  # noqa: BLE001 - the runner's failure
            seen, out = Observed(HARNESS, f"{type(exc).__name__}: {exc}", mode=mode), None
        finally:
            if folder is not None:
                containment.remove_tree(folder)
        if attempt != 1:
            seen = dataclasses.replace(seen, attempt=attempt)
        return seen, out

    def run_case(self, case: Case, modes=None) -> CaseRun:
        opts = options_from_meta(case.meta)
        if opts is None:
            raise ValueError(f"{case.id}: no width/guest type in the case's metadata")
        modes = tuple(modes) if modes else self.modes_for(case.id, case.source)
        observations: list[Observed] = []
        outs: dict[str, bytes | None] = {}
        for mode in modes:
            seen, outs[mode] = self.convert_once(case.data, opts, mode)
            observations.append(seen)
            if self.hanging and seen.verdict == TIMEOUT:
                break
        verdict = judge(case.expected, self.role, observations)
        observations, verdict = self.check_again(
            observations, verdict,
            lambda: [self.convert_once(case.data, opts, o.mode, attempt=2)[0] for o in observations])
        self._note_hangs(observations)
        extra = ""
        ref_data = None
        if verdict.status != FAIL and observations[0].verdict == ACCEPT:
            verdict, extra, ref_data = self._check_outputs(case, opts, verdict, observations, outs)
        run = CaseRun(case.id, verdict, observations, sum(o.duration for o in observations))
        run.known = self.known.match(case.id)
        if run.known is not None:
            run.known_reason = self.known.entries[run.known]
        if verdict.status == FAIL:
            self._explain(run, case, opts, verdict, observations, outs, ref_data, extra)
        return run

    def _explain(self, run, case, opts, verdict, observations, outs, ref_data, extra) -> None:
        from xenstream.reference.outfile import write_atomic

        failing_mode = next((o.mode for o in observations if not o.judged), None) or \
            next((o.mode for o in observations if o.verdict != verdict.required),
                 observations[0].mode)
        try:
            run.saved = self.save(case.id, case.data)
            for mode, out in outs.items():
                if out:
                    dest = run.saved.with_name(f"{run.saved.stem}.{mode}.out.bin")
                    write_atomic(dest, out)
                    extra += f"\n  output ({mode}): {dest}"
            if ref_data is not None:
                dest = run.saved.with_name(f"{run.saved.stem}.reference.out.bin")
                write_atomic(dest, ref_data)
                extra += f"\n  reference output: {dest}"
        except OSError as exc:
            extra += f"\n  (the streams could not be saved: {exc.strerror or exc})"
        replay = None
        if run.saved is not None and not run.harness_error:
            replay = self.impl.replay(run.saved, str(run.saved.with_name(
                f"{run.saved.stem}.replay.out.bin")), opts, failing_mode, verdict.kind)
        run.replay = replay or ""
        run.message = failure_message(
            case_id=case.id, citation=citation(case.rule), description=case.description,
            expected=case.expected, role=self.role, judgement=verdict,
            observations=observations, saved=str(run.saved) if run.saved else None,
            replay=replay, extra=extra.rstrip())

    def probe(self, case: Case) -> tuple[Observed, list[str]]:
        """One conversion of ``case`` in the first delivery mode, unjudged (the
        preflight); also the words of its command line that name files."""
        seen, _ = self.convert_once(case.data, options_from_meta(case.meta), self.impl.modes[0])
        return seen, [w for w in seen.argv if os.sep in w]

    def _check_outputs(self, case, opts, verdict, observations, outs):
        checker = Builtin("strict")
        for obs in observations:
            data = outs.get(obs.mode) or b""
            seen = checker.verify(opts.output_format, data, None, FILE)
            if seen.verdict != ACCEPT:
                return (Judgement(FAIL, BAD_OUTPUT, verdict.required, verdict.observed,
                                  f"converted, but the output ({obs.mode}) fails the reference "
                                  f"verifier as {opts.output_format}"),
                        f"  verifier: {seen.stderr or seen.label}", None)
        folder = self.private_dir()
        try:
            in_path = folder / "stream.bin"
            in_path.write_bytes(case.data)
            ref_out = folder / "reference.bin"
            ref = self.reference(in_path, ref_out, opts)
            if ref.verdict != ACCEPT:
                return verdict, f"  reference converter: {ref.label} {ref.stderr[:200]}", None
            ref_data = ref_out.read_bytes()
        finally:
            containment.remove_tree(folder)
        for obs in observations:
            data = outs.get(obs.mode) or b""
            if not same_stream(opts.output_format, data, ref_data):
                at = _first_difference(data, ref_data)
                return (Judgement(FAIL, DIFFERS, verdict.required, verdict.observed,
                                  f"the output ({obs.mode}) differs from the reference "
                                  f"converter's from offset {at} (0x{at:x})"), "", ref_data)
        return verdict, "", ref_data


__all__ = ["ConvertOptions", "ConverterProgram", "ConverterRunner", "options_from_meta",
           "run_reference"]
