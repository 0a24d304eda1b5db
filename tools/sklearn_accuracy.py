"""pynn.sklearn against scikit-learn's MLP with the same settings, on data neither was tuned on.

For each dataset (scikit-learn's breast cancer, wine, iris, diabetes) and each of 5 splits
(75/25, stratified for the classifiers, the scaler fitted on the training part, float32 data),
both estimators are fitted with the same parameters and ``random_state``, and scored on the test
part (accuracy, R^2). Their difference is judged against scikit-learn's own noise: the spread
of its test score over ``random_state`` values on one split.

    python tools/sklearn_accuracy.py                # the table (about a minute)
    python tools/sklearn_accuracy.py --seeds 5      # the seed spread on every split

tests/test_sklearn_accuracy.py runs ``compare`` and asserts the difference is within noise.
"""
import argparse
import sys
import warnings

import numpy as np

DATASETS = ("breast_cancer", "wine", "iris", "diabetes")
# Defaults of both estimators but the solver's budget: scikit-learn's defaults otherwise.
PARAMS = dict(hidden_layer_sizes=(100,), max_iter=200)


def load(name):
    """(X, y, is_classification) of one of scikit-learn's bundled datasets."""
    from sklearn import datasets

    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    return X, y, name != "diabetes"


def split(X, y, classification, seed):
    """Train/test parts (75/25), standardized with the training statistics, float32; for
    regression the target is standardized too (the same for both estimators)."""
    from sklearn.model_selection import train_test_split

    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=seed,
                                              stratify=y if classification else None)
    mean, std = X_tr.mean(0), X_tr.std(0)
    std[std == 0] = 1
    X_tr, X_te = ((X_tr - mean) / std).astype(np.float32), ((X_te - mean) / std).astype(
        np.float32)
    if not classification:
        y_mean, y_std = y_tr.mean(), y_tr.std()
        y_tr, y_te = (y_tr - y_mean) / y_std, (y_te - y_mean) / y_std
    return X_tr, X_te, y_tr, y_te


def _score(cls, X_tr, X_te, y_tr, y_te, seed, params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter, for both alike
        return float(cls(random_state=seed, **params).fit(X_tr, y_tr).score(X_te, y_te))


def compare(name, n_splits=5, n_seeds=5, seed_splits=1, params=None):
    """Scores of both on ``n_splits`` splits (random_state = split number) and scikit-learn's
    spread over ``n_seeds`` random states on the first ``seed_splits`` splits.

    Returns a dict: "pynn", "sklearn" (arrays of test scores per split), "seed_sd" (the mean
    over those splits of the standard deviation of scikit-learn's score over random states),
    "n_test" (test rows per split).
    """
    from sklearn.neural_network import MLPClassifier as SkC
    from sklearn.neural_network import MLPRegressor as SkR

    from pynn.sklearn import MLPClassifier, MLPRegressor

    params = dict(PARAMS if params is None else params)
    X, y, classification = load(name)
    ours, theirs = (MLPClassifier, SkC) if classification else (MLPRegressor, SkR)
    scores = {"pynn": [], "sklearn": []}
    seed_sds = []
    for s in range(n_splits):
        parts = split(X, y, classification, s)
        scores["pynn"].append(_score(ours, *parts, s, params))
        scores["sklearn"].append(_score(theirs, *parts, s, params))
        if s < seed_splits:
            # seed s is the paired run above; the other random states add to the spread
            spread = [scores["sklearn"][-1]] + [
                _score(theirs, *parts, 1000 + k, params) for k in range(n_seeds - 1)]
            seed_sds.append(float(np.std(spread, ddof=1)))
    return {"pynn": np.array(scores["pynn"]), "sklearn": np.array(scores["sklearn"]),
            "seed_sd": float(np.mean(seed_sds)), "n_test": len(parts[1]),
            "metric": "accuracy" if classification else "R^2"}


def tolerance(result):
    """How far apart the two mean scores may be and still be noise: three standard errors of
    the difference of two means of ``n`` runs each with scikit-learn's seed spread, and never
    less than one test sample's worth of accuracy (a spread of 0 on easy data)."""
    n = len(result["sklearn"])
    floor = 1.0 / result["n_test"] if result["metric"] == "accuracy" else 0.0
    return max(3.0 * result["seed_sd"] * np.sqrt(2.0 / n), floor)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=5,
                        help="random states for scikit-learn's spread (default 5)")
    parser.add_argument("--seed-splits", type=int, default=5,
                        help="on how many splits to measure the spread (default 5)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads of both (pynn's and numpy's BLAS; default 1: the scores "
                             "do not depend on it, and small fits run fastest on one)")
    args = parser.parse_args(argv)
    import pynn
    from threadpoolctl import threadpool_limits

    pynn.set_num_threads(args.threads)
    threadpool_limits(args.threads, user_api="blas")
    print(f"{'dataset':14} {'metric':8} {'scikit-learn':>16} {'pynn.sklearn':>16} "
          f"{'mean diff':>10} {'seed sd':>8} {'tolerance':>9}  within")
    ok = True
    for name in DATASETS:
        r = compare(name, args.splits, args.seeds, args.seed_splits)
        diff = r["pynn"].mean() - r["sklearn"].mean()
        tol = tolerance(r)
        ok &= abs(diff) <= tol
        print(f"{name:14} {r['metric']:8} {r['sklearn'].mean():9.4f} +-{r['sklearn'].std():.3f} "
              f"{r['pynn'].mean():9.4f} +-{r['pynn'].std():.3f} {diff:+10.4f} "
              f"{r['seed_sd']:8.4f} {tol:9.4f}  {'yes' if abs(diff) <= tol else 'NO'}")
    print(f"settings: {PARAMS}, everything else both estimators' defaults; float32 data; "
          f"{args.splits} splits (75/25), random_state = split; +- is the sd over splits")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
