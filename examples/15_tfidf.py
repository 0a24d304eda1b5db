"""Topic 15. Text classification on TF-IDF features: sparse inputs, never densified.

scikit-learn's ``TfidfVectorizer`` turns documents into a SciPy CSR matrix: thousands of columns
(words and word pairs), a few dozen non-zeros per row. pynn's first ``Dense`` reads that CSR
directly (a threaded sparse-times-dense product forward and for the weight gradient; the data
gets no gradient), so a fit never allocates the dense matrix. Shown on a generated corpus (no
download): short "documents" of four topics, each mixing a topic's own words with words common
to all and a few from the other topics.

1. ``pynn.sklearn.MLPClassifier`` fitted on the CSR matrix: held-out accuracy, against a linear
   model (scikit-learn's ``LogisticRegression``) on the same features.
2. The same network trained by ``pynn.Trainer`` on the CSR and on its dense copy (float64):
   the same weights (to round-off), while the CSR holds a small fraction of the dense bytes.
"""
import argparse
import pathlib
import warnings

import numpy as np
import scipy.sparse as sp

import pynn
from pynn import nn

TOPICS = {
    "space": "orbit rocket launch planet moon mars satellite astronaut telescope galaxy star "
             "comet nasa gravity shuttle crater asteroid solar lunar cosmos nebula probe",
    "sport": "match goal team player coach league score season striker referee tournament "
             "champion stadium penalty keeper final medal race sprint fans tactics pitch",
    "cooking": "recipe oven flour butter garlic simmer sauce onion pepper bake roast salt "
               "dough pasta olive herbs whisk kitchen chef spice grill broth",
    "computers": "software kernel compiler memory thread cache server database python code "
                 "network processor bug release binary cloud linux driver debug laptop disk "
                 "algorithm",
}
COMMON = ("the a of and to in is it that was for on with as at by this from but not or have "
          "an they which one you were all we when there can been has more if will what about "
          "out up said some would so into them could time these two may then do first any "
          "my now such like our over man me even most made after also did many before must "
          "through back years where much your way well down should because each just those "
          "people how too little state good very make world still own see men work long get "
          "here between both life being under never day same another know while last might "
          "us great old year off come since against go came right used take three").split()


def corpus(n_docs, seed=0):
    """``n_docs`` generated documents and their topic labels (0..3)."""
    rng = np.random.default_rng(seed)
    words = [t.split() for t in TOPICS.values()]
    docs, labels = [], rng.integers(0, len(words), n_docs)
    for label in labels:
        n = int(rng.integers(15, 50))
        own = rng.random(n) < 0.2  # a topic's words are a small share of a document
        other = rng.random(n) < 0.04  # and other topics' words creep in
        doc = []
        for is_own, is_other in zip(own, other):
            if is_own:
                doc.append(rng.choice(words[label]))
            elif is_other:
                doc.append(rng.choice(words[int(rng.integers(0, len(words)))]))
            else:
                doc.append(rng.choice(COMMON))
        docs.append(" ".join(doc))
    return docs, labels


def network(n_features, seed=0):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Dense(n_features, 32, seed=rng, dtype=np.float64), nn.ReLU(),
                         nn.Dense(32, len(TOPICS), seed=rng, dtype=np.float64))


def train_pynn(X, y, epochs):
    """A pynn Trainer fit on ``X`` (CSR or dense): (model, history)."""
    model = network(X.shape[1])
    trainer = pynn.Trainer(model, nn.CrossEntropyLoss(),
                           pynn.optim.Adam(model.parameters(), lr=3e-3))
    history = trainer.fit(X, y, epochs=epochs, batch_size=32, seed=0, verbose=0,
                          validation_split=0.2)
    return model, history


