"""pynn.sklearn: scikit-learn's own estimator checks, the same numbers as scikit-learn's MLP for
the same settings, the ecosystem (Pipeline, GridSearchCV, clone, joblib) and pynn's extras."""
import functools
import io
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
joblib = pytest.importorskip("joblib")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_diabetes, load_iris  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkMLPRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import pynn  # noqa: E402
from pynn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


# ------------------------------------------------------------------ scikit-learn's own checks
# max_iter=100 is what scikit-learn's own test suite uses for its MLPs (its instance
# generator); no check is skipped or expected to fail (expected_failed_checks is empty).
@parametrize_with_checks([MLPClassifier(max_iter=100), MLPRegressor(max_iter=100)],
                         expected_failed_checks=lambda est: {})
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# ------------------------------------------------------------------ data
@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return (X - X.mean(0)) / X.std(0), y


@pytest.fixture(scope="module")
def diabetes():
    X, y = load_diabetes(return_X_y=True)
    return X / X.std(0), (y - y.mean()) / y.std()


def _fit_both(sk_class, pynn_class, X, y, sample_weight=None, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = pynn_class(**params).fit(X, y, sample_weight=sample_weight)
        theirs = sk_class(**params).fit(X, y, sample_weight=sample_weight)
    return ours, theirs


def _assert_same_fit(ours, theirs, rtol=1e-9, atol=1e-11):
    """The same trajectory as scikit-learn's, to float64 rounding."""
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.t_ == theirs.t_ if hasattr(theirs, "t_") else True
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
    np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=rtol)
    for name in ("loss_curve_", "validation_scores_", "best_loss_", "best_validation_score_"):
        if hasattr(theirs, name):
            mine, ref = getattr(ours, name), getattr(theirs, name)
            if ref is None:
                assert mine is None, name
            else:
                np.testing.assert_allclose(mine, ref, rtol=rtol, err_msg=name)
    assert ours.out_activation_ == theirs.out_activation_
    assert ours.n_layers_ == theirs.n_layers_ and ours.n_outputs_ == theirs.n_outputs_


# ------------------------------------------------------------------ same numbers as scikit-learn
SOLVER_SETTINGS = [
    dict(solver="sgd"),
    dict(solver="sgd", nesterovs_momentum=False, momentum=0.5),
    dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.05),
    dict(solver="sgd", learning_rate="adaptive", tol=0.02, n_iter_no_change=2),
    dict(solver="adam"),
    dict(solver="adam", early_stopping=True, validation_fraction=0.2),
    dict(solver="adam", batch_size=16, shuffle=False),
    dict(solver="lbfgs"),
]


@pytest.mark.parametrize("settings", SOLVER_SETTINGS, ids=lambda s: "-".join(map(str, s.values())))
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample_weight"])
def test_classifier_equals_sklearn(iris, settings, weighted):
    X, y = iris
    sw = np.random.default_rng(0).uniform(0.2, 2.0, len(y)) if weighted else None
    params = dict(hidden_layer_sizes=(12, 6), max_iter=25, random_state=3,
                  learning_rate_init=0.01, alpha=1e-3)
    params.update(settings)
    ours, theirs = _fit_both(SkMLPClassifier, MLPClassifier, X, y, sw, **params)
    _assert_same_fit(ours, theirs)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-8,
                               atol=1e-12)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    if settings.get("learning_rate") == "adaptive":  # the schedule did divide the rate
        assert ours._optimizer.param_groups[0]["lr"] < params["learning_rate_init"]


@pytest.mark.parametrize("target", ["binary", "multilabel", "strings"])
def test_classifier_targets_equal_sklearn(iris, target):
    X, y = iris
    if target == "binary":
        y = y == 1
    elif target == "multilabel":
        y = np.c_[y == 0, y == 1, y == 2].astype(int)
        y[::3, 0] = 1
    else:
        y = np.array(["setosa", "versicolor", "virginica"])[y]
    ours, theirs = _fit_both(SkMLPClassifier, MLPClassifier, X, y, hidden_layer_sizes=(8,),
                             max_iter=20, random_state=0, learning_rate_init=0.01)
    _assert_same_fit(ours, theirs)
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-8)


@pytest.mark.parametrize("settings", [dict(solver="sgd", learning_rate_init=0.01),
                                      dict(solver="adam", early_stopping=True),
                                      dict(solver="lbfgs"),
                                      dict(solver="adam", loss="poisson")],
                         ids=["sgd", "adam-early", "lbfgs", "poisson"])
