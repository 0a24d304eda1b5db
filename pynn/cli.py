"""The ``pynn`` command: ``pynn train``, ``pynn evaluate MODEL``, ``pynn predict MODEL``,
``pynn bench`` (the speed comparison of ``pynn.bench``), ``pynn search`` (``pynn.search``).

``pynn train`` with no arguments runs the lecture's recipe on the bundled digits: standardize
(fit on the training part only), two Dense-BatchNorm-ReLU blocks with He initialization, Adam
with an exponentially decaying learning rate, early stopping on a stratified validation split,
and a stratified 20% test split that training never sees.

Errors (bad arguments, missing or malformed files) print one line to stderr and exit non-zero;
no traceback.
"""
import argparse
import collections
import csv
import os
import sys
import time

import numpy as np

from ._cli_common import (DATASETS, CLIError, _as_numeric_labels, _decide_task, _dropout,
                          _fraction, _hidden, _is_csv, _is_float, _load_data, _nonneg_int,
                          _open_text, _positive_float, _positive_int, _write_json,
                          add_training_data_arguments)
from .io._atomic import atomic_open
from .train.recipe import OPTIMIZERS, build_mlp, make_optimizer

SCHEDULES = ("exponential", "cosine", "onecycle", "constant")
class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage block) and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser():
    parser = _Parser(prog="pynn", description="Train, evaluate and apply pynn networks.")
    sub = parser.add_subparsers(dest="command", metavar="{train,evaluate,predict,bench,search}",
                                parser_class=_Parser)

    t = sub.add_parser("train", help="train the lecture's recipe (default: bundled digits)",
                       description="Train an MLP: standardize, Dense-BatchNorm-ReLU blocks (He "
                                   "init), Adam with a decaying lr, early stopping.")
    add_training_data_arguments(t)
    t.add_argument("--hidden", type=_hidden, default=[256, 128], metavar="W1,W2,...",
                   help="hidden layer widths (default: 256,128)")
    t.add_argument("--epochs", type=_positive_int, default=100,
                   help="maximum epochs (early stopping usually ends sooner; default 100)")
    t.add_argument("--batch-size", type=_positive_int, default=64, help="default 64")
    t.add_argument("--lr", type=_positive_float, default=1e-3, help="initial learning rate")
    t.add_argument("--lr-decay", type=_positive_float, default=0.95,
                   help="lr multiplier per epoch (ExponentialLR; default 0.95)")
    t.add_argument("--schedule", choices=SCHEDULES, default="exponential",
                   help="lr schedule: exponential (--lr-decay per epoch; the default), cosine "
                        "(CosineAnnealingLR to 0 over --epochs), onecycle (OneCycleLR per "
                        "batch, peaking at --lr), constant")
    t.add_argument("--warmup", type=_nonneg_int, default=0, metavar="EPOCHS",
                   help="linear warm-up from lr/10 over this many epochs before the schedule "
                        "(LinearLR + SequentialLR; not with onecycle; default 0)")
    t.add_argument("--clip-grad-norm", type=_positive_float, default=None, metavar="MAX",
                   help="clip the gradients' total 2-norm to MAX before each step")
    t.add_argument("--class-weight", choices=("none", "balanced"), default="none",
                   help="weigh classes by n / (classes * count) in the loss (classification)")
    t.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="default adam")
    t.add_argument("--dropout", type=_dropout, default=0.0,
                   help="dropout after each hidden block (default 0: off)")
    t.add_argument("--scaling", choices=("auto", "feature", "common"), default="auto",
                   help="standardize each feature by its own std ('feature') or all by one "
                        "common std ('common', for pixels); auto: common for the bundled "
                        "images, feature for --data")
    t.add_argument("--patience", type=_nonneg_int, default=10,
                   help="early-stopping patience in epochs (default 10)")
    t.add_argument("--test-size", type=_fraction, default=0.2,
                   help="held-out test fraction (default 0.2)")
    t.add_argument("--val-size", type=_fraction, default=0.15,
                   help="validation fraction of the rest (default 0.15)")
    t.add_argument("--seed", type=_nonneg_int, default=0, help="default 0")
    t.add_argument("--backend", choices=("cython", "numpy"), default=None,
                   help="default: pynn's current backend")
    t.add_argument("--out", metavar="DIR", default="pynn-out",
                   help="directory for model.npz and learning_curves.png (default pynn-out)")
    t.add_argument("--report", metavar="FILE.json",
                   help="report path (default: DIR/report.json)")
    t.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                   help="0 quiet, 1 progress bar, 2 one line per epoch")

    for name, helptext in (("evaluate", "loss and accuracy of a saved model on labelled data"),
                           ("predict", "write a saved model's predictions to a CSV")):
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.add_argument("model", metavar="MODEL", help="a model saved by pynn train / pynn.save")
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

    from .bench import add_arguments as bench_arguments

    b = sub.add_parser("bench", help="time pynn against a NumPy loop, torch and scikit-learn",
                       description="End-to-end speed comparison, each contender in its own "
                                   "fresh process (see bench/README.md). Quote figures with "
                                   "OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset.")
    bench_arguments(b)

    from .search.cli import add_arguments as search_arguments

    s = sub.add_parser("search", help="grid or random search over lr, batch size, dropout, ...",
                       description="Hyper-parameter search: train the recipe of pynn train per "
                                   "trial, score each on one validation split, refit the best "
                                   "on all the data.")
    search_arguments(s)
    return parser


