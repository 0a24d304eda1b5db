"""The progress of a search's trials as they finish: a tqdm bar on a terminal, a line per trial
otherwise."""
import sys

import numpy as np


class TrialProgress:
    """Trials done so far: a tqdm bar on a terminal when tqdm is installed, else a line per
    trial; nothing at verbose=0."""

    def __init__(self, verbose, total, metric, file=None):
        self.verbose, self.total, self.metric = verbose, total, metric
        self.file = file or sys.stderr
        self.done = 0
        self.best = -np.inf
        self.bar = None
        if verbose and getattr(self.file, "isatty", lambda: False)():
            try:
                from tqdm.auto import tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(total=total, desc="trials", unit="trial", file=self.file,
                                dynamic_ncols=True)

    def update(self, row, knobs):
        self.done += 1
        self.best = max(self.best, row["score"])
        if self.bar is not None:
            self.bar.set_postfix({f"best {self.metric}": f"{self.best:.4f}"}, refresh=False)
            self.bar.update(1)
        elif self.verbose:
            shown = ", ".join(f"{k}={_fmt(row['params'][k])}" for k in knobs)
            self.file.write(f"trial {self.done}/{self.total}: {self.metric} "
                            f"{row['score']:.4f} ({shown}); best {self.best:.4f}\n")
            self.file.flush()

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)
