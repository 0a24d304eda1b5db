"""Reading a command's data: a bundled dataset, a CSV (header row, or none) or an .npz, and
telling a classification target from a regression one. Every problem is one ``CLIError``."""
import csv
import gzip
import os

import numpy as np

from ._common import CLIError


def _open_text(path):
    if path.endswith(".gz"):
        return gzip.open(path, "rt", newline="")
    return open(path, newline="")


def read_table(path, target=None, need_target=True, has_header=True):
    """Read a CSV (header row) or an .npz (arrays X, y).

    ``has_header=False`` reads a CSV without a header row: every row is data, the columns are
    named x0, x1, ... as an .npz's are.

    Returns (X float64 (n, d), y raw labels or None, feature names, target name).
    """
    if not os.path.exists(path):
        raise CLIError(f"{path}: no such file")
    if path.endswith(".npz"):
        return _read_npz(path, need_target)
    if not path.endswith((".csv", ".csv.gz", ".txt")):
        raise CLIError(f"{path}: expected a .csv or .npz file")
    try:
        with _open_text(path) as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error, EOFError) as exc:
        raise CLIError(f"{path}: cannot read CSV ({exc})") from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not has_header:
        if not rows:
            raise CLIError(f"{path}: no data rows")
        if target is not None:
            raise CLIError(f"{path}: --target {target!r} needs a header row naming the columns")
        rows = [[f"x{j}" for j in range(len(rows[0]))], *rows]
    if len(rows) < 2:
        raise CLIError(f"{path}: expected a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    first = 2 if has_header else 1  # file line of the first data row, for error messages
    for i, r in enumerate(rows[1:], start=first):
        if len(r) != len(header):
            raise CLIError(f"{path}: line {i} has {len(r)} fields, the "
                           f"{'header' if has_header else 'first line'} has {len(header)}")
    table = np.array(rows[1:], dtype=object)
    t_idx = None
    if target is not None:
        if target not in header:
            raise CLIError(f"{path}: --target column {target!r} not in the header "
                           f"({', '.join(header[:8])}{', ...' if len(header) > 8 else ''})")
        t_idx = header.index(target)
    elif need_target:
        t_idx = len(header) - 1
    feat_idx = [j for j in range(len(header)) if j != t_idx]
    if not feat_idx:
        raise CLIError(f"{path}: no feature columns besides the target")
    X = np.empty((table.shape[0], len(feat_idx)))
    for k, j in enumerate(feat_idx):
        try:
            X[:, k] = [float(v) for v in table[:, j]]
        except ValueError:
            bad = next(i for i, v in enumerate(table[:, j]) if not _is_float(v))
            raise CLIError(f"{path}: column {header[j]!r}, line {bad + first}: "
                           f"{table[bad, j]!r} is not a number") from None
    if not np.isfinite(X).all():
        i, j = np.argwhere(~np.isfinite(X))[0]
        raise CLIError(f"{path}: column {header[feat_idx[j]]!r}, line {i + first}: NaN or Inf")
    y = None if t_idx is None else np.array([v.strip() for v in table[:, t_idx]])
    return X, y, [header[j] for j in feat_idx], None if t_idx is None else header[t_idx]


def _is_float(v):
    try:
        float(v)
        return True
    except ValueError:
        return False


def _read_npz(path, need_target):
    try:
        with np.load(path, allow_pickle=False) as z:
            if "X" not in z.files or (need_target and "y" not in z.files):
                raise CLIError(f"{path}: an .npz must hold arrays 'X' and 'y' "
                               f"(found {', '.join(z.files) or 'none'})")
            X = z["X"]
            y = z["y"] if "y" in z.files else None
    except CLIError:
        raise
    except Exception as exc:  # BadZipFile, pickled arrays (ValueError), truncated data
        raise CLIError(f"{path}: cannot read .npz ({exc})") from None
    if X.dtype.kind not in "biuf" or X.ndim != 2:
        raise CLIError(f"{path}: X must be a 2-D numeric array, got {X.dtype} {X.shape}")
    if y is not None and (y.ndim != 1 or y.shape[0] != X.shape[0]):
        raise CLIError(f"{path}: y must be 1-D with one label per row of X, got {y.shape}")
    X = X.astype(np.float64)
    if not np.isfinite(X).all():
        raise CLIError(f"{path}: X contains NaN or Inf")
    return X, y, [f"x{j}" for j in range(X.shape[1])], "y"


def _as_numeric_labels(y):
    """Labels as numbers when they all parse as numbers (ints when integral), else strings."""
    if y.dtype.kind in "biuf":
        vals = y.astype(np.float64)
    else:
        try:
            vals = np.array([float(v) for v in y])
        except ValueError:
            return y.astype(str), False
    if not np.isfinite(vals).all():
        raise CLIError("the target column contains NaN or Inf")
    if np.all(vals == np.round(vals)):
        return vals.astype(np.int64), True
    return vals, True


def _decide_task(y, task):
    labels, numeric = _as_numeric_labels(y)
    if task == "auto":
        if not numeric or labels.dtype.kind in "iu" and np.unique(labels).size <= max(
            2, min(100, labels.size // 5)
        ):
            task = "classification"
        else:
            task = "regression"
    if task == "regression" and not numeric:
        raise CLIError("--task regression needs a numeric target column")
    return task, labels


def _load_data(args, need_target=True, target=None, has_header=True):
    from .. import datasets

    if getattr(args, "dataset", None) is not None or getattr(args, "data", None) is None:
        name = getattr(args, "dataset", None) or "digits"
        X, y = datasets.load(name, dtype=np.float64)
        return X, y, [f"pixel{j}" for j in range(X.shape[1])], "label", name
    X, y, features, target_name = read_table(args.data, target, need_target, has_header)
    return X, y, features, target_name, os.path.basename(args.data)


def _is_csv(path):
    return bool(path) and not path.endswith(".npz")