# ---------------------------------------------------------------------------- train
def _make_scheduler(args, optimizer, n_batches):
    """The --schedule (after a --warmup) over ``optimizer``, and its description."""
    from . import optim

    if args.schedule == "onecycle":
        if args.warmup:
            raise CLIError("--warmup does not combine with --schedule onecycle, which warms "
                           "up itself")
        return (optim.OneCycleLR(optimizer, max_lr=args.lr, epochs=args.epochs,
                                 steps_per_epoch=n_batches),
                f"OneCycleLR(max_lr={args.lr}, per batch)")
    decay_epochs = max(args.epochs - args.warmup, 1)
    if args.schedule == "cosine":
        schedule = optim.CosineAnnealingLR(optimizer, T_max=decay_epochs)
        text = f"CosineAnnealingLR(T_max={decay_epochs})"
    elif args.schedule == "exponential":
        schedule = optim.ExponentialLR(optimizer, gamma=args.lr_decay)
        text = f"ExponentialLR(gamma={args.lr_decay})"
    else:
        schedule, text = None, "constant lr"
    if not args.warmup:
        return schedule, text
    warmup = optim.LinearLR(optimizer, start_factor=0.1, total_iters=args.warmup)
    if schedule is None:
        return warmup, f"LinearLR warm-up over {args.warmup} epochs"
    return (optim.SequentialLR(optimizer, [warmup, schedule], milestones=[args.warmup]),
            f"LinearLR warm-up over {args.warmup} epochs, then {text}")