@pytest.mark.parametrize("n_outputs", [1, 2])
def test_regressor_equals_sklearn(diabetes, settings, n_outputs):
    X, y = diabetes
    if settings.get("loss") == "poisson":
        y = np.exp(y / 2)  # positive counts-like targets
    if n_outputs == 2:
        y = np.c_[y, y ** 2 / 4]
    sw = np.random.default_rng(1).uniform(0.5, 1.5, len(X))
    params = dict(hidden_layer_sizes=(10,), max_iter=20, random_state=2)
    params.update(settings)
    ours, theirs = _fit_both(SkMLPRegressor, MLPRegressor, X, y, sw, **params)
    _assert_same_fit(ours, theirs)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-8, atol=1e-10)
    assert ours.predict(X).shape == theirs.predict(X).shape


def test_partial_fit_and_warm_start_equal_sklearn(iris):
    X, y = iris
    params = dict(hidden_layer_sizes=(8,), random_state=0, solver="sgd", learning_rate_init=0.02)
    ours, theirs = MLPClassifier(**params), SkMLPClassifier(**params)
    for start in range(0, 150, 50):
        part = slice(start, start + 50)
        ours.partial_fit(X[part], y[part], classes=[0, 1, 2])
        theirs.partial_fit(X[part], y[part], classes=[0, 1, 2])
    _assert_same_fit(ours, theirs)
    with pytest.raises(ValueError, match="classes"):
        MLPClassifier().partial_fit(X, y)  # the first call needs every class

    params.update(warm_start=True, max_iter=5)
    ours, theirs = MLPClassifier(**params), SkMLPClassifier(**params)
    for _ in range(3):  # the same calls on both
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ours.fit(X, y)
            theirs.fit(X, y)
    _assert_same_fit(ours, theirs)
    assert ours.t_ == 3 * 5 * len(X)


def test_partial_fit_is_for_stochastic_solvers_only():
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")
    assert hasattr(MLPRegressor(solver="adamw"), "partial_fit")


# ------------------------------------------------------------------ dtypes and fitted state
@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_float32_stays_float32(iris, cls):
    X, y = iris
    X32 = X.astype(np.float32)
    est = cls(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X32, y)
    assert est.model_.dtype == np.float32
    assert all(c.dtype == np.float32 for c in est.coefs_ + est.intercepts_)
    out = est.predict_proba(X32) if cls is MLPClassifier else est.predict(X32)
    assert out.dtype == np.float32
    # float64 (and integer) input trains a float64 network, scikit-learn's rule
    est64 = cls(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, y)
    assert est64.model_.dtype == np.float64
    assert est.model_.dtype == np.float32  # a later float64 predict does not change it
    est.predict(X)


def test_float32_close_to_float64(iris):
    X, y = iris
    a = MLPClassifier(hidden_layer_sizes=(8,), max_iter=10, random_state=0,
                      solver="sgd").fit(X, y)
    b = MLPClassifier(hidden_layer_sizes=(8,), max_iter=10, random_state=0,
                      solver="sgd").fit(X.astype(np.float32), y)
    for c64, c32 in zip(a.coefs_, b.coefs_):
        np.testing.assert_allclose(c32, c64, rtol=1e-4, atol=1e-5)


def test_coefs_are_views_of_the_model(iris):
    X, y = iris
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, y)
    assert est.coefs_[0].shape == (4, 8) and est.coefs_[1].shape == (8, 3)
    np.testing.assert_array_equal(est.coefs_[0], est.model_[0].weight.data.T)
    before = est.predict_proba(X)
    est.coefs_[1][...] = 0
    est.intercepts_ = [est.intercepts_[0], np.array([5.0, 0.0, 0.0])]
    np.testing.assert_allclose(est.predict_proba(X)[:, 0], 1 / (1 + 2 * np.exp(-5.0)))
    assert not np.allclose(before, est.predict_proba(X))
    with pytest.raises(ValueError, match=r"coefs_\[0\] must have shape \(4, 8\)"):
        est.coefs_ = [np.zeros((3, 8)), np.zeros((8, 3))]


