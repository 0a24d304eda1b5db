"""Topic 12. Grid search vs random search when one knob matters and the other does not.

Two knobs of the lecture's recipe (one hidden layer of 32 ReLUs, SGD with momentum, 6 epochs on
the bundled digits, scored on one validation split): the learning rate, searched over
[1e-4, 1] on a log scale, which moves the validation accuracy from 10% to 97%, and the lr
annealing factor (ExponentialLR's per-epoch multiplier) over [0.9, 1], which over 6 epochs
barely matters.

A 3 x 3 grid spends its 9 trials on 3 learning rates only: each is tried three times, with
three annealing factors that make no difference. 9 random trials (``pynn.search.random_search``,
lr log-uniform) try 9 different learning rates, so they cover the knob that matters three times
as densely and usually land closer to its best value (Bergstra & Bengio, JMLR 2012). The grey
curve is the accuracy against the learning rate alone, from a finer sweep; the last panel
repeats the random search over 20 independent draws.
"""
import argparse
import pathlib

import numpy as np

from pynn.datasets import load_digits
from pynn.search import LogUniform, Uniform, grid_search, random_search

LR_RANGE = (1e-4, 1.0)          # the knob that matters
DECAY_RANGE = (0.9, 1.0)        # the knob that does not (over a few epochs)
FIXED = {"hidden": [(32,)], "optimizer": ["sgd"]}


def run(out_dir, quick=False):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    X, y = load_digits()
    if quick:
        X, y = X[:600], y[:600]
    epochs = 3 if quick else 6
    draws = 4 if quick else 20
    # every search scores on the same split with the same initial weights (seed 0): the trials
    # differ only in their knobs
    options = dict(epochs=epochs, patience=epochs, standardize="common", seed=0, n_jobs=1,
                   refit=False)

    sweep = grid_search(X, y, {"lr": list(np.logspace(-4, 0, 9 if quick else 25)),
                               "lr_decay": [1.0], **FIXED}, **options)
    grid = grid_search(X, y, {"lr": list(np.logspace(-4, 0, 3)),
                              "lr_decay": list(np.linspace(*DECAY_RANGE, 3)), **FIXED},
                       **options)
    space = {"lr": LogUniform(*LR_RANGE), "lr_decay": Uniform(*DECAY_RANGE), **FIXED}
    randoms = [random_search(X, y, space, len(grid), sample_seed=draw, **options)
               for draw in range(draws)]

    def points(result):
        rows = sorted(result.results, key=lambda r: r["trial"])
        return (np.array([r["params"]["lr"] for r in rows]),
                np.array([r["params"]["lr_decay"] for r in rows]),
                np.array([r["score"] for r in rows]))

    grid_lr, grid_decay, grid_score = points(grid)
    # how much each knob moves the score in the grid: the spread over one knob with the other
    # held fixed, averaged over the other's values
    table = grid_score.reshape(3, 3)  # rows: lr, columns: decay
    lr_spread = float(np.mean(table.max(axis=0) - table.min(axis=0)))
    decay_spread = float(np.mean(table.max(axis=1) - table.min(axis=1)))
    random_bests = np.array([r.best_score for r in randoms])
    wins = float(np.mean(random_bests >= grid.best_score))
    result = {
        "grid_best": grid.best_score, "random_best": randoms[0].best_score,
        "random_bests": random_bests.tolist(), "random_wins": wins,
        "grid_distinct_lr": int(np.unique(grid_lr).size),
        "random_distinct_lr": int(np.unique(points(randoms[0])[0]).size),
        "sweep_best": sweep.best_score, "lr_spread": lr_spread, "decay_spread": decay_spread,
        "trials": len(grid),
    }

    print(f"grid:   {len(grid)} trials, {result['grid_distinct_lr']} learning rates, best "
          f"validation accuracy {grid.best_score:.4f} (lr {grid.best_params['lr']:.3g})")
    print(f"random: {len(grid)} trials, {result['random_distinct_lr']} learning rates, best "
          f"{randoms[0].best_score:.4f} (lr {randoms[0].best_params['lr']:.3g}); over {draws} "
          f"draws: median {np.median(random_bests):.4f}, range {random_bests.min():.4f}-"
          f"{random_bests.max():.4f}, at least the grid's best in {wins:.0%}")
    print(f"in the grid, the learning rate moves the accuracy by {lr_spread:.3f} on average, "
          f"the annealing factor by {decay_spread:.3f}; the best of a {len(sweep)}-point lr "
          f"sweep: {sweep.best_score:.4f}")
    print("=> with one knob that matters, random trials cover it 3x more densely than the grid "
          "and find a better value of it for the same budget.")

    _plot(out_dir / "12_search.png", sweep, (grid_lr, grid_decay, grid_score),
          points(randoms[0]), random_bests, grid.best_score, result)
    return result


