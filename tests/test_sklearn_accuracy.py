"""pynn.sklearn scores within noise of scikit-learn's MLP with the same settings, on datasets no
pynn setting was tuned on (tools/sklearn_accuracy.py prints the full table)."""
import importlib.util
import os

import pytest

import pynn

pytest.importorskip("sklearn")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location(
    "sklearn_accuracy", os.path.join(ROOT, "tools", "sklearn_accuracy.py"))
accuracy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(accuracy)


@pytest.fixture
def one_thread():
    """Both estimators single-threaded: the scores do not depend on it, and on a machine
    shared with other work two spinning thread pools (pynn's OpenMP team, numpy's OpenBLAS)
    made these small fits 10-20x slower."""
    from threadpoolctl import threadpool_limits

    before = pynn.get_num_threads()
    pynn.set_num_threads(1)
    with threadpool_limits(1, user_api="blas"):
        yield
    pynn.set_num_threads(before)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", accuracy.DATASETS)
def test_scores_within_sklearns_seed_noise(name):
    # 5 splits; scikit-learn's spread over 5 random states on the first split
    result = accuracy.compare(name, n_splits=5, n_seeds=5, seed_splits=1)
    diff = result["pynn"].mean() - result["sklearn"].mean()
    assert abs(diff) <= accuracy.tolerance(result), (name, result)
    # and a real fit, not a constant predictor, on every split
    floor = 0.8 if result["metric"] == "accuracy" else 0.1
    assert result["pynn"].min() > floor, result["pynn"]