def run(out_dir, quick=False):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from pynn.sklearn import MLPClassifier

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_docs = 1200 if quick else 4000
    docs, y = corpus(n_docs)
    split = int(0.75 * n_docs)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    X_train = vectorizer.fit_transform(docs[:split])
    X_test = vectorizer.transform(docs[split:])
    y_train, y_test = y[:split], y[split:]
    assert sp.issparse(X_train) and X_train.format == "csr"

    # 1. the estimator on the CSR, and a linear baseline on the same features
    with warnings.catch_warnings():  # a fixed, short budget of epochs: not converged is fine
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = MLPClassifier(hidden_layer_sizes=(32,), max_iter=30 if quick else 60,
                            random_state=0).fit(X_train, y_train)
    linear = LogisticRegression(max_iter=1000).fit(X_train, y_train)
    accuracy = {"MLP (pynn.sklearn, CSR)": float(mlp.score(X_test, y_test)),
                "logistic regression": float(linear.score(X_test, y_test))}

    # 2. Trainer on the CSR and on its dense copy: the same weights
    epochs = 3 if quick else 8
    sparse_model, history = train_pynn(X_train, y_train, epochs)
    dense_model, _ = train_pynn(X_train.toarray(), y_train, epochs)
    weight_gap = max(float(np.max(np.abs(a.data - b.data)))
                     for a, b in zip(sparse_model.parameters(), dense_model.parameters()))
    test_logits = sparse_model.predict(X_test)
    accuracy["MLP (pynn.Trainer, CSR)"] = float(np.mean(test_logits.argmax(1) == y_test))
    csr_bytes = X_train.data.nbytes + X_train.indices.nbytes + X_train.indptr.nbytes
    dense_bytes = X_train.shape[0] * X_train.shape[1] * X_train.dtype.itemsize
    density = X_train.nnz / (X_train.shape[0] * X_train.shape[1])

    print(f"{n_docs} documents, {X_train.shape[1]} TF-IDF features (words and word pairs), "
          f"{density:.2%} non-zero")
    for name, acc in accuracy.items():
        print(f"  {name:26s} test accuracy {acc:.3f}")
    print(f"CSR vs dense copy, {epochs} epochs: largest weight difference {weight_gap:.1e}")
    print(f"the training matrix: {csr_bytes / 1e6:.2f} MB as CSR, {dense_bytes / 1e6:.1f} MB "
          f"dense ({dense_bytes / csr_bytes:.0f}x)")
    print("=> the first Dense reads CSR: a fit on text never builds the dense matrix.")

    _plot(out_dir / "15_tfidf.png", accuracy, history.history, csr_bytes, dense_bytes)
    return {"accuracy": accuracy, "weight_gap": weight_gap, "csr_bytes": csr_bytes,
            "dense_bytes": dense_bytes, "density": density,
            "n_features": int(X_train.shape[1])}


def _plot(path, accuracy, h, csr_bytes, dense_bytes):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4.5), layout="constrained")
    ax = fig.add_subplot(1, 3, 1)
    names = list(accuracy)
    ax.barh(names, [accuracy[n] for n in names], color=["C0", "0.6", "C2"])
    for i, n in enumerate(names):
        ax.text(accuracy[n], i, f" {accuracy[n]:.3f}", va="center")
    ax.set_xlim(0.25, 1.05)
    ax.axvline(0.25, color="k", lw=0.8, ls=":")
    ax.set_xlabel("test accuracy (4 topics; chance 0.25)")
    ax.set_title("1. held-out accuracy on TF-IDF features")
    epochs = np.arange(1, len(h["loss"]) + 1)
    ax = fig.add_subplot(1, 3, 2)
    ax.plot(epochs, h["loss"], "o-", label="training loss")
    ax.plot(epochs, h["val_loss"], "s-", label="validation loss")
    ax.plot(epochs, h["val_accuracy"], "^--", label="validation accuracy")
    ax.set_xlabel("epoch")
    ax.legend()
    ax.set_title("2. pynn.Trainer on the CSR batches")
    ax = fig.add_subplot(1, 3, 3)
    ax.bar(["CSR (data, indices, indptr)", "its dense copy"], [csr_bytes, dense_bytes],
           color=["C2", "0.6"])
    ax.set_yscale("log")
    ax.set_ylabel("bytes of the training matrix")
    ax.set_title("3. a fit holds the CSR, not the dense matrix")
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=pathlib.Path(__file__).resolve().parent / "images")
    parser.add_argument("--quick", action="store_true", help="small sizes (for the tests)")
    args = parser.parse_args()
    run(args.out, quick=args.quick)