# ------------------------------------------------------------------ ecosystem
def test_pipeline_and_grid_search(iris):
    X, y = iris
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=30, random_state=0))
    search = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(4,), (16,)],
                                 "mlpclassifier__solver": ["lbfgs", "adam"]}, cv=3)
    search.fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_score_ > 0.9
    best = search.best_estimator_[-1]
    assert isinstance(best, MLPClassifier)
    assert best.hidden_layer_sizes == search.best_params_["mlpclassifier__hidden_layer_sizes"]


def test_clone_copies_parameters_not_fit(iris):
    X, y = iris
    est = MLPClassifier(hidden_layer_sizes=(5,), dropout=0.1, batch_norm=True, l1=1e-4,
                        lr_scheduler=functools.partial(pynn.optim.StepLR, step_size=3),
                        class_weight="balanced", random_state=0, max_iter=5).fit(X, y)
    copy = clone(est)
    assert copy.get_params().keys() == est.get_params().keys()
    assert copy.get_params()["dropout"] == 0.1 and copy.get_params()["batch_norm"] is True
    assert not hasattr(copy, "_model")
    with pytest.raises(sklearn.exceptions.NotFittedError):
        copy.predict(X)
    copy.fit(X, y)
    np.testing.assert_allclose(copy.predict_proba(X), est.predict_proba(X))


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_joblib_round_trip(iris, solver):
    X, y = iris
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0, solver=solver,
                        batch_norm=solver != "lbfgs").fit(X, y)
    buf = io.BytesIO()
    joblib.dump(est, buf)
    buf.seek(0)
    loaded = joblib.load(buf)
    np.testing.assert_array_equal(loaded.predict_proba(X), est.predict_proba(X))
    np.testing.assert_array_equal(loaded.coefs_[0], est.coefs_[0])
    if solver != "lbfgs":  # training continues from the same optimizer state
        est.partial_fit(X, y)
        loaded.partial_fit(X, y)
        np.testing.assert_allclose(loaded.predict_proba(X), est.predict_proba(X), rtol=1e-12)


# ------------------------------------------------------------------ weights
def test_sample_weight_zero_equals_dropping_samples(iris):
    X, y = iris
    sw = np.ones(len(y))
    sw[::4] = 0
    params = dict(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=30, random_state=0)
    a = MLPClassifier(**params).fit(X, y, sample_weight=sw)
    b = MLPClassifier(**params).fit(X[sw > 0], y[sw > 0])
    for ca, cb in zip(a.coefs_, b.coefs_):
        np.testing.assert_allclose(ca, cb, rtol=1e-7, atol=1e-9)


def test_class_weight_is_a_sample_weight(iris):
    X, y = iris
    params = dict(hidden_layer_sizes=(6,), max_iter=10, random_state=0)
    weights = {0: 1.0, 1: 3.0, 2: 0.5}
    a = MLPClassifier(class_weight=weights, **params).fit(X, y)
    b = MLPClassifier(**params).fit(X, y, sample_weight=np.array([1.0, 3.0, 0.5])[y])
    for ca, cb in zip(a.coefs_, b.coefs_):
        np.testing.assert_allclose(ca, cb, rtol=1e-12)
    # "balanced": n_samples / (n_classes * count), scikit-learn's formula
    Xs, ys = X[:110], y[:110]  # 50, 50, 10 samples
    c = MLPClassifier(class_weight="balanced", **params).fit(Xs, ys)
    counts = np.bincount(ys)
    d = MLPClassifier(**params).fit(Xs, ys, sample_weight=(110 / (3 * counts))[ys])
    np.testing.assert_allclose(c.coefs_[0], d.coefs_[0], rtol=1e-12)
    with pytest.raises(ValueError, match="class_weight has labels not in classes_"):
        MLPClassifier(class_weight={7: 2.0}, **params).fit(X, y)


# ------------------------------------------------------------------ pynn's extras
@pytest.mark.parametrize("extra", [
    dict(solver="rmsprop", learning_rate_init=0.01),
    dict(solver="adagrad", learning_rate_init=0.1),
    dict(solver="adamw", alpha=1e-2, learning_rate_init=0.01),
    dict(batch_norm=True),
    dict(dropout=0.2),
    dict(activation="leaky_relu"),
    dict(activation="elu"),
    dict(activation="tanh", batch_norm=True, dropout=0.1, solver="sgd", learning_rate_init=0.05),
], ids=lambda e: "-".join(map(str, e.values())))
def test_extras_learn_iris(iris, extra):
    X, y = iris
    params = dict(hidden_layer_sizes=(16,), max_iter=150, random_state=0,
                  learning_rate_init=0.01)
    params.update(extra)
    est = MLPClassifier(**params).fit(X, y)
    assert est.score(X, y) >= 0.9
    assert est.loss_curve_[-1] < est.loss_curve_[0]


