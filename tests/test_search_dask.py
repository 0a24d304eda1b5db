"""Searches on a Dask cluster (issue 19, item 2): pynn.search, and pynn.sklearn's estimators
inside GridSearchCV and RandomizedSearchCV, run under joblib's dask backend on a LocalCluster of
two worker processes and give the same trials, bit for bit, as n_jobs=1 with the same seeds (at
the same threads per trial: 1, which is what Dask's nanny gives each worker through
OMP_NUM_THREADS). Also: a cluster worker takes its own share of threads, not the caller's; the
holdout travels to the workers once per search, not inside every task; docs/cluster_search.md's
code runs."""
import contextlib
import os
import pathlib
import re
import sys
import warnings

import numpy as np
import pytest
from scipy.stats import loguniform

import pynn
from pynn.datasets import load_digits
from pynn.search import LogUniform, Uniform, grid_search, random_search

distributed = pytest.importorskip("dask.distributed")
joblib = pytest.importorskip("joblib")  # the dask extra brings it; its dask backend is the point

import dask  # noqa: E402  (after the skip: dask comes with dask.distributed)
import psutil  # noqa: E402  (distributed depends on it)

try:
    from sklearn.exceptions import ConvergenceWarning
except ImportError:  # without scikit-learn its tests skip, and nothing else here raises that
    ConvergenceWarning = None

FAST = dict(epochs=3, patience=2, standardize="common")
DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "cluster_search.md"
DOC_ADDRESS = "tcp://scheduler-host:8786"  # the docs' placeholder for a real scheduler


@contextlib.contextmanager
def _recorded():
    """Every warning raised inside, in any thread (Dask's event loop runs in its own), recorded
    rather than raised: raised on that thread, it would hang the search instead of failing it.
    The one expected warning is ignored: a few epochs keep this file fast, so the estimators
    stop before they converge, which is what ConvergenceWarning reports (scikit-learn's
    delayed carries this filter to the workers too)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if ConvergenceWarning is not None:
            warnings.filterwarnings("ignore", category=ConvergenceWarning)
        yield caught


def _assert_none(caught):
    assert not caught, [f"{w.category.__name__}: {w.message}" for w in caught]


@pytest.fixture(autouse=True)
def no_warnings():
    """No warning in any test of this file, in the caller or on Dask's threads."""
    with _recorded() as caught:
        yield
    _assert_none(caught)


@contextlib.contextmanager
def _cluster(**options):
    """A LocalCluster of worker processes and a Client to it. On the way out both are closed,
    a failed assertion inside included; after a clean exit, starting and closing them must
    have warned of nothing and no worker process may be left."""
    with contextlib.ExitStack() as stack:
        with _recorded() as starting:
            cluster = stack.enter_context(distributed.LocalCluster(
                processes=True, dashboard_address=":0", **options))
            client = stack.enter_context(distributed.Client(cluster))
        pids = list(client.run(os.getpid).values())
        yield client
        with _recorded() as closing:
            stack.close()
    _assert_none(starting + closing)
    left = [pid for pid in pids if psutil.pid_exists(pid)]
    assert not left, f"worker processes {left} outlived their cluster"


@pytest.fixture(scope="module")
def client():
    with _cluster(n_workers=2, threads_per_worker=1) as client:
        yield client


@pytest.fixture(scope="module")
def small_digits():
    X, y = load_digits()
    return X[:400], y[:400]


@pytest.fixture
def one_thread(client):
    """The caller and every worker at 1 pynn thread (a worker starts at 1, OMP_NUM_THREADS from
    Dask's nanny, but a search's trial may have set another count there): the same count on
    both sides, so the same bits."""
    before = pynn.get_num_threads()
    pynn.set_num_threads(1)
    client.run(pynn.set_num_threads, 1)
    yield
    pynn.set_num_threads(before)


def _trials(result):
    """Each trial's (index, params, score, best epoch, epochs run, threads) in trial order."""
    return [(r["trial"], r["params"], r["score"], r["best_epoch"], r["epochs_run"], r["threads"])
            for r in sorted(result.results, key=lambda r: r["trial"])]


