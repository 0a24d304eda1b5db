"""``pynn evaluate MODEL`` and ``pynn predict MODEL``: a saved model (.npz, or .onnx through
pynn.onnx.load) on labelled or new data.

Both read the model and pick its input columns out of --data/--dataset the same way
(:func:`_features_for`: by the header's names when the model was trained on named columns,
else by position); evaluate then scores against the labels, predict writes a CSV."""
import collections
import csv
import os
import sys

import numpy as np

from .._atomic import atomic_open
from ._common import DATASETS, CLIError, _write_json
from ._data import _as_numeric_labels, _is_csv, _is_float, _load_data, _open_text


def add_parsers(sub):
    """The ``pynn evaluate`` and ``pynn predict`` subcommands, on the subparsers ``sub``."""
    for name, helptext in (("evaluate", "loss and accuracy of a saved model on labelled data"),
                           ("predict", "write a saved model's predictions to a CSV")):
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.add_argument("model", metavar="MODEL",
                       help="a model saved by pynn train / pynn.save, or an .onnx file")
        src = p.add_mutually_exclusive_group(required=True)
        src.add_argument("--data", metavar="FILE",
                         help="a CSV (columns matched to the model's by the header's names; "
                              "without a header, by position), or an .npz")
        src.add_argument("--dataset", choices=DATASETS, help="a bundled dataset")
        p.add_argument("--target", metavar="COLUMN",
                       help="label column of a CSV (default: the model's, else the last)")
        if name == "evaluate":
            p.add_argument("--report", metavar="FILE.json", help="also write the result as JSON")
        else:
            p.add_argument("--out", metavar="FILE.csv", required=True, help="predictions CSV")


def _load_model(path):
    if not os.path.exists(path):
        raise CLIError(f"{path}: no such file")
    if path.lower().endswith(".onnx"):  # pynn export's metadata, or {} for another tool's
        from ..onnx import load
    else:
        from ..io import load
    model, meta = load(path, return_metadata=True)
    model.eval()
    return model, meta


def _features_for(model, meta, args, need_target):
    """The model's input columns of --data/--dataset, (X, y or None, source name).

    When the CSV has a header and the model was trained on named columns, the columns are
    picked by name, in the training order, whatever their order in the file (extra columns are
    ignored); a missing one is an error. Otherwise (an .npz, a dataset, a file without a
    header) columns are taken by position.
    """
    n_in = _n_inputs(model)
    wanted = meta.get("features") or None
    header = _csv_header(args.data) if _is_csv(args.data) else None
    names_all = bool(wanted) and header is not None and set(wanted) <= set(header)
    # pynn train always reads a header row, but a first row of numbers (the label, last, may be
    # a word) is data, unless it names the model's features (a pandas frame's default 0, 1, ...
    # column names).
    labelled = header is not None and len(header) == n_in + 1
    looks_like_data = header is not None and all(
        _is_float(h) for h in (header[:-1] if labelled else header))
    has_header = header is not None and (not looks_like_data or names_all)
    # Names from a CSV header must be found. The x0.../pixel0... that pynn train makes up for
    # an .npz or a bundled dataset are matched only when the file has them all; else position.
    by_name = has_header and bool(wanted) and (names_all or meta.get("features_named", True))
    target = args.target
    if header is not None and not has_header and labelled:
        need_target = True  # the last column is the label: not read as a feature
    if target is None and has_header:
        if meta.get("target") in header:
            target = meta["target"]
        elif by_name and need_target:
            # the label is a column the model does not take, not blindly the last one
            others = [h for h in header if h not in wanted]
            target = others[-1] if others else None
            need_target = target is not None
    X, y, names, _, source = _load_data(args, need_target=need_target, target=target,
                                        has_header=header is None or has_header)
    if by_name:
        missing = [f for f in wanted if f not in names]
        if missing:
            more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
            raise CLIError(
                f"{source}: missing column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(map(repr, missing[:8]))}{more}, which the model was trained on "
                f"(columns are matched by the header's names)")
        counts = collections.Counter(names)
        twice = [f for f in wanted if counts[f] > 1]
        if twice:
            raise CLIError(f"{source}: column {twice[0]!r} appears more than once in the header")
        X = X[:, [names.index(f) for f in wanted]]
    elif not need_target and y is None and X.shape[1] == n_in + 1 and args.target is None:
        X = X[:, :-1]  # a labelled file: the last column is the label
    if X.shape[1] != n_in:
        raise CLIError(f"{source}: {X.shape[1]} feature columns, the model expects {n_in}")
    return X, y, source


