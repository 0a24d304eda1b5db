"""``Trainer.fit`` over a ``pynn.distributed.DataParallel``: every rank draws the same global
batches (same seed, same permutation) and trains on its contiguous shard of each; losses,
metrics and validation are reduced over the ranks, so every rank records the same history
and every callback decides the same (an early stop on one rank alone would leave the others
waiting in their next allreduce). Only rank 0 prints and writes files."""
import numpy as np

from ..distributed import DataParallel
from ._metrics import score_batches


def shard_bounds(rows, rank, size):
    """Rank ``rank``'s contiguous part [lo, hi) of ``rows`` rows split over ``size`` ranks:
    the first ``rows % size`` ranks take one row more (numpy.array_split's split), so rank 0,
    whose BatchNorm statistics count, always has rows."""
    q, extra = divmod(rows, size)
    lo = rank * q + min(rank, extra)
    return lo, lo + q + (rank < extra)


class DistributedFit:
    """What one fit over a DataParallel needs beyond the one-process loop."""

    def __init__(self, dp, seed):
        if not isinstance(dp, DataParallel):
            raise TypeError(f"model must be a pynn.distributed.DataParallel, got "
                            f"{type(dp).__name__}")
        self.dp = dp
        self.world = dp.world
        self.seed = seed

    @property
    def rank(self):
        return self.world.rank

    def shard(self, rows):
        """This rank's slice of a global batch of ``rows`` rows."""
        return slice(*shard_bounds(rows, self.world.rank, self.world.size))

    def augmentation_rng(self, epoch):
        """Augmentation draws per rank and epoch: the ranks' shards differ in size, so they
        cannot share the Trainer's generator (its next epoch's permutation must stay the same
        on every rank), and a checkpoint resumed on any number of ranks re-derives them."""
        return np.random.default_rng([self.seed, 2, epoch, self.world.rank])

    def share(self, loss, rows, weights, part):
        """This rank's weight in the global batch's loss: its rows' (or row weights') share of
        a mean, 1 for a sum. Also the batch's total weight, for the epoch's loss."""
        total = rows if weights is None else float(weights.sum())
        if getattr(loss, "reduction", "mean") == "sum":
            return 1.0, total
        mine = (part.stop - part.start) if weights is None else float(weights[part].sum())
        return (mine / total if total else 0.0), total

    def _own_rows(self, parts):
        """(X, y, w) of this rank's rows, from parts holding its rows of X and the whole
        batch's y and w; a rank left without rows skips the batch."""
        for Xb, yb, wb in parts:
            part = self.shard(len(yb))
            if part.stop > part.start:
                yield Xb, yb[part], None if wb is None else wb[part]

    def reduce_metrics(self, sums, seen):
        """(global metric sums, global row count) from this rank's."""
        keys = list(sums)
        totals = self.world.sum([*(sums[k] for k in keys), seen])
        return dict(zip(keys, totals[:-1])), totals[-1]

    def evaluate(self, trainer, source, batch_size):
        """``Trainer._evaluate_source`` over the ranks: each evaluates its contiguous part of
        the rows (rank 0's BatchNorm statistics in every replica first), then one reduction."""
        self.dp.sync_buffers()
        whole = source.whole()
        if whole is not None:
            X, y, w = whole
            parts = [(X[self.shard(len(y))], y, w)]
        else:
            parts = source.batches(batch_size, shard=self.shard)
        total, sums, seen = score_batches(self.dp.module, trainer.loss, trainer.metrics,
                                          self._own_rows(parts), batch_size)
        loss_sum, weight = self.world.sum([total.total, total.weight])
        sums, seen = self.reduce_metrics(sums, seen)
        if seen == 0:
            raise ValueError("the evaluation data yielded no batches")
        total.total, total.weight = loss_sum, weight
        return {"loss": total.value(), **{k: v / seen for k, v in sums.items()}}
