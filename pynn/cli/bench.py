"""``pynn bench`` and ``python bench/compare.py``: the options of the speed comparison (one
definition for both); the harness itself is pynn.bench."""
import argparse

from ..bench import CASE_NAMES, CONTENDERS
from ._common import _positive_int


def _name_list(valid, what):
    def parse(text):
        names = [n.strip() for n in text.split(",") if n.strip()]
        if names == ["all"]:
            return list(valid)
        bad = [n for n in names if n not in valid]
        if bad or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(map(repr, bad)) or '(none given)'}; "
                f"choose from {','.join(valid)} (comma-separated) or all")
        return [n for n in valid if n in names]  # the canonical order: alternation is fixed
    return parse


def add_arguments(parser):
    """The options of ``pynn bench`` and ``python bench/compare.py``, on ``parser``."""
    parser.add_argument("--cases", type=_name_list(CASE_NAMES, "case"),
                        default=list(CASE_NAMES), metavar="LIST",
                        help=f"comma-separated, default all: {','.join(CASE_NAMES)}")
    parser.add_argument("--contenders", type=_name_list(CONTENDERS, "contender"),
                        default=list(CONTENDERS), metavar="LIST",
                        help=f"comma-separated, default all: {','.join(CONTENDERS)}")
    parser.add_argument("--rounds", type=_positive_int, default=None,
                        help="fresh processes per contender and case, alternated "
                             "(default 3; 1 with --quick)")
    parser.add_argument("--reps", type=_positive_int, default=None,
                        help="timed repetitions per process (default: 5, epoch 3)")
    parser.add_argument("--threads", type=_positive_int, default=2,
                        help="threads for every contender (pynn.set_num_threads, "
                             "torch.set_num_threads, threadpoolctl); default 2")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="default float32")
    parser.add_argument("--out", metavar="DIR", default="bench-out",
                        help="directory for compare.json, compare.txt, compare.png "
                             "(default bench-out)")
    parser.add_argument("--quick", action="store_true",
                        help="toy sizes and one round: checks the harness in seconds; "
                             "its times mean nothing")
    parser.add_argument("--timeout", type=_positive_int, default=1800, metavar="SECONDS",
                        help="limit per process (default 1800)")
    return parser


def add_parser(sub):
    """The ``pynn bench`` subcommand, on the subparsers ``sub``."""
    parser = sub.add_parser(
        "bench", help="time pynn against a NumPy loop, torch, JAX, ONNX Runtime and "
                      "scikit-learn",
        description="End-to-end speed comparison, each contender in its own fresh process "
                    "(see bench/README.md). Quote figures with "
                    "OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset.")
    return add_arguments(parser)


def run(args, out=None):
    """Run ``pynn bench``; returns the exit status."""
    from ..bench import run as run_bench

    return run_bench(args, file=out)


def build_parser(prog=None):
    """The parser of ``python bench/compare.py`` (plain argparse, as a script's)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="pynn against a hand-written NumPy loop, torch, JAX, ONNX Runtime and "
                    "scikit-learn, each contender in its own fresh process.")
    return add_arguments(parser)


def main(argv=None):
    """``python bench/compare.py [options]``: the exit status."""
    return run(build_parser().parse_args(argv))
