"""What a search returns: its trials as a table, best first; the winner; a plot of the score
against each knob."""
import math

import numpy as np

from .space import KNOBS


def _cell(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "-"
    return str(value)


class SearchResult:
    """The trials of ``grid_search``/``random_search``, best first.

    Attributes
    ----------
    results : list of dict
        One per trial, best score first (ties keep trial order): ``rank``, ``trial`` (its
        index in the order the trials were made), ``params`` (all six knobs), ``score``,
        ``best_epoch`` (the epoch the score comes from), ``epochs_run``, ``diverged`` (the
        loss went non-finite and training stopped), ``threads`` (pynn threads it ran with),
        ``seconds``.
    knobs : list of str
        The knobs searched (the table's columns).
    method : "grid" or "random"
    metric : "accuracy" or "r2"
        What ``score`` is, on the validation part.
    best_params, best_score : the first row's
    model : Sequential or None
        The winner refit on all the data (None with ``refit=False``): raw features in; class
        logits in the order of ``classes``, or the prediction in y's units.
    classes : ndarray or None
        The class labels (sorted), for classification.
    threads_per_trial, workers : int
        pynn threads in each trial and trials run at once. threads_per_trial is None when the
        workers of a cluster chose different shares (each row's ``threads`` says which).
    """

    def __init__(self, rows, knobs, method, metric, task, threads_per_trial, workers):
        # a diverged trial may score -inf; NaN cannot happen (_score maps it to -inf)
        order = sorted(range(len(rows)), key=lambda i: (-rows[i]["score"], rows[i]["trial"]))
        self.results = [{"rank": r + 1, **rows[i]} for r, i in enumerate(order)]
        self.knobs = list(knobs)
        self.method = method
        self.metric = metric
        self.task = task
        self.threads_per_trial = threads_per_trial
        self.workers = workers
        self.model = None
        self.classes = None

    @property
    def best_params(self):
        return dict(self.results[0]["params"])

    @property
    def best_score(self):
        return self.results[0]["score"]

    def __len__(self):
        return len(self.results)

    def table(self, limit=None):
        """The trials as aligned text, best first (the first ``limit`` rows when given)."""
        header = ["rank", "trial", *self.knobs, self.metric, "epoch", "seconds"]
        rows = [[str(r["rank"]), str(r["trial"]), *(_cell(r["params"][k]) for k in self.knobs),
                 f"{r['score']:.4f}" + (" (diverged)" if r["diverged"] else ""),
                 str(r["best_epoch"]), f"{r['seconds']:.2f}"]
                for r in self.results[:limit]]
        widths = [max(len(c) for c in col) for col in zip(header, *rows)]
        return "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths))
                         for line in [header, *rows])

    def __str__(self):
        return self.table()

    def __repr__(self):
        return (f"SearchResult({self.method}, {len(self)} trials, best {self.metric} "
                f"{self.best_score:.4f} at {self.best_params})")

    def to_dict(self):
        """Plain types only (tuples as lists), for JSON."""
        def plain(value):
            if isinstance(value, tuple):
                return list(value)
            if isinstance(value, float) and not math.isfinite(value):
                return None  # strict JSON has no Inf
            return value
        return {"method": self.method, "metric": self.metric, "task": self.task,
                "knobs": self.knobs, "threads_per_trial": self.threads_per_trial,
                "workers": self.workers,
                "best_params": {k: plain(v) for k, v in self.best_params.items()},
                "best_score": plain(self.best_score),
                "results": [{**{k: plain(v) for k, v in r.items() if k != "params"},
                             "params": {k: plain(v) for k, v in r["params"].items()}}
                            for r in self.results]}

    def plot(self, path, title=None):
        """Save the validation score against each searched knob, one panel per knob, the best
        trial starred (needs matplotlib: the ``plot`` extra). Returns ``path``."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError("SearchResult.plot needs matplotlib: pip install 'pynn[plot]'") \
                from None
        n = len(self.knobs)
        fig, axes = plt.subplots(1, n, figsize=(3.2 * n + 0.6, 3.2), squeeze=False, sharey=True)
        scores = np.array([r["score"] for r in self.results])
        finite = np.isfinite(scores)
        floor = scores[finite].min() if finite.any() else 0.0
        shown = np.where(finite, scores, floor)  # a diverged trial sits at the bottom, marked x
        for ax, knob in zip(axes[0], self.knobs):
            kind = KNOBS[knob][2]
            values = [r["params"][knob] for r in self.results]
            if kind == "categorical":
                labels = sorted({_cell(v) for v in values})
                x = np.array([labels.index(_cell(v)) for v in values], dtype=float)
                ax.set_xticks(range(len(labels)), labels, rotation=30 if n > 2 else 0)
                ax.set_xlim(-0.5, len(labels) - 0.5)
            else:
                x = np.array(values, dtype=float)
                if kind == "log":
                    ax.set_xscale("log")
            ax.scatter(x[finite], shown[finite], s=22, alpha=0.75, color="tab:blue")
            if not finite.all():
                ax.scatter(x[~finite], shown[~finite], marker="x", color="tab:red",
                           label="diverged")
            ax.scatter(x[:1], shown[:1], marker="*", s=180, color="tab:orange",
                       edgecolor="black", zorder=3, label="best")
            ax.set_xlabel(knob)
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel(f"validation {self.metric}")
        axes[0][0].legend(loc="lower left", fontsize=8)
        fig.suptitle(title or f"{self.method} search: {len(self)} trials, best "
                     f"{self.metric} {self.best_score:.4f}")
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        return path
