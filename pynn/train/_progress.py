"""The progress display of ``Trainer.fit``: a bar per epoch on a terminal, a line per epoch
otherwise."""
import sys
import time


# ---------------------------------------------------------------------------- progress
class _Progress:
    """Per-epoch progress: a bar (tqdm when installed, else built in) for verbose=1 on a TTY,
    one line per epoch for verbose=2 or when stdout is not a terminal, nothing for verbose=0."""

    def __init__(self, verbose, epochs, file=None):
        self.file = file or sys.stdout
        self.verbose = verbose
        self.epochs = epochs
        isatty = getattr(self.file, "isatty", lambda: False)()
        self.bar = verbose == 1 and isatty
        self.tqdm = None
        if self.bar:
            try:
                from tqdm.auto import tqdm

                self.tqdm = tqdm
            except ImportError:
                pass
        self._t = None
        self._line_open = False  # the built-in bar has drawn a line without its newline

    def epoch_begin(self, epoch, n_batches):
        self.epoch, self.n_batches = epoch, n_batches
        self._t0 = self._last = time.perf_counter()
        if self.tqdm is not None:
            self._t = self.tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{self.epochs}",
                                unit="batch", leave=True, file=self.file, dynamic_ncols=True)

    def batch_end(self, batch, logs):
        if not self.bar:
            return
        if self._t is not None:
            self._t.update(1)
            if batch + 1 == self.n_batches or batch % 5 == 0:
                self._t.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)
            return
        now = time.perf_counter()
        if now - self._last < 0.1 and batch + 1 != self.n_batches:
            return  # redraw at most 10 times a second
        self._last = now
        done = batch + 1
        stats = " - ".join(f"{k} {v:.4f}" for k, v in logs.items())
        if self.n_batches is None:  # batches from an iterable: no length, no bar
            self.file.write(f"\repoch {self.epoch + 1}/{self.epochs} - batch {done} - "
                            f"{stats}\033[K")
            self.file.flush()
            self._line_open = True
            return
        width = 24
        filled = int(width * done / self.n_batches)
        eta = (now - self._t0) / done * (self.n_batches - done)
        bar = "=" * max(filled - 1, 0) + (">" if filled < width else "=") + "." * (width - filled)
        self.file.write(f"\repoch {self.epoch + 1}/{self.epochs} [{bar}] {done}/{self.n_batches}"
                        f" - ETA {eta:4.1f}s - {stats}\033[K")
        self.file.flush()
        self._line_open = True

    def epoch_end(self, logs):
        if self.verbose == 0:
            return
        if self._t is not None:
            self._t.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if k != "seconds"})
            self._t.close()
            self._t = None
            return
        line = f"epoch {self.epoch + 1}/{self.epochs} - {logs['seconds']:.2f}s - " + " - ".join(
            f"{k} {v:.4g}" for k, v in logs.items() if k != "seconds"
        )
        if self.bar:
            self.file.write("\r" + line + "\033[K\n")
            self._line_open = False
        else:
            self.file.write(line + "\n")
        self.file.flush()

    def abort(self):
        """End an epoch cut short by an error: close the bar, leave its line."""
        if self._t is not None:
            self._t.close()
            self._t = None
        elif self._line_open:
            self.file.write("\n")
            self.file.flush()
            self._line_open = False

    def message(self, text):
        if self.verbose:
            self.file.write(text + "\n")
            self.file.flush()
