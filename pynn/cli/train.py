"""``pynn train``: the lecture's recipe on the bundled digits or the user's table.

The stages, in order: read the data and its target (:func:`_read_labelled`), split it
stratified into train/validation/test (:func:`_split`), standardize on the training part only
(:func:`_standardize`), build and fit the network with early stopping (:func:`_fit`), then
save the model with its scaler in front, draw the learning curves and write the report."""
import os
import sys
import time

import numpy as np

from ..train.recipe import OPTIMIZERS, build_mlp, make_optimizer
from ._common import (CLIError, _dropout, _fraction, _hidden, _nonneg_int, _positive_float,
                      _positive_int, _write_json, add_training_data_arguments, mpi_ranks)
from ._data import _decide_task, _is_csv, _load_data

SCHEDULES = ("exponential", "cosine", "onecycle", "constant")


def add_parser(sub):
    """The ``pynn train`` subcommand and its options, on the subparsers ``sub``."""
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
    return t


def _make_scheduler(args, optimizer, n_batches):
    """The --schedule (after a --warmup) over ``optimizer``, and its description."""
    from .. import optim

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


# ---------------------------------------------------------------------------- the stages
def _read_labelled(args):
    """The data, its task and its target: a dict of X, y (class indices, or floats for
    regression), classes (None for regression), task, features, target_name, source."""
    from ..data import LabelEncoder

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
    else:
        y = labels.astype(np.float64)
    if X.shape[0] < 10:
        raise CLIError(f"{source}: {X.shape[0]} samples are too few to split into "
                       f"train/validation/test")
    return dict(X=X, y=y, classes=classes, task=task, features=features,
                target_name=target_name, source=source)


def _split(y, task, args):
    """Row indices (fit, validation, test): the test part first, then validation from the
    rest; stratified when every class has two rows to split."""
    from ..data import split_indices

    stratify = task == "classification" and bool(np.bincount(y).min() >= 2)
    train_idx, test_idx = split_indices(y, args.test_size, stratify=stratify, seed=args.seed)
    fit_idx, val_idx = split_indices(y[train_idx], args.val_size,
                                     stratify=stratify and np.bincount(y[train_idx]).min() >= 2,
                                     seed=args.seed + 1)
    return {"fit": train_idx[fit_idx], "val": train_idx[val_idx], "test": test_idx}


def _standardize(data, idx, args):
    """The scaler fit on the training part only (the lecture's first rule), the scaled parts
    and their targets (a regression target standardized too, by its training mean and std)."""
    from ..data import Standardizer

    X, y = data["X"], data["y"]
    scaling = args.scaling
    if scaling == "auto":
        scaling = "feature" if args.data else "common"
    scaler = Standardizer(scale_floor=1.0 if scaling == "common" else 0.0).fit(X[idx["fit"]])
    Xs = {part: scaler.transform(X[rows]) for part, rows in idx.items()}
    ys = {part: y[rows] for part, rows in idx.items()}
    y_mean = y_scale = None
    if data["task"] == "regression":
        y_mean, y_scale = float(ys["fit"].mean()), float(ys["fit"].std() or 1.0)
        ys = {k: ((v - y_mean) / y_scale).astype(np.float32) for k, v in ys.items()}
    return dict(scaler=scaler, scaling=scaling, X=Xs, y=ys, y_mean=y_mean, y_scale=y_scale)


def _fit(data, idx, scaled, args, out):
    """Build the recipe's network and fit it with early stopping on the validation part:
    (model, loss, history, test scores, the schedule's description)."""
    from ..data import batch_bounds
    from ..nn import CrossEntropyLoss, MSELoss
    from ..train import EarlyStopping, Trainer

    classification = data["task"] == "classification"
    n_out = len(data["classes"]) if classification else 1
    model = build_mlp(data["X"].shape[1], args.hidden, n_out, dropout=args.dropout,
                      seed=args.seed)
    loss = CrossEntropyLoss() if classification else MSELoss()
    optimizer = make_optimizer(args.optimizer, model.parameters(), args.lr)
    scheduler, schedule_text = _make_scheduler(
        args, optimizer, len(batch_bounds(idx["fit"].size, args.batch_size)))
    if args.class_weight != "none" and not classification:
        raise CLIError("--class-weight needs a classification target")
    trainer = Trainer(model, loss, optimizer)
    if args.verbose:
        print(f"pynn train: {data['source']}: {data['X'].shape[0]} samples, "
              f"{data['X'].shape[1]} features, "
              f"{'%d classes' % n_out if data['classes'] else 'regression'}; "
              f"train {idx['fit'].size} / validation {idx['val'].size} / "
              f"test {idx['test'].size}", file=out)
    Xs, ys = scaled["X"], scaled["y"]
    history = trainer.fit(
        Xs["fit"], ys["fit"], epochs=args.epochs, batch_size=args.batch_size,
        validation_data=(Xs["val"], ys["val"]), seed=args.seed, verbose=args.verbose,
        scheduler=scheduler, callbacks=[EarlyStopping("val_loss", patience=args.patience)],
        clip_grad_norm=args.clip_grad_norm,
        class_weight=None if args.class_weight == "none" else args.class_weight,
        distributed=args.ranks > 1,
    )
    return model, loss, history, trainer.evaluate(Xs["test"], ys["test"]), schedule_text