def test_square_and_step_activations_build_those_layers(iris):
    X, y = iris
    for name, layer in [("square", pynn.nn.Square), ("step", pynn.nn.Step)]:
        est = MLPClassifier(hidden_layer_sizes=(4,), activation=name, max_iter=2,
                            random_state=0).fit(X, y)
        assert isinstance(est.model_[1], layer)
        h = est.model_[1].forward(X @ est.coefs_[0] + est.intercepts_[0])
        expected = (X @ est.coefs_[0] + est.intercepts_[0])
        expected = expected ** 2 if name == "square" else (expected > 0).astype(float)
        np.testing.assert_allclose(h, expected)


def test_l1_zeroes_more_weights_than_l2(diabetes):
    X, y = diabetes
    params = dict(hidden_layer_sizes=(20,), max_iter=60, random_state=0, solver="sgd",
                  learning_rate_init=0.01, alpha=0.0)
    plain = MLPRegressor(**params).fit(X, y)
    sparse = MLPRegressor(l1=1e-2, **params).fit(X, y)
    small = lambda est: np.mean(np.abs(est.coefs_[0]) < 1e-2)  # noqa: E731
    assert small(sparse) > small(plain) + 0.2
    # the recorded loss includes the penalty: l1 * sum |W|
    sw = np.abs(np.concatenate([c.ravel() for c in sparse.coefs_])).sum()
    pred = sparse.predict(X)
    assert sparse.loss_curve_[-1] > 0.5 * np.mean((pred - y) ** 2) + 0.5 * 1e-2 * sw


def test_lr_scheduler_and_validation_loss_curve(iris):
    X, y = iris
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=6, random_state=0,
                        early_stopping=True, n_iter_no_change=100, learning_rate_init=0.01,
                        lr_scheduler=functools.partial(pynn.optim.StepLR, step_size=2,
                                                       gamma=0.5)).fit(X, y)
    assert est._optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5 ** 3)
    assert len(est.validation_loss_curve_) == len(est.validation_scores_) == est.n_iter_ == 6
    assert all(np.isfinite(est.validation_loss_curve_))
    assert MLPClassifier(max_iter=2).fit(X, y).validation_loss_curve_ is None


def test_bad_parameters_name_themselves(iris):
    X, y = iris
    with pytest.raises(ValueError, match="solver"):
        MLPClassifier(solver="newton").fit(X, y)
    with pytest.raises(ValueError, match="dropout"):
        MLPClassifier(dropout=1.0).fit(X, y)
    with pytest.raises(ValueError, match="dropout needs a stochastic solver"):
        MLPClassifier(dropout=0.5, solver="lbfgs").fit(X, y)
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        MLPClassifier(hidden_layer_sizes=(3, 0)).fit(X, y)
    est = MLPClassifier(hidden_layer_sizes=(3,), max_iter=2).fit(X, y)
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        est.set_params(hidden_layer_sizes=(4,), warm_start=True).fit(X, y)
    # sparse X is taken (test_sparse.py); non-finite stored values are still refused
    from scipy.sparse import csr_matrix

    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        MLPClassifier().fit(csr_matrix(bad), y)


def test_saved_model_predicts_the_same(iris, tmp_path):
    X, y = iris
    est = MLPClassifier(hidden_layer_sizes=(8,), batch_norm=True, max_iter=5,
                        random_state=0).fit(X.astype(np.float32), y)
    pynn.save(est.model_, tmp_path / "m.npz")
    logits = pynn.load(tmp_path / "m.npz").predict(X.astype(np.float32))
    np.testing.assert_array_equal(est.classes_[logits.argmax(1)], est.predict(X.astype(np.float32)))


def _initial_weights(random_state, units, factor=6.0):
    """scikit-learn's initialization, as documented: per layer, uniform weights then biases in
    +-sqrt(factor / (fan_in + fan_out)), drawn from RandomState(random_state) in that order."""
    rs = np.random.RandomState(random_state)
    coefs, intercepts = [], []
    for fan_in, fan_out in zip(units[:-1], units[1:]):
        bound = np.sqrt(factor / (fan_in + fan_out))
        coefs.append(rs.uniform(-bound, bound, (fan_in, fan_out)))
        intercepts.append(rs.uniform(-bound, bound, fan_out))
    return coefs, intercepts