def _csv_header(path):
    """The stripped cells of a CSV's first non-empty row; None when it cannot be read (then
    read_table reports why)."""
    try:
        with _open_text(path) as f:
            for row in csv.reader(f):
                if any(cell.strip() for cell in row):
                    return [h.strip() for h in row]
    except (OSError, UnicodeDecodeError, csv.Error, EOFError):
        pass
    return None


def _n_inputs(model):
    # the first module (depth first, so nested containers too) that declares its input width
    for module in model.modules():
        for attr in ("in_features", "num_features"):
            if getattr(module, attr, None):
                return getattr(module, attr)
    raise CLIError("cannot tell how many input features the model takes")


def _encode_labels(y, meta, source):
    classes = meta.get("classes")
    labels, _ = _as_numeric_labels(y)
    if classes is None:
        return labels
    lookup = {str(c): i for i, c in enumerate(classes)}
    try:
        return np.array([lookup[str(v)] for v in labels.tolist()], dtype=np.int64)
    except KeyError as exc:
        raise CLIError(f"{source}: label {exc.args[0]!r} is not one of the model's classes "
                       f"{classes[:10]}") from None


def run_evaluate(args, out=None):
    """Run ``pynn evaluate``; returns the exit status."""
    out = out or sys.stdout
    from ..train._metrics import accuracy_for
    from ..nn import CrossEntropyLoss

    model, meta = _load_model(args.model)
    X, y, source = _features_for(model, meta, args, need_target=True)
    if y is None:
        raise CLIError(f"{source}: no label column to evaluate against")
    out_ = model.predict(np.ascontiguousarray(X, dtype=model.dtype))
    result = {"model": args.model, "data": source, "n": int(X.shape[0])}
    if meta.get("task", "classification") == "classification":
        yi = _encode_labels(y, meta, source)
        if yi.min() < 0 or yi.max() >= out_.shape[1]:
            raise CLIError(f"{source}: labels out of range for a model with {out_.shape[1]} "
                           f"outputs")
        loss = CrossEntropyLoss()
        result["loss"] = float(loss.forward(out_, yi))
        result["accuracy"] = accuracy_for(loss)(out_, yi)
        print(f"{source}: accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f} "
              f"({result['n']} samples)", file=out)
    else:
        target, _ = _as_numeric_labels(y)
        pred = _denormalize(out_, meta)
        result["loss"] = float(np.mean((pred[:, 0] - target) ** 2))
        result["mse"] = result["loss"]
        print(f"{source}: MSE {result['mse']:.6g} ({result['n']} samples)", file=out)
    if getattr(args, "report", None):
        _write_json(args.report, result)
    return 0


def _denormalize(output, meta):
    out = output.astype(np.float64)
    if meta.get("y_scale") is not None:
        out = out * meta["y_scale"] + meta["y_mean"]
    return out


def run_predict(args, out=None):
    """Run ``pynn predict``; returns the exit status."""
    out = out or sys.stdout
    model, meta = _load_model(args.model)
    X, _, source = _features_for(model, meta, args, need_target=False)
    logits = model.predict(np.ascontiguousarray(X, dtype=model.dtype))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with atomic_open(args.out, "w", newline="") as f:
        w = csv.writer(f)
        if meta.get("task", "classification") == "classification":
            classes = meta.get("classes") or list(range(logits.shape[1]))
            z = logits.astype(np.float64)
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            w.writerow(["prediction", *[f"p_{c}" for c in classes]])
            for label, row in zip(np.asarray(classes, dtype=object)[logits.argmax(axis=1)], p):
                w.writerow([label, *[f"{v:.6g}" for v in row]])
        else:
            pred = _denormalize(logits, meta)
            w.writerow(["prediction"] if pred.shape[1] == 1 else
                       [f"prediction_{k}" for k in range(pred.shape[1])])
            for row in pred:
                w.writerow([f"{v:.8g}" for v in row])
    print(f"wrote {X.shape[0]} predictions to {args.out}", file=out)
    return 0
