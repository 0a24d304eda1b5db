"""Topic 1. A perceptron is a linear model; XOR needs a hidden layer.

One Dense unit followed by a sigmoid and trained with binary cross-entropy is logistic
regression: gradient descent in pynn reaches the same coefficients as the Newton (IRLS) fit
written below, and as scikit-learn's LogisticRegression when it is installed. (pynn's
``BCEWithLogitsLoss`` applies the sigmoid inside the loss, where it is numerically stable.)

XOR is not linearly separable: the best linear unit on its four points is w = 0, b = 0, with
loss log 2 and no point classified with confidence; one hidden layer of four tanh units
classifies all four.
"""
import argparse
import math
import pathlib

import numpy as np

import pynn
from pynn import nn


def two_blobs(n_per_class, seed=0):
    """Two overlapping Gaussian clouds in the plane (labels 0 and 1): a finite MLE exists."""
    rng = np.random.default_rng(seed)
    X0 = rng.normal([-1.0, -0.5], 1.0, (n_per_class, 2))
    X1 = rng.normal([1.0, 0.8], 1.0, (n_per_class, 2))
    X = np.vstack([X0, X1])
    y = np.repeat([0.0, 1.0], n_per_class)
    return X, y


def irls_logistic(X, y, iterations=25):
    """Logistic regression by Newton's method (iteratively reweighted least squares).

    Returns (w, b). Each step solves (X1' S X1) delta = X1' (y - p) with X1 = [X, 1] and
    S = diag(p (1 - p)); the log-likelihood is concave, so Newton converges quadratically.
    """
    X1 = np.hstack([X, np.ones((len(X), 1))])
    theta = np.zeros(X1.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-X1 @ theta))
        hessian = X1.T @ (X1 * (p * (1 - p))[:, None])
        theta += np.linalg.solve(hessian, X1.T @ (y - p))
    return theta[:-1], theta[-1]


def sklearn_logistic(X, y):
    """scikit-learn's unpenalized fit, or None without scikit-learn (an optional extra)."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        return None
    clf = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(X, y)
    return clf.coef_[0], clf.intercept_[0]


def train(model, X, y, epochs, lr, momentum=0.9, optimizer="sgd"):
    """Full-batch training with pynn's Trainer; returns the final training loss."""
    if optimizer == "sgd":
        opt = pynn.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    else:
        opt = pynn.optim.Adam(model.parameters(), lr=lr)
    trainer = pynn.Trainer(model, nn.BCEWithLogitsLoss(), opt)
    history = trainer.fit(X, y, epochs=epochs, batch_size=len(X), shuffle=False, verbose=0,
                          seed=0)
    return history.history["loss"][-1], trainer