def test_initial_weights_are_sklearns_draw(iris):
    X, y = iris
    est = MLPClassifier(hidden_layer_sizes=(6,), random_state=5, learning_rate_init=1e-12,
                        max_iter=1).fit(X, y)  # a step too small to move the weights
    coefs, intercepts = _initial_weights(5, [4, 6, 3])
    for got, want in zip(est.coefs_ + est.intercepts_, coefs + intercepts):
        np.testing.assert_allclose(got, want, rtol=1e-9)


@pytest.mark.parametrize("clip", ["clip_grad_value", "clip_grad_norm"])
def test_gradient_clipping_clips_the_step(iris, clip):
    X, y = iris
    lr = 0.1
    params = dict(hidden_layer_sizes=(6,), solver="sgd", momentum=0.0, batch_size=len(X),
                  learning_rate_init=lr, random_state=0, shuffle=False, alpha=0.0)
    plain = MLPClassifier(**params).partial_fit(X, y, classes=[0, 1, 2])  # one full-batch step
    clipped = MLPClassifier(**params, **{clip: 0.05}).partial_fit(X, y, classes=[0, 1, 2])
    coefs, intercepts = _initial_weights(0, [4, 6, 3])
    start = coefs + intercepts
    grads = [(w - p) / lr for p, w in zip(plain.coefs_ + plain.intercepts_, start)]
    if clip == "clip_grad_value":
        assert max(np.abs(g).max() for g in grads) > 0.05  # the clip binds
        expected = [w - lr * np.clip(g, -0.05, 0.05) for w, g in zip(start, grads)]
    else:
        total = np.sqrt(sum((g ** 2).sum() for g in grads))
        assert total > 0.05  # the clip binds
        expected = [w - lr * g * 0.05 / (total + 1e-6) for w, g in zip(start, grads)]
    for got, want in zip(clipped.coefs_ + clipped.intercepts_, expected):
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-10)


def test_unweighted_classification_batches_take_the_compiled_step(iris, monkeypatch):
    from pynn.nn import train_step

    runs = []  # the steps the compiled program ran: one per run, count per run_batches
    original = train_step.TrainStep.run
    original_batches = train_step.TrainStep.run_batches

    def run_batches(self, X, y, count, *a, **k):
        values = original_batches(self, X, y, count, *a, **k)
        if values is not None:
            runs.extend([1] * count)
        return values

    monkeypatch.setattr(train_step.TrainStep, "run",
                        lambda self, *a, **k: runs.append(1) or original(self, *a, **k))
    monkeypatch.setattr(train_step.TrainStep, "run_batches", run_batches)
    X, y = iris
    X = X.astype(np.float32)
    params = dict(hidden_layer_sizes=(8,), max_iter=3, batch_size=50, random_state=0)
    MLPClassifier(**params).fit(X, y)
    assert len(runs) == 3 * 3  # every batch of every epoch: compiled
    runs.clear()
    MLPClassifier(**params).fit(X, y, sample_weight=np.ones(len(y)))  # weighted: eager lines
    MLPClassifier(clip_grad_norm=1.0, **params).fit(X, y)
    MLPRegressor(**params).fit(X, y.astype(float))  # scikit-learn's scaling of the squared error
    assert runs == []


def test_random_state_not_pynns_global_seed_drives_the_estimator(iris):
    """random_state is the estimator's only source of randomness (scikit-learn's contract):
    fitting leaves pynn.manual_seed's stream where it was, and the stream does not change the
    fit."""
    X, y = iris
    params = dict(hidden_layer_sizes=(6,), dropout=0.1, max_iter=3, random_state=0)
    pynn.manual_seed(3)
    expected = pynn.nn.Dense(4, 3).weight.data.copy()
    pynn.manual_seed(3)
    first = MLPClassifier(**params).fit(X, y)
    np.testing.assert_array_equal(pynn.nn.Dense(4, 3).weight.data, expected)
    pynn.manual_seed(4)
    second = MLPClassifier(**params).fit(X, y)
    np.testing.assert_array_equal(first.coefs_[0], second.coefs_[0])
