"""predict_proba: the loss's reading of the logits (softmax / sigmoid) against torch/scipy."""
import numpy as np
import pytest
from scipy.special import expit, softmax

import pynn
from pynn.nn import BCEWithLogitsLoss, CrossEntropyLoss, Dense, MSELoss, Sequential
from pynn.optim import SGD


@pytest.mark.parametrize("backend_name", ["numpy", "cython"])
def test_probabilities_of_the_losses(backend_name, dtype):
    Z = (20 * np.random.default_rng(0).standard_normal((17, 5))).astype(dtype)
    Z[0] = [1000, -1000, 0, 5, 5]  # extreme logits stay finite and exact
    p = CrossEntropyLoss(backend=backend_name).probabilities(Z)
    q = BCEWithLogitsLoss(backend=backend_name).probabilities(Z)
    assert p.dtype == dtype and q.dtype == dtype
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(p, softmax(Z.astype(np.float64), axis=1), rtol=rtol, atol=1e-30)
    np.testing.assert_allclose(q, expit(Z.astype(np.float64)), rtol=rtol, atol=1e-30)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=rtol)


def test_matches_torch():
    torch = pytest.importorskip("torch")
    Z = np.random.default_rng(1).standard_normal((9, 4))
    np.testing.assert_allclose(CrossEntropyLoss().probabilities(Z),
                               torch.softmax(torch.from_numpy(Z), 1).numpy(), rtol=1e-12)
    np.testing.assert_allclose(BCEWithLogitsLoss().probabilities(Z),
                               torch.sigmoid(torch.from_numpy(Z)).numpy(), rtol=1e-12)


def _trainer(loss, k):
    model = Sequential(Dense(6, k, seed=0))
    return pynn.Trainer(model, loss, SGD(model.parameters(), lr=0.1))


def test_trainer_predict_proba():
    X = np.random.default_rng(2).standard_normal((30, 6)).astype(np.float32)
    t = _trainer(CrossEntropyLoss(), 3)
    np.testing.assert_allclose(t.predict_proba(X, batch_size=7),
                               softmax(t.predict(X).astype(np.float64), axis=1), rtol=1e-5)
    t = _trainer(BCEWithLogitsLoss(), 2)
    np.testing.assert_allclose(t.predict_proba(X), expit(t.predict(X).astype(np.float64)),
                               rtol=1e-5)
    with pytest.raises(ValueError, match="MSELoss is not a classification loss"):
        _trainer(MSELoss(), 1).predict_proba(X)
