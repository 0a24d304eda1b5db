"""pynn.search: grid and random search over the lecture's knobs, their parallel trials, the
table, the refit winner, the plot and `pynn search`."""
import importlib.util
import itertools
import json
import sys

import numpy as np
import pytest
from scipy import stats

import pynn
from pynn.cli import main
from pynn.datasets import load_digits
from pynn.search import (DEFAULT_GRID, DEFAULT_SPACE, DEFAULTS, Choice, LogUniform, Uniform,
                         grid_search, random_search)
from pynn.search.space import check_space, sample_space

FAST = dict(epochs=3, patience=2, standardize="common")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits()
    return X, y


@pytest.fixture(scope="module")
def small_digits(digits):
    X, y = digits
    return X[:400], y[:400]


def _trials(result):
    """Each trial's (index, params, score, best epoch), in trial order: what must not depend on
    how the trials were scheduled."""
    rows = sorted(result.results, key=lambda r: r["trial"])
    return [(r["trial"], r["params"], r["score"], r["best_epoch"], r["epochs_run"])
            for r in rows]


def test_grid_search_runs_every_point_once(small_digits):
    grid = {"lr": [1e-3, 1e-2], "batch_size": [32, 64], "hidden": [(16,), (8, 8)]}
    result = grid_search(*small_digits, grid, n_jobs=1, refit=False, **FAST)
    seen = [tuple(r["params"][k] for k in grid) for r in result.results]
    assert sorted(seen) == sorted(itertools.product(*grid.values()))
    # the knobs not in the grid stay at their defaults
    for r in result.results:
        assert {k: v for k, v in r["params"].items() if k not in grid} == {
            k: v for k, v in DEFAULTS.items() if k not in grid}
    # trial i is the i-th combination, the last knob varying fastest
    by_trial = sorted(result.results, key=lambda r: r["trial"])
    assert [tuple(r["params"][k] for k in grid) for r in by_trial] == list(
        itertools.product(*grid.values()))
    assert result.model is None and result.method == "grid"


def test_results_are_best_first_and_the_table_shows_them(small_digits):
    result = random_search(*small_digits, {"lr": LogUniform(1e-4, 1e-1)}, 5, n_jobs=1,
                           refit=False, **FAST)
    scores = [r["score"] for r in result.results]
    assert scores == sorted(scores, reverse=True)
    assert [r["rank"] for r in result.results] == [1, 2, 3, 4, 5]
    assert result.best_score == scores[0] and result.best_params == result.results[0]["params"]
    lines = result.table().splitlines()
    assert lines[0].split() == ["rank", "trial", "lr", "accuracy", "epoch", "seconds"]
    assert [float(line.split()[3]) for line in lines[1:]] == pytest.approx(scores, abs=5e-5)
    assert len(result.table(limit=2).splitlines()) == 3


def test_random_search_is_reproducible_for_a_seed(small_digits):
    space = {"lr": LogUniform(1e-4, 1e-1), "dropout": Uniform(0.0, 0.5),
             "optimizer": ["adam", "sgd"]}
    a = random_search(*small_digits, space, 4, seed=3, n_jobs=1, refit=False, **FAST)
    b = random_search(*small_digits, space, 4, seed=3, n_jobs=1, refit=False, **FAST)
    c = random_search(*small_digits, space, 4, seed=4, n_jobs=1, refit=False, **FAST)
    assert _trials(a) == _trials(b)
    assert [r[1] for r in _trials(a)] != [r[1] for r in _trials(c)]
    # the trials are the draws of default_rng(seed), knob by knob, trial by trial
    assert [r[1] for r in _trials(a)] == sample_space(check_space(space), 4,
                                                       np.random.default_rng(3))
    # sample_seed changes the draws alone: a trial drawn again scores the same
    d = random_search(*small_digits, space, 4, seed=3, sample_seed=4, n_jobs=1, refit=False,
                      **FAST)
    assert [r[1] for r in _trials(d)] == [r[1] for r in _trials(c)]
    again = grid_search(*small_digits, {k: [v] for k, v in _trials(d)[0][1].items()}, seed=3,
                        n_jobs=1, refit=False, **FAST)
    assert again.best_score == _trials(d)[0][2]