def _save_model(model, loss, data, scaled, args):
    """Save the scaler as the model's first layer (the saved model takes raw features), with
    the metadata ``pynn evaluate`` / ``predict`` read; returns the path."""
    from ..io import save
    from ..nn import Sequential

    full = Sequential(scaled["scaler"], *model.layers)
    full.eval()
    os.makedirs(args.out, exist_ok=True)
    model_path = os.path.join(args.out, "model.npz")
    save(full, model_path, metadata={
        "task": data["task"], "loss": type(loss).__name__, "classes": data["classes"],
        "features": data["features"],
        # CSV header names, which predict/evaluate match columns by; not the generated
        # x0.../pixel0... of an .npz or a bundled dataset, whose columns only have positions.
        "features_named": _is_csv(args.data),
        "target": data["target_name"], "y_mean": scaled["y_mean"],
        "y_scale": scaled["y_scale"], "source": data["source"],
    })
    return model_path


def _plot_curves(history, args, source):
    """learning_curves.png in --out; None (and a note) without matplotlib."""
    plot_path = os.path.join(args.out, "learning_curves.png")
    try:
        history.plot(plot_path, title=f"pynn train: {source}")
    except ImportError as exc:
        plot_path = None
        print(f"pynn train: note: no learning-curve plot ({exc})", file=sys.stderr)
    return plot_path


def _recipe_text(args, scaling, schedule_text):
    """The run's recipe in one line, for the report's config."""
    return (f"Standardizer({scaling}) -> [Dense(He) -> BatchNorm -> ReLU"
            + (" -> Dropout" if args.dropout > 0 else "") + f"] x {len(args.hidden)}"
            f" -> Dense; {args.optimizer} with {schedule_text}"
            + (f", gradients clipped to norm {args.clip_grad_norm}"
               if args.clip_grad_norm else "")
            + (", balanced class weights" if args.class_weight == "balanced" else "")
            + "; "
            f"EarlyStopping(val_loss, patience={args.patience}, restore best)")


def run(args, out=None):
    """Run ``pynn train``; returns the exit status."""
    import pynn

    out = out or sys.stdout
    if args.target is not None and args.data is None:
        raise CLIError("--target needs --data")
    # Under an MPI launcher (mpirun -n N pynn train ...) every rank trains its shard of each
    # batch (Trainer.fit(distributed=True)); rank 0 alone prints and writes.
    args.ranks, rank = mpi_ranks()
    if rank != 0:
        out, args.verbose = open(os.devnull, "w"), 0
    if args.backend is not None:
        pynn.set_backend(args.backend)
    t_start = time.perf_counter()
    data = _read_labelled(args)
    idx = _split(data["y"], data["task"], args)
    scaled = _standardize(data, idx, args)
    model, loss, history, test, schedule_text = _fit(data, idx, scaled, args, out)
    if rank != 0:
        out.close()
        return 0
    model_path = _save_model(model, loss, data, scaled, args)
    plot_path = _plot_curves(history, args, data["source"])

    task, n_test = data["task"], idx["test"].size
    test_accuracy = test.get("accuracy") if task == "classification" else None
    test_loss = (test["loss"] if task == "classification"
                 else test["loss"] * scaled["y_scale"] ** 2)  # in the target's own units
    report_path = args.report or os.path.join(args.out, "report.json")
    config = {k: v for k, v in vars(args).items() if k not in ("func",)}  # (ranks included)
    config.update({"dataset": args.dataset or (None if args.data else "digits"), "task": task,
                   "scaling": scaled["scaling"], "backend": pynn.get_backend().name,
                   "recipe": _recipe_text(args, scaled["scaling"], schedule_text)})
    _write_json(report_path, {
        "source": data["source"], "task": task, "test_accuracy": test_accuracy,
        "test_loss": test_loss, "n_train": int(idx["fit"].size), "n_val": int(idx["val"].size),
        "n_test": int(n_test), "classes": data["classes"], "epochs_run": len(history),
        "stop_reason": history.stop_reason,
        "best_val_loss": min(history.history["val_loss"]) if len(history) else None,
        "seconds": time.perf_counter() - t_start, "model": model_path, "plot": plot_path,
        "history": history.history, "config": config,
    })
    if task == "classification":
        print(f"test accuracy: {test_accuracy:.4f} ({n_test} held-out samples), "
              f"test loss {test_loss:.4f}", file=out)
    else:
        print(f"test MSE: {test_loss:.6g} ({n_test} held-out samples)", file=out)
    print(f"saved {model_path}, {report_path}" + (f", {plot_path}" if plot_path else ""),
          file=out)
    return 0
