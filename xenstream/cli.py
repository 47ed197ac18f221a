"""The ``xenstream`` command.

A thin dispatcher: each subcommand lives in the module that owns its concept
and provides ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from xenstream.reference.errors import UsageError

#: subcommand -> (module, one-line help, what exit status 0 and 1 mean)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "verify": ("xenstream.reference.verify_cmd", "check a stream against every rule of its format",
               "0 the stream is accepted, 1 it breaks a rule the role refuses"),
    "dump": ("xenstream.reference.dump_cmd", "print a decoded stream",
             "0 the whole stream decoded, 1 it breaks a rule the role refuses"),
    "rules": ("xenstream.reference.rules_cmd", "list the rule catalogue", "0 listed"),
    "convert-legacy": ("xenstream.reference.legacy_convert", "convert a legacy (pre-v2) stream to v2",
                       "0 converted, 1 the legacy image breaks a rule"),
    "sample": ("xenstream.strategies.sample_cmd", "write example streams from the strategies",
               "0 written"),
    "corpus": ("xenstream.corpus.cmd", "build, check, add to or count the regression corpus",
               "0 done (check: every file has its hash and verdict), 1 check found a file that has not"),
    "report": ("xenstream.conformance.report_cmd", "merge conformance reports into one table",
               "0 written"),
}

EXIT_OK, EXIT_REJECTED, EXIT_ERROR = 0, 1, 2
ERROR_TEXT = "2 usage, input/output or internal error"
DESCRIPTION = ("Reference verifier, decoder, legacy converter and regression corpus for Xen's "
               "save/migration streams (libxc, libxl, xl, xenstore, legacy images).")


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error on one line (and exit 2)."""

    def error(self, message: str):
        self.exit(EXIT_ERROR, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser(only: str | None = None) -> tuple[argparse.ArgumentParser, dict[str, object]]:
    """The parser with every subcommand, or with just ``only`` when it names one:
    ``xenstream verify`` then imports the verifier and its format, not the
    strategies, corpus and conformance modules (startup time, docs/performance.md)."""
    parser = Parser(
        prog="xenstream", description=DESCRIPTION,
        epilog=f"exit status: as each command's --help says; {ERROR_TEXT}.  "
               "`xenstream COMMAND --help` for a command's options.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules: dict[str, object] = {}
    for name in [only] if only in COMMANDS else COMMANDS:
        module_name, help_text, exits = COMMANDS[name]
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=help_text,
                           epilog=f"exit status: {exits}, {ERROR_TEXT}.")
        module.add_arguments(p)
        modules[name] = module
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    parser, modules = build_parser(args_in[0] if args_in else None)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    name = f"xenstream {args.command}"
    try:
        code = modules[args.command].run(args)
        try:
            sys.stdout.flush()   # a full disk or a closed pipe is reported here, not at exit
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, "standard output") from None
        return code
    except UsageError as exc:
        _error(f"{name}: {exc}")
        return EXIT_ERROR
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_ERROR
    except OSError as exc:  # the environment's: EIO, ENOSPC, EACCES, ... never our bug
        _error(f"{name}: {_os_error(exc)}")
        return EXIT_ERROR
    except MemoryError:
        _error(f"{name}: out of memory")
        return EXIT_ERROR
    except Exception:  # a bug in this project, never the stream's fault
        print(f"{name}: internal error, please report:", file=sys.stderr)
        traceback.print_exc()
        return EXIT_ERROR


def _os_error(exc: OSError) -> str:
    import errno

    what = exc.strerror or str(exc)
    if exc.filename is not None:
        return f"{exc.filename}: {what}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):   # files name themselves
        return f"standard output: {what}"
    return what


def _error(line: str) -> None:
    """One line on stderr; stdout, which may have failed, is not flushed again at exit."""
    _quiet_stdout()
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:
        pass


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush of what
    could not be written does not print a second error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