def run(out_dir, quick=False):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    # -- the perceptron is logistic regression
    X, y = two_blobs(100 if quick else 200)
    perceptron = nn.Sequential(nn.Dense(2, 1, dtype=np.float64, seed=0))
    train(perceptron, X, y, epochs=300 if quick else 600, lr=0.5)
    w_pynn = perceptron.layers[0].weight.data[0].copy()
    b_pynn = float(perceptron.layers[0].bias.data[0])
    w_irls, b_irls = irls_logistic(X, y)
    theta_pynn = np.append(w_pynn, b_pynn)
    theta_irls = np.append(w_irls, b_irls)
    diff_irls = float(np.abs(theta_pynn - theta_irls).max())
    sk = sklearn_logistic(X, y)
    theta_sk = None if sk is None else np.append(*sk)
    diff_sk = None if sk is None else float(np.abs(theta_pynn - theta_sk).max())

    # -- XOR: a linear unit cannot, one hidden layer can
    X_xor = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y_xor = np.array([0.0, 1.0, 1.0, 0.0])
    linear = nn.Sequential(nn.Dense(2, 1, dtype=np.float64, seed=0))
    linear_loss, linear_trainer = train(linear, X_xor, y_xor, epochs=2000, lr=0.5)
    hidden = nn.Sequential(nn.Dense(2, 4, dtype=np.float64, seed=1), nn.Tanh(),
                           nn.Dense(4, 1, dtype=np.float64, seed=2))
    hidden_loss, hidden_trainer = train(hidden, X_xor, y_xor, epochs=2000, lr=0.05,
                                        optimizer="adam")
    linear_acc = linear_trainer.evaluate(X_xor, y_xor)["accuracy"]
    hidden_acc = hidden_trainer.evaluate(X_xor, y_xor)["accuracy"]

    print(f"perceptron (pynn, gradient descent): w = {w_pynn.round(6)}, b = {b_pynn:.6f}")
    print(f"logistic regression (Newton/IRLS):   w = {w_irls.round(6)}, b = {b_irls:.6f}"
          f"   max |difference| = {diff_irls:.2e}")
    if sk is not None:
        print(f"scikit-learn LogisticRegression:     w = {sk[0].round(6)}, b = {sk[1]:.6f}"
              f"   max |difference| = {diff_sk:.2e}")
    print(f"XOR, one linear unit: loss {linear_loss:.6f} (log 2 = {math.log(2):.6f}), "
          f"accuracy {linear_acc:.2f}")
    print(f"XOR, one hidden layer of 4 tanh units: loss {hidden_loss:.2e}, "
          f"accuracy {hidden_acc:.2f}")
    print("=> the perceptron is logistic regression; XOR needs the hidden layer.")

    _plot(out_dir / "01_perceptron.png", X, y, (w_pynn, b_pynn), (w_irls, b_irls), sk,
          X_xor, y_xor, linear, hidden, linear_loss, hidden_loss)
    return {"theta_pynn": theta_pynn, "theta_irls": theta_irls, "theta_sklearn": theta_sk,
            "diff_irls": diff_irls, "diff_sklearn": diff_sk, "xor_linear_loss": linear_loss,
            "xor_linear_accuracy": linear_acc, "xor_hidden_loss": hidden_loss,
            "xor_hidden_accuracy": hidden_acc}


def _plot(path, X, y, fit_pynn, fit_irls, fit_sk, X_xor, y_xor, linear, hidden, linear_loss,
          hidden_loss):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4.2), layout="constrained")
    ax = fig.add_subplot(1, 3, 1)
    ax.scatter(*X[y == 0].T, s=10, c="C0", alpha=0.6, label="class 0")
    ax.scatter(*X[y == 1].T, s=10, c="C3", alpha=0.6, label="class 1")
    xs = np.linspace(X[:, 0].min(), X[:, 0].max(), 2)
    fits = [(fit_pynn, "pynn Dense + sigmoid + BCE", "k", "-", 3),
            (fit_irls, "Newton / IRLS", "C2", "--", 2)]
    if fit_sk is not None:
        fits.append((fit_sk, "scikit-learn", "C1", ":", 2))
    for (w, b), label, color, style, width in fits:
        ax.plot(xs, -(w[0] * xs + b) / w[1], color=color, linestyle=style, linewidth=width,
                label=label)
    ax.set_ylim(X[:, 1].min(), X[:, 1].max())
    ax.set_title("decision boundary p = 1/2: the same line")
    ax.legend(fontsize=8, loc="upper left")

    grid = np.linspace(-0.5, 1.5, 161)
    G = np.array(np.meshgrid(grid, grid)).reshape(2, -1).T
    sigmoid = nn.Sigmoid()
    for k, (model, title) in enumerate([
        (linear, f"XOR, one linear unit: loss {linear_loss:.3f} = log 2"),
        (hidden, f"XOR, hidden layer of 4 tanh: loss {hidden_loss:.1e}"),
    ]):
        ax = fig.add_subplot(1, 3, 2 + k)
        p = sigmoid.forward(model.predict(G)).reshape(grid.size, grid.size)
        image = ax.contourf(grid, grid, p, levels=np.linspace(0, 1, 11), cmap="RdBu_r")
        ax.scatter(*X_xor.T, c=["C0" if t == 0 else "C3" for t in y_xor], s=120,
                   edgecolors="k")
        ax.set_title(title)
    fig.colorbar(image, ax=ax, label="P(class 1)")
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=pathlib.Path(__file__).resolve().parent / "images")
    parser.add_argument("--quick", action="store_true", help="small sizes (for the tests)")
    args = parser.parse_args()
    run(args.out, quick=args.quick)