@pytest.mark.parametrize("method", ["grid", "random"])
def test_search_on_dask_equals_n_jobs_1(client, small_digits, method):
    """The must-show: the same trial scores as n_jobs=1 (and the same refit winner)."""
    X, y = small_digits
    if method == "grid":
        def run(**options):
            return grid_search(X, y, {"lr": [3e-3, 3e-2], "batch_size": [32, 64]}, seed=2,
                               **FAST, **options)
    else:
        space = {"lr": LogUniform(1e-3, 1e-1), "dropout": Uniform(0.0, 0.3)}

        def run(**options):
            return random_search(X, y, space, 4, seed=2, **FAST, **options)
    serial = run(n_jobs=1, threads_per_trial=1)
    with joblib.parallel_config(backend="dask"):
        on_dask = run(n_jobs=-1)
    assert serial.workers == 1 and on_dask.workers == 2
    assert on_dask.threads_per_trial == 1  # each worker's share: OMP_NUM_THREADS=1 (the nanny)
    assert _trials(on_dask) == _trials(serial)
    assert [r["trial"] for r in on_dask.results] == [r["trial"] for r in serial.results]
    np.testing.assert_array_equal(on_dask.model.predict(X), serial.model.predict(X))


def test_cluster_workers_take_their_own_share_of_threads(client, small_digits):
    """The caller's thread count says nothing about the cluster's machines: a caller at 4 threads
    running 2 trials would have asked each worker for 2; each runs at its own share, 1."""
    before = pynn.get_num_threads()
    pynn.set_num_threads(4)
    try:
        with joblib.parallel_config(backend="dask"):
            result = random_search(*small_digits, {"lr": [1e-2]}, 2, refit=False, **FAST)
        assert result.workers == 2  # n_jobs=None inside parallel_config: every worker
        assert [r["threads"] for r in result.results] == [1, 1]
        assert pynn.get_num_threads() == 4  # the caller keeps its own count
        # an explicit count still goes to every trial, on any backend
        with joblib.parallel_config(backend="dask"):
            pinned = random_search(*small_digits, {"lr": [1e-2]}, 2, refit=False,
                                   threads_per_trial=2, **FAST)
        assert [r["threads"] for r in pinned.results] == [2, 2]
    finally:
        pynn.set_num_threads(before)


def test_a_worker_running_two_trials_at_once_splits_its_cores(small_digits):
    """One worker process with two task threads and OMP_NUM_THREADS=2: one thread per trial,
    whatever the caller's count (at 4, the caller's split would have been 2)."""
    before = pynn.get_num_threads()
    pynn.set_num_threads(4)
    try:
        with _cluster(n_workers=1, threads_per_worker=2, env={"OMP_NUM_THREADS": "2"}), \
                joblib.parallel_config(backend="dask"):
            result = random_search(*small_digits, {"lr": [1e-2, 3e-2]}, 2, refit=False, **FAST)
    finally:
        pynn.set_num_threads(before)
    assert result.workers == 2
    assert [r["threads"] for r in result.results] == [1, 1]
    assert result.threads_per_trial == 1


def test_outside_a_dask_worker_a_process_runs_one_trial_at_a_time(monkeypatch):
    """A Ray or loky worker process (here: this one, distributed loaded but no Dask worker)
    runs one trial at a time: its share is its whole default count (OMP_NUM_THREADS here)."""
    from pynn.search._parallel import cluster_worker_threads

    assert "distributed" in sys.modules
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cluster_worker_threads() == 3


def test_the_holdout_travels_once_not_inside_every_task(client, small_digits):
    """Dask warns when a task graph carries more than a threshold of data: with the threshold
    below the holdout's size, a search whose tasks embedded the data would warn (and fail this
    file's no_warnings); the holdout's arrays are scattered to the workers instead, once per
    search."""
    X, y = small_digits
    assert X.astype(np.float32).nbytes > 64 * 1024  # the threshold is below the data
    with dask.config.set({"distributed.admin.large-graph-warning-threshold": "64kB"}), \
            joblib.parallel_config(backend="dask"):
        result = random_search(X, y, {"lr": [3e-3, 1e-2, 3e-2, 1e-1]}, 4, refit=False, **FAST)
    assert len(result) == 4