def test_lr_is_drawn_log_uniformly():
    """log10(lr) is uniform on [-4, -1] (Kolmogorov-Smirnov), which a uniform draw of lr is
    not: 90% of those would land in the top decade."""
    draws = sample_space(check_space({"lr": LogUniform(1e-4, 1e-1)}), 4000,
                         np.random.default_rng(0))
    lr = np.array([d["lr"] for d in draws])
    assert lr.min() >= 1e-4 and lr.max() <= 1e-1
    assert stats.kstest(np.log10(lr), stats.uniform(loc=-4, scale=3).cdf).pvalue > 0.01
    assert stats.kstest(lr, stats.uniform(loc=1e-4, scale=1e-1 - 1e-4).cdf).pvalue < 1e-6
    per_decade = np.histogram(np.log10(lr), bins=[-4, -3, -2, -1])[0]
    assert np.all(np.abs(per_decade - 4000 / 3) < 4 * np.sqrt(4000 * (1 / 3) * (2 / 3)))
    uniform = sample_space(check_space({"dropout": Uniform(0.1, 0.4)}), 4000,
                           np.random.default_rng(0))
    p = np.array([d["dropout"] for d in uniform])
    assert stats.kstest(p, stats.uniform(loc=0.1, scale=0.3).cdf).pvalue > 0.01
    picks = sample_space(check_space({"batch_size": Choice([16, 32, 64, 128])}), 4000,
                         np.random.default_rng(0))
    counts = np.unique([d["batch_size"] for d in picks], return_counts=True)[1]
    assert stats.chisquare(counts).pvalue > 0.01


def test_parallel_trials_equal_serial_ones(small_digits):
    pytest.importorskip("joblib")
    space = {"lr": LogUniform(1e-3, 1e-1), "batch_size": [32, 64], "dropout": Uniform(0, 0.3)}
    serial = random_search(*small_digits, space, 4, seed=1, n_jobs=1, threads_per_trial=1,
                           **FAST)
    parallel = random_search(*small_digits, space, 4, seed=1, n_jobs=2, **FAST)
    assert parallel.workers == 2 and serial.workers == 1
    assert _trials(parallel) == _trials(serial)
    X = small_digits[0]
    np.testing.assert_array_equal(parallel.model.predict(X), serial.model.predict(X))


