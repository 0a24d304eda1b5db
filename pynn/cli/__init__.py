"""The ``pynn`` command: ``pynn train``, ``pynn evaluate MODEL``, ``pynn predict MODEL``,
``pynn bench`` (the speed comparison of ``pynn.bench``), ``pynn search`` (``pynn.search``),
``pynn export MODEL`` (an ONNX file, ``pynn.onnx``).

``pynn train`` with no arguments runs the lecture's recipe on the bundled digits: standardize
(fit on the training part only), two Dense-BatchNorm-ReLU blocks with He initialization, Adam
with an exponentially decaying learning rate, early stopping on a stratified validation split,
and a stratified 20% test split that training never sees.

Errors (bad arguments, missing or malformed files) print one line to stderr and exit non-zero;
no traceback.

Each command is one module here with its options (``add_parser``) and its ``run``; this module
assembles the parser and turns errors into one line. It is the top floor: nothing else in pynn
imports it.
"""
import argparse
import sys

from . import bench, evaluate, export, search, train
from ._common import CLIError

# command name -> its run(args, out=None), in the order of ``pynn --help``
COMMANDS = {"train": train.run, "evaluate": evaluate.run_evaluate,
            "predict": evaluate.run_predict, "bench": bench.run, "search": search.run,
            "export": export.run}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage block) and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser():
    parser = _Parser(prog="pynn", description="Train, evaluate and apply pynn networks.")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}",
                                parser_class=_Parser)
    train.add_parser(sub)
    evaluate.add_parsers(sub)
    bench.add_parser(sub)
    search.add_parser(sub)
    export.add_parser(sub)
    return parser


def main(argv=None):
    """Run the ``pynn`` command; returns the exit status (0 ok, 1 error, 2 usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) and usage errors (2): argparse already printed
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    from ..io import ModelFileError

    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print(f"pynn {args.command}: interrupted", file=sys.stderr)
        return 130
    except (CLIError, ModelFileError, ValueError, TypeError, OSError, ImportError,
            RuntimeError) as exc:
        print(f"pynn {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # never a traceback for a user; still say it is our bug
        print(f"pynn {args.command}: internal error: {type(exc).__name__}: {_one_line(exc)}",
              file=sys.stderr)
        return 1


def _one_line(exc):
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    return " ".join(text.split())