def cmd_train(args, out=None):
    out = out or sys.stdout
    import pynn
    from .data import LabelEncoder, Standardizer, split_indices
    from .data import batch_bounds
    from .nn import CrossEntropyLoss, MSELoss, Sequential
    from .train import EarlyStopping, Trainer

    if args.target is not None and args.data is None:
        raise CLIError("--target needs --data")
    if args.backend is not None:
        pynn.set_backend(args.backend)
    t_start = time.perf_counter()
    X, y_raw, features, target_name, source = _load_data(args, target=args.target)
    task, labels = ("classification", y_raw) if args.data is None else _decide_task(
        y_raw, args.task)
    classes = None
    if task == "classification":
        enc = LabelEncoder().fit(labels)
        y = enc.transform(labels)
        classes = enc.classes_.tolist()
        if len(classes) < 2:
            raise CLIError(f"{source}: the target has a single class ({classes[0]!r})")
        counts = np.bincount(y)
        stratify = bool(counts.min() >= 2)
    else:
        y = labels.astype(np.float64)
        stratify = False
    n = X.shape[0]
    if n < 10:
        raise CLIError(f"{source}: {n} samples are too few to split into train/validation/test")

    rng_seed = args.seed
    train_idx, test_idx = split_indices(y, args.test_size, stratify=stratify, seed=rng_seed)
    fit_idx, val_idx = split_indices(y[train_idx], args.val_size,
                                     stratify=stratify and np.bincount(y[train_idx]).min() >= 2,
                                     seed=rng_seed + 1)
    fit_idx, val_idx = train_idx[fit_idx], train_idx[val_idx]

    # The lecture's first rule: the scaler sees the training part only.
    scaling = args.scaling
    if scaling == "auto":
        scaling = "feature" if args.data else "common"
    scaler = Standardizer(scale_floor=1.0 if scaling == "common" else 0.0).fit(X[fit_idx])
    Xs = {k: scaler.transform(X[idx]) for k, idx in
          (("fit", fit_idx), ("val", val_idx), ("test", test_idx))}
    ys = {"fit": y[fit_idx], "val": y[val_idx], "test": y[test_idx]}
    y_mean = y_scale = None
    if task == "regression":
        y_mean, y_scale = float(ys["fit"].mean()), float(ys["fit"].std() or 1.0)
        ys = {k: ((v - y_mean) / y_scale).astype(np.float32) for k, v in ys.items()}

    n_out = len(classes) if task == "classification" else 1
    model = build_mlp(X.shape[1], args.hidden, n_out, dropout=args.dropout, seed=args.seed)
    loss = CrossEntropyLoss() if task == "classification" else MSELoss()
    optimizer = make_optimizer(args.optimizer, model.parameters(), args.lr)
    scheduler, schedule_text = _make_scheduler(args, optimizer,
                                               len(batch_bounds(fit_idx.size, args.batch_size)))
    if args.class_weight != "none" and task != "classification":
        raise CLIError("--class-weight needs a classification target")
    trainer = Trainer(model, loss, optimizer)
    if args.verbose:
        print(f"pynn train: {source}: {n} samples, {X.shape[1]} features, "
              f"{'%d classes' % n_out if classes else 'regression'}; "
              f"train {fit_idx.size} / validation {val_idx.size} / test {test_idx.size}",
              file=out)
    history = trainer.fit(
        Xs["fit"], ys["fit"], epochs=args.epochs, batch_size=args.batch_size,
        validation_data=(Xs["val"], ys["val"]), seed=args.seed, verbose=args.verbose,
        scheduler=scheduler, callbacks=[EarlyStopping("val_loss", patience=args.patience)],
        clip_grad_norm=args.clip_grad_norm,
        class_weight=None if args.class_weight == "none" else args.class_weight,
    )
    test = trainer.evaluate(Xs["test"], ys["test"])

    # Save the scaler as the model's first layer: the saved model takes raw features.
    full = Sequential(scaler, *model.layers)
    full.eval()
    os.makedirs(args.out, exist_ok=True)
    model_path = os.path.join(args.out, "model.npz")
    from .io import save

    save(full, model_path, metadata={
        "task": task, "loss": type(loss).__name__, "classes": classes, "features": features,
        # CSV header names, which predict/evaluate match columns by; not the generated
        # x0.../pixel0... of an .npz or a bundled dataset, whose columns only have positions.
        "features_named": _is_csv(args.data),
        "target": target_name, "y_mean": y_mean, "y_scale": y_scale, "source": source,
    })
    plot_path = os.path.join(args.out, "learning_curves.png")
    try:
        history.plot(plot_path, title=f"pynn train: {source}")
    except ImportError as exc:
        plot_path = None
        print(f"pynn train: note: no learning-curve plot ({exc})", file=sys.stderr)

    test_accuracy = test.get("accuracy") if task == "classification" else None
    test_loss = test["loss"] if task == "classification" else test["loss"] * y_scale ** 2
    report_path = args.report or os.path.join(args.out, "report.json")
    config = {k: v for k, v in vars(args).items() if k not in ("func",)}
    config.update({"dataset": args.dataset or (None if args.data else "digits"), "task": task,
                   "scaling": scaling,
                   "backend": pynn.get_backend().name, "recipe": (
                       f"Standardizer({scaling}) -> [Dense(He) -> BatchNorm -> ReLU"
                       + (" -> Dropout" if args.dropout > 0 else "") + f"] x {len(args.hidden)}"
                       f" -> Dense; {args.optimizer} with {schedule_text}"
                       + (f", gradients clipped to norm {args.clip_grad_norm}"
                          if args.clip_grad_norm else "")
                       + (", balanced class weights" if args.class_weight == "balanced" else "")
                       + "; "
                       f"EarlyStopping(val_loss, patience={args.patience}, restore best)")})
    _write_json(report_path, {
        "source": source, "task": task, "test_accuracy": test_accuracy, "test_loss": test_loss,
        "n_train": int(fit_idx.size), "n_val": int(val_idx.size), "n_test": int(test_idx.size),
        "classes": classes, "epochs_run": len(history), "stop_reason": history.stop_reason,
        "best_val_loss": min(history.history["val_loss"]) if len(history) else None,
        "seconds": time.perf_counter() - t_start, "model": model_path, "plot": plot_path,
        "history": history.history, "config": config,
    })
    if task == "classification":
        print(f"test accuracy: {test_accuracy:.4f} ({test_idx.size} held-out samples), "
              f"test loss {test_loss:.4f}", file=out)
    else:
        print(f"test MSE: {test_loss:.6g} ({test_idx.size} held-out samples)", file=out)
    print(f"saved {model_path}, {report_path}" + (f", {plot_path}" if plot_path else ""),
          file=out)
    return 0


# ---------------------------------------------------------------------------- evaluate / predict
def _load_model(path):
    from .io import load

    if not os.path.exists(path):
        raise CLIError(f"{path}: no such file")
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


def cmd_evaluate(args, out=None):
    out = out or sys.stdout
    from .nn import CrossEntropyLoss
    from .train._metrics import accuracy_for

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


def cmd_predict(args, out=None):
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


# ---------------------------------------------------------------------------- bench
def cmd_bench(args, out=None):
    from .bench import run

    return run(args, file=out)


# ---------------------------------------------------------------------------- search
def cmd_search(args, out=None):
    from .search.cli import run

    return run(args, file=out)


# ---------------------------------------------------------------------------- entry point
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
    from .io import ModelFileError

    command = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
               "bench": cmd_bench, "search": cmd_search}[args.command]
    try:
        return command(args)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