def _plot(path, sweep, grid_points, random_points, random_bests, grid_best, result):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep_rows = sorted(sweep.results, key=lambda r: r["params"]["lr"])
    sweep_lr = [r["params"]["lr"] for r in sweep_rows]
    sweep_score = [r["score"] for r in sweep_rows]
    fig, axes = plt.subplots(2, 3, figsize=(12, 7), gridspec_kw={"height_ratios": [1, 1.2]})
    for col, (name, (lr, decay, score), style) in enumerate((
            ("grid", grid_points, dict(marker="s", color="tab:orange")),
            ("random", random_points, dict(marker="o", color="tab:blue")))):
        top, plane = axes[0, col], axes[1, col]
        top.plot(sweep_lr, sweep_score, color="0.6", lw=1.5, label="lr alone (sweep)")
        top.scatter(lr, score, s=45, zorder=3, label=f"{name} trials", **style)
        top.set_xscale("log")
        top.set_ylim(0, 1.02)
        top.set_ylabel("validation accuracy")
        top.set_title(f"{name}: {len(lr)} trials, {np.unique(lr).size} learning rates, "
                      f"best {score.max():.3f}", fontsize=10)
        top.legend(loc="lower right", fontsize=8)
        plane.scatter(lr, decay, s=45, **style)
        for value in lr:  # each trial's projection on the knob that matters
            plane.axvline(value, color=style["color"], alpha=0.25, lw=1)
        plane.set_xscale("log")
        plane.set_xlim(*(np.array(LR_RANGE) * [0.7, 1.4]))
        plane.set_ylim(DECAY_RANGE[0] - 0.01, DECAY_RANGE[1] + 0.01)
        plane.set_xlabel("learning rate (matters)")
        plane.set_ylabel("lr annealing factor (does not)")
        for ax in (top, plane):
            ax.grid(alpha=0.3)
    lr, decay, score = grid_points
    ax = axes[0, 2]
    for value in np.unique(lr):
        rows = lr == value
        ax.plot(decay[rows], score[rows], "s-", color="tab:orange",
                alpha=0.4 + 0.6 * value / lr.max(), label=f"lr {value:g}")
    ax.set_xlabel("lr annealing factor")
    ax.set_ylabel("validation accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="center right", fontsize=8)
    ax.set_title(f"grid: the factor moves accuracy {result['decay_spread']:.3f},\n"
                 f"the learning rate {result['lr_spread']:.3f}", fontsize=10)
    ax.grid(alpha=0.3)
    ax = axes[1, 2]
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, random_bests.size)
    ax.scatter(jitter, random_bests, color="tab:blue", s=30, label="best of 9 random trials")
    ax.axhline(grid_best, color="tab:orange", lw=2, label="best of the 3 x 3 grid")
    ax.axhline(max(sweep_score), color="0.6", ls="--", label="best of the lr sweep")
    ax.set_xlim(-0.5, 0.5)
    ax.set_xticks([])
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"{random_bests.size} random draws: >= grid in {result['random_wins']:.0%}",
                 fontsize=10)
    ax.legend(loc="lower center", fontsize=8)
    ax.grid(alpha=0.3)
    fig.suptitle("Grid vs random search with one important and one unimportant knob "
                 "(digits, 9 trials each)")
    fig.tight_layout()
    fig.savefig(path, dpi=85)
    plt.close(fig)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=pathlib.Path(__file__).resolve().parent / "images")
    parser.add_argument("--quick", action="store_true", help="small sizes (for the tests)")
    args = parser.parse_args()
    run(args.out, quick=args.quick)
