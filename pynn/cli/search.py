"""``pynn search``: grid or random search over the lecture's knobs on the bundled data (or a
CSV/.npz), with a progress bar; writes the table as JSON, the plot and the refit winner."""
import math
import os
import sys

from ..search.result import _cell
from ..search.space import DEFAULT_GRID, DEFAULT_SPACE
from ._common import CLIError, _fraction, _nonneg_int, _positive_int, _write_json, mpi_ranks
from ._common import add_training_data_arguments
from ._data import _decide_task, _is_csv, _load_data


def _describe(space):
    return "; ".join(f"{k} {v!r}" for k, v in space.items())


def add_parser(sub):
    """The ``pynn search`` subcommand and its options, on the subparsers ``sub``."""
    parser = sub.add_parser(
        "search", help="grid or random search over lr, batch size, dropout, ...",
        description="Hyper-parameter search: train the recipe of pynn train per trial, score "
                    "each on one validation split, refit the best on all the data.")
    parser.add_argument("--method", choices=("random", "grid"), default="random",
                        help="random (default): --trials draws from " + _describe(DEFAULT_SPACE)
                        + "; grid: every point of " + _describe(DEFAULT_GRID)
                        + f" ({math.prod(map(len, DEFAULT_GRID.values()))} trials)")
    parser.add_argument("--trials", type=_positive_int, default=16,
                        help="random search trials (default 16)")
    add_training_data_arguments(parser)
    parser.add_argument("--epochs", type=_positive_int, default=30,
                        help="maximum epochs per trial (default 30)")
    parser.add_argument("--patience", type=_nonneg_int, default=5,
                        help="early-stopping patience per trial, in epochs (default 5)")
    parser.add_argument("--val-size", type=_fraction, default=0.2,
                        help="validation fraction every trial is scored on (default 0.2)")
    parser.add_argument("--n-jobs", type=int, default=None,
                        help="trials at once; -1 one per core (default when joblib, the "
                             "'search' extra, is installed; else 1)")
    parser.add_argument("--seed", type=_nonneg_int, default=0, help="default 0")
    parser.add_argument("--out", metavar="DIR", default="pynn-search",
                        help="directory for search.json, search.png and the refit winner "
                             "model.npz (default pynn-search)")
    parser.add_argument("--verbose", type=int, choices=(0, 1), default=1,
                        help="0 quiet, 1 a progress bar (a line per trial off a terminal)")
    return parser


def run(args, out=None):
    """Run ``pynn search``; returns the exit status."""
    from ..io import save
    from ..search.core import grid_search, random_search

    out = out or sys.stdout
    if args.target is not None and args.data is None:
        raise CLIError("--target needs --data")
    n_jobs = args.n_jobs
    if n_jobs == 0:
        raise CLIError("--n-jobs must not be 0: a positive count, or -1 for every core")
    if n_jobs is None:
        try:
            import joblib  # noqa: F401
        except ImportError:
            n_jobs = 1
        else:
            n_jobs = -1
    # Under an MPI launcher (mpirun -n N pynn search ...) the trials are spread over the
    # ranks; rank 0 alone prints, refits and writes.
    ranks, rank = mpi_ranks()
    if rank != 0:
        out, args.verbose = open(os.devnull, "w"), 0
    X, y_raw, features, target_name, source = _load_data(args, target=args.target)
    task, y = ("classification", y_raw) if args.data is None else _decide_task(y_raw, args.task)
    options = dict(epochs=args.epochs, patience=args.patience, val_fraction=args.val_size,
                   task=task, seed=args.seed, n_jobs=1 if ranks > 1 else n_jobs,
                   verbose=args.verbose, distributed=ranks > 1,
                   # pixels share one scale; the columns of a user's table each have their own
                   standardize="feature" if args.data else "common")
    n_trials = math.prod(map(len, DEFAULT_GRID.values())) if args.method == "grid" else args.trials
    if args.verbose:
        print(f"pynn search: {source}: {X.shape[0]} samples, {X.shape[1]} features; "
              f"{args.method} search, {n_trials} trials", file=out)
    if args.method == "grid":
        result = grid_search(X, y, DEFAULT_GRID, **options)
    else:
        result = random_search(X, y, DEFAULT_SPACE, args.trials, **options)
    if rank != 0:
        out.close()
        return 0

    os.makedirs(args.out, exist_ok=True)
    model_path = os.path.join(args.out, "model.npz")
    classes = None if result.classes is None else result.classes.tolist()
    # the metadata pynn evaluate / predict read (see pynn/cli/train.py)
    save(result.model, model_path, metadata={
        "task": task, "loss": "CrossEntropyLoss" if task == "classification" else "MSELoss",
        "classes": classes, "features": features, "features_named": _is_csv(args.data),
        "target": target_name, "y_mean": None, "y_scale": None, "source": source,
        "search": {"method": args.method, "best_params": result.to_dict()["best_params"]},
    })
    report_path = os.path.join(args.out, "search.json")
    _write_json(report_path, {"source": source, **result.to_dict(), "model": model_path})
    plot_path = os.path.join(args.out, "search.png")
    try:
        result.plot(plot_path, title=f"pynn search ({args.method}): {source}")
    except ImportError as exc:
        plot_path = None
        print(f"pynn search: note: no plot ({exc})", file=sys.stderr)
    print(result.table(limit=10), file=out)
    if len(result) > 10:
        print(f"... {len(result) - 10} more trials in {report_path}", file=out)
    shown = ", ".join(f"{k}={_cell(v)}" for k, v in result.best_params.items())
    print(f"best validation {result.metric}: {result.best_score:.4f} ({shown}); "
          f"{result.workers} trial{'s' * (result.workers > 1)} at a time, "
          f"{result.threads_per_trial} thread{'s' * (result.threads_per_trial > 1)} each", file=out)
    print(f"saved {model_path} (refit on all the data), {report_path}"
          + (f", {plot_path}" if plot_path else ""), file=out)
    return 0