def _cv_results(search):
    """cv_results_ without the timings (the only entries that may differ between runs)."""
    return {k: v for k, v in search.cv_results_.items() if not k.endswith("_time")}


def _assert_same_search(on_dask, serial, X):
    a, b = _cv_results(on_dask), _cv_results(serial)
    assert a.keys() == b.keys()
    for key in a:
        if key == "params":
            assert a[key] == b[key]
        else:
            np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)
    assert on_dask.best_params_ == serial.best_params_
    assert on_dask.best_score_ == serial.best_score_
    np.testing.assert_array_equal(on_dask.predict(X), serial.predict(X))


def test_grid_search_cv_of_the_classifier_on_dask_equals_n_jobs_1(client, one_thread):
    GridSearchCV = pytest.importorskip("sklearn.model_selection").GridSearchCV
    from pynn.sklearn import MLPClassifier

    X, y = load_digits()
    X, y = X[:300] / 16.0, y[:300]
    grid = {"hidden_layer_sizes": [(16,), (32,)], "learning_rate_init": [3e-3, 3e-2]}

    def search(n_jobs):
        estimator = MLPClassifier(max_iter=5, random_state=0)
        return GridSearchCV(estimator, grid, cv=3, n_jobs=n_jobs, return_train_score=True)
    serial = search(1).fit(X, y)
    with joblib.parallel_config(backend="dask"):
        on_dask = search(-1).fit(X, y)
    assert serial.best_score_ > 0.5  # a real search, not two equally broken ones
    _assert_same_search(on_dask, serial, X)


def test_randomized_search_cv_of_the_regressor_on_dask_equals_n_jobs_1(client, one_thread):
    RandomizedSearchCV = pytest.importorskip("sklearn.model_selection").RandomizedSearchCV
    from pynn.sklearn import MLPRegressor

    rng = np.random.default_rng(0)
    X = rng.standard_normal((240, 6))
    y = X @ rng.standard_normal(6) + 0.5 * np.sin(3 * X[:, 0])
    space = {"learning_rate_init": loguniform(1e-3, 3e-2), "alpha": loguniform(1e-5, 1e-2),
             "batch_norm": [False, True]}

    def search(n_jobs):
        estimator = MLPRegressor(hidden_layer_sizes=(16,), max_iter=8, random_state=1)
        return RandomizedSearchCV(estimator, space, n_iter=4, cv=3, random_state=0,
                                  n_jobs=n_jobs)
    serial = search(1).fit(X, y)
    with joblib.parallel_config(backend="dask"):
        on_dask = search(-1).fit(X, y)
    _assert_same_search(on_dask, serial, X)


def _doc_blocks():
    """docs/cluster_search.md's Python blocks, each with whether it runs here (a block after a
    ``<!-- not run: ... -->`` line needs a real cluster or a missing package: compiled only)."""
    text = DOC.read_text()
    return [(bool(skip), code) for skip, code in
            re.findall(r"(<!-- not run:[^>]*-->\n)?```python\n(.*?)```", text, re.S)]


def test_the_docs_code_runs(client, tmp_path, monkeypatch):
    """Every Python block of docs/cluster_search.md compiles; those that need no real cluster
    run in order in one namespace, the scheduler's placeholder address pointed at this test's
    LocalCluster (the first block starts a LocalCluster of its own, as a script would)."""
    pytest.importorskip("sklearn")  # the page's GridSearchCV blocks
    blocks = _doc_blocks()
    assert len(blocks) >= 4 and sum(not skip for skip, _ in blocks) >= 3
    monkeypatch.chdir(tmp_path)
    # the first block's LocalCluster asks for Dask's default dashboard port, which another
    # cluster on this machine may hold: Dask then says so and takes another port
    warnings.filterwarnings("ignore", message="Port 8787 is already in use", category=UserWarning)
    namespace = {"__name__": "__main__"}
    for skip, code in blocks:
        compiled = compile(code.replace(DOC_ADDRESS, client.scheduler.address), str(DOC), "exec")
        if not skip:
            exec(compiled, namespace)
    result, serial = namespace["result"], namespace["serial"]
    assert _trials(result) == _trials(serial)
    assert namespace["search"].best_score_ > 0.5
