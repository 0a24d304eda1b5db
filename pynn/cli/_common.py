"""What the ``pynn`` commands share besides their data (pynn/cli/_data.py): the user-facing
error, the argument types, the training-data options and writing a JSON report."""
import argparse
import json
import math
import os

from .._atomic import atomic_open
from ..io._json import json_safe

DATASETS = ("digits", "mnist5k")


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


# ---------------------------------------------------------------------------- argument types
def _number_arg(convert, accept, expected):
    """An argparse type: ``convert(text)``, kept when ``accept(value)``, else one clear error."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return parse


_positive_int = _number_arg(int, lambda v: v >= 1, "a positive integer")
_nonneg_int = _number_arg(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = _number_arg(float, lambda v: math.isfinite(v) and v > 0, "a positive number")
_fraction = _number_arg(float, lambda v: 0 < v < 1, "a number in (0, 1)")
_dropout = _number_arg(float, lambda v: 0 <= v < 1, "a number in [0, 1)")


def _hidden(text):
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer widths like 256,128, got {text!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive layer widths like 256,128, got {text!r}")
    return sizes


def add_training_data_arguments(parser):
    """--dataset / --data, --target, --task: where a training command's data comes from."""
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--dataset", choices=DATASETS, default=None,
                     help="a bundled dataset (default: digits)")
    src.add_argument("--data", metavar="FILE",
                     help="your data: a CSV with a header row, or an .npz with arrays X and y")
    parser.add_argument("--target", metavar="COLUMN",
                        help="label column of a CSV (default: the last column)")
    parser.add_argument("--task", choices=("auto", "classification", "regression"),
                        default="auto",
                        help="default: classification for integer or text labels, else "
                             "regression")


# ---------------------------------------------------------------------------- reports
def _write_json(path, payload):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    with atomic_open(path, "w") as f:
        json.dump(json_safe(payload), f, indent=2, allow_nan=False)
        f.write("\n")


def mpi_ranks():
    """(ranks in the MPI job, this process's rank): (1, 0) unless started by an MPI launcher
    (mpirun, srun), whose job the command then runs data-parallel."""
    from ..distributed import launched_size, world

    if launched_size() == 1:
        return 1, 0
    w = world()
    return w.size, w.rank