def test_trials_do_not_oversubscribe_the_cores(small_digits):
    pytest.importorskip("joblib")
    cores = pynn.get_num_threads()
    result = random_search(*small_digits, {"lr": [1e-2]}, 4, n_jobs=2, refit=False, **FAST)
    assert result.threads_per_trial == max(1, cores // 2)
    assert all(r["threads"] == result.threads_per_trial for r in result.results)
    assert result.workers * result.threads_per_trial <= max(cores, 2)
    serial = random_search(*small_digits, {"lr": [1e-2]}, 1, n_jobs=1, refit=False, **FAST)
    assert serial.results[0]["threads"] == cores


def test_threading_backend_gives_the_caller_its_thread_count_back(small_digits):
    joblib = pytest.importorskip("joblib")
    before = pynn.get_num_threads()
    with joblib.parallel_config(backend="threading"):
        result = random_search(*small_digits, {"lr": [1e-2]}, 2, n_jobs=2, refit=False,
                               threads_per_trial=1, **FAST)
    assert all(r["threads"] == 1 for r in result.results)
    assert pynn.get_num_threads() == before


def test_a_backend_without_generators_runs_the_same_trials(small_digits):
    """joblib's multiprocessing backend (and Ray's, built on it) cannot return results as a
    generator: the search takes them as a list there, the same trials as n_jobs=1."""
    joblib = pytest.importorskip("joblib")
    space = {"lr": LogUniform(1e-3, 1e-1), "batch_size": [32, 64]}
    serial = random_search(*small_digits, space, 3, seed=1, n_jobs=1, threads_per_trial=1,
                           refit=False, **FAST)
    with joblib.parallel_config(backend="multiprocessing"):
        parallel = random_search(*small_digits, space, 3, seed=1, n_jobs=2, refit=False, **FAST)
    assert parallel.workers == 2
    assert parallel.threads_per_trial == max(1, pynn.get_num_threads() // 2)
    assert _trials(parallel) == _trials(serial)


def test_n_jobs_1_needs_no_joblib(small_digits, monkeypatch):
    monkeypatch.setitem(sys.modules, "joblib", None)  # import joblib raises ImportError
    result = random_search(*small_digits, {"lr": [1e-2]}, 2, n_jobs=1, refit=False, **FAST)
    assert len(result) == 2
    result = random_search(*small_digits, {"lr": [1e-2]}, 1, refit=False, **FAST)  # None
    assert result.workers == 1
    with pytest.raises(ImportError, match=r"pynn\[search\]"):
        random_search(*small_digits, {"lr": [1e-2]}, 2, n_jobs=2, **FAST)


def test_random_search_matches_the_grid_on_digits(digits):
    """The must-show: 16 random trials, run two at a time, find a validation accuracy within
    1 point of the best of a 16-point grid over the same ranges."""
    pytest.importorskip("joblib")
    options = dict(epochs=20, patience=5, standardize="common", seed=0, n_jobs=2, refit=False)
    grid = grid_search(*digits, DEFAULT_GRID, **options)
    rand = random_search(*digits, DEFAULT_SPACE, 16, **options)
    assert len(grid) == 16 and len(rand) == 16 and rand.workers == 2
    print(f"\ngrid best {grid.best_score:.4f} {grid.best_params}\n"
          f"random best {rand.best_score:.4f} {rand.best_params}")
    assert rand.best_score >= grid.best_score - 0.01
    assert grid.best_score > 0.95  # a real search, not two equally broken ones


def test_known_answers_and_the_refit_winner():
    """Separable classes score 1; a linear target reaches R^2 near 1, and the refit winner takes
    raw features and predicts in y's units (the target scaling folded into its output)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5)) * [1, 10, 100, 0.1, 1] + 50
    X[:, 0] += np.sign(X[:, 0] - 50)  # a margin of 2 between the classes
    labels = np.where(X[:, 0] > 50, "yes", "no")
    clf = random_search(X, labels, {"lr": [1e-2]}, 1, epochs=20, n_jobs=1)
    assert clf.best_score == 1.0 and list(clf.classes) == ["no", "yes"]
    pred = clf.classes[clf.model.predict(X.astype(np.float32)).argmax(axis=1)]
    assert np.mean(pred == labels) > 0.97
    y = (X - 50) @ np.array([1.0, 0.1, 0.01, 10.0, -1.0]) * 100 + 1000
    reg = random_search(X, y, {"lr": [3e-3, 1e-2]}, 2, epochs=40, n_jobs=1, task="regression")
    assert reg.metric == "r2" and reg.best_score > 0.95
    out = reg.model.predict(X.astype(np.float32))[:, 0]
    r2 = 1 - np.sum((out - y) ** 2) / np.sum((y - y.mean()) ** 2)
    assert r2 > 0.95
    assert abs(out.mean() - y.mean()) < 0.05 * y.std()


def test_a_diverging_trial_ranks_last_and_is_marked(small_digits):
    result = grid_search(*small_digits, {"optimizer": ["adam", "sgd"], "lr": [1e-2, 1e4]},
                         n_jobs=1, refit=False, **FAST)
    worst = result.results[-1]
    assert worst["params"]["lr"] == 1e4 and worst["diverged"]
    assert not result.results[0]["diverged"]
    assert "(diverged)" in result.table().splitlines()[-1]


def test_plot_has_a_panel_per_knob(small_digits, tmp_path):
    pytest.importorskip("matplotlib")
    result = grid_search(*small_digits, {"lr": [1e-3, 1e-2], "hidden": [(8,), (16, 8)],
                                         "optimizer": ["adam", "rmsprop"]},
                         n_jobs=1, refit=False, **FAST)
    path = result.plot(tmp_path / "search.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    import matplotlib.image

    height, width = matplotlib.image.imread(path).shape[:2]
    assert width > 2.5 * height  # three panels side by side


@pytest.mark.parametrize("call, error, pattern", [
    (lambda X, y: grid_search(X, y, {"momentum": [0.9]}), ValueError, "unknown knob 'momentum'"),
    (lambda X, y: grid_search(X, y, {"lr": [1e-3, -1.0]}), ValueError, r"grid\['lr'\]\[1\]"),
    (lambda X, y: grid_search(X, y, {"lr": []}), ValueError, r"grid\['lr'\]"),
    (lambda X, y: grid_search(X, y, {"hidden": [(16, 0)]}), ValueError, r"hidden'\]\[0\]\[1\]"),
    (lambda X, y: grid_search(X, y, {"optimizer": ["lbfgs"]}), ValueError, "optimizer"),
    (lambda X, y: grid_search(X, y, [1e-3]), TypeError, "grid"),
    (lambda X, y: random_search(X, y, {"lr": LogUniform(1e-4, 1e-1)}, 0), ValueError,
     "n_trials"),
    (lambda X, y: random_search(X, y, {"batch_size": Uniform(16, 64)}), TypeError,
     r"space\['batch_size'\]"),
    (lambda X, y: random_search(X, y, {"dropout": Uniform(0.0, 1.0)}), ValueError,
     r"space\['dropout'\]\.high"),
    (lambda X, y: LogUniform(0.0, 1.0), ValueError, "low"),
    (lambda X, y: Uniform(1.0, 0.5), ValueError, "high"),
    (lambda X, y: Choice([]), ValueError, "options"),
    (lambda X, y: random_search(X, y, {"lr": [1e-3]}, n_jobs=0), ValueError, "n_jobs"),
    (lambda X, y: random_search(X, y, {"lr": [1e-3]}, val_fraction=1.5), ValueError,
     "val_fraction"),
    (lambda X, y: random_search(X, y, {"lr": [1e-3]}, task="ranking"), ValueError, "task"),
    (lambda X, y: random_search(X, y, {"lr": [1e-3]}, standardize="robust"), ValueError,
     "standardize"),
    (lambda X, y: random_search(X, y[:-1], {"lr": [1e-3]}), ValueError, "y must be 1-D"),
    (lambda X, y: random_search(X, np.zeros_like(y), {"lr": [1e-3]}), ValueError,
     "single class"),
    (lambda X, y: random_search(X, y, {"lr": [1e-3]}, threads_per_trial=0), ValueError,
     "threads_per_trial"),
])
def test_bad_arguments_name_the_argument(small_digits, call, error, pattern):
    with pytest.raises(error, match=pattern):
        call(*small_digits)


def test_cli_search_on_the_bundled_digits(tmp_path, capsys):
    out = tmp_path / "search"
    assert main(["search", "--trials", "3", "--epochs", "3", "--n-jobs", "1",
                 "--out", str(out), "--verbose", "0"]) == 0
    report = json.loads((out / "search.json").read_text())
    scores = [r["score"] for r in report["results"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    assert report["method"] == "random" and report["best_score"] == scores[0]
    assert set(report["knobs"]) == set(DEFAULT_SPACE)
    printed = capsys.readouterr().out
    assert "best validation accuracy" in printed and printed.count("\n") >= 5
    # the refit winner is a model `pynn evaluate` takes
    assert main(["evaluate", str(out / "model.npz"), "--dataset", "digits"]) == 0
    assert "accuracy" in capsys.readouterr().out
    if importlib.util.find_spec("matplotlib"):  # the plot is optional (the "plot" extra)
        assert (out / "search.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_search_prints_a_line_per_trial_off_a_terminal(tmp_path, capsys):
    assert main(["search", "--method", "grid", "--epochs", "1", "--patience", "0",
                 "--n-jobs", "1", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert err.count("trial ") == 16 and "trial 16/16" in err


def test_cli_search_errors_are_one_line(tmp_path, capsys):
    assert main(["search", "--target", "label", "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == "pynn search: error: --target needs --data"
    assert main(["search", "--n-jobs", "0", "--out", str(tmp_path)]) == 1
    assert "--n-jobs must not be 0" in capsys.readouterr().err
