"""Training runs that tests/test_distributed.py runs twice: under ``mpirun -n 2`` (this file
as the program) and in the test's own process (a world of one, the reference). Each case
returns {name: array}; under mpirun every rank's results are gathered to rank 0, which writes
them to the .npz named on the command line, so the test also sees whether the replicas are
bit-identical.

    mpirun -n 2 python tests/mpi_cases.py OUT.npz CASE [CASE ...]
    mpirun -n 2 python tests/mpi_cases.py --fail RANK     (a rank that raises)
"""
import os
import sys

import numpy as np

import pynn
from pynn import nn, optim
from pynn.distributed import DataParallel, world
from pynn.train._distributed import shard_bounds


def _data(n, features=12, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, features))
    y = (X[:, :classes] + 0.3 * rng.standard_normal((n, classes))).argmax(axis=1)
    return X, y


def _net(batchnorm=False, dtype=np.float64):
    pynn.manual_seed(7)
    layers = [nn.Dense(12, 16, dtype=dtype)]
    if batchnorm:
        layers.append(nn.BatchNorm(16, dtype=dtype))
    layers += [nn.ReLU(), nn.Dense(16, 3, dtype=dtype)]
    return nn.Sequential(*layers)


def _state(model, history=None):
    out = {f"state/{k}": np.asarray(v) for k, v in model.state_dict().items()}
    for k, v in (history or {}).items():
        out[f"history/{k}"] = np.asarray(v, np.float64)
    return out


def sgd_momentum_steps():
    """20 SGD-momentum steps of a global batch of 128 (the compiled step), ``train_step`` on
    each rank's contiguous part of it."""
    X, y = _data(128)
    model = _net()
    dp = DataParallel(model)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    w = dp.world
    part = slice(*shard_bounds(128, w.rank, w.size))
    losses = [dp.train_step(X[part], y[part], nn.CrossEntropyLoss(), opt) for _ in range(20)]
    return {**_state(model), "losses": np.array(losses)}


def sgd_momentum_fit():
    """The same through Trainer.fit(distributed=True): 20 shuffled global batches of 128."""
    X, y = _data(128 * 20)
    model = _net()
    trainer = pynn.Trainer(model, nn.CrossEntropyLoss(),
                           optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    history = trainer.fit(X, y, epochs=1, batch_size=128, seed=3, verbose=0, distributed=True)
    return _state(model, _history_numbers(history))


def adam_uneven():
    """6 epochs of Adam over 131 rows in global batches of 50 (shards 25/25 and 16/15), with
    validation data reduced over the ranks."""
    X, y = _data(131 + 33)
    model = _net()
    trainer = pynn.Trainer(DataParallel(model), nn.CrossEntropyLoss(),
                           optim.Adam(model.parameters(), lr=1e-2))
    history = trainer.fit(X[:131], y[:131], epochs=6, batch_size=50, seed=5, verbose=0,
                          validation_data=(X[131:], y[131:]))
    return _state(model, _history_numbers(history))


def weighted_eager():
    """Class and sample weights (the eager step; shards weighted by their rows' weights): 3
    epochs of SGD over 90 rows in batches of 32 (shards 16/16, 16/16, 13/13)."""
    X, y = _data(90)
    w = np.linspace(0.5, 2.0, 90)
    model = _net()
    trainer = pynn.Trainer(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1))
    history = trainer.fit(X, y, epochs=3, batch_size=32, seed=2, verbose=0, sample_weight=w,
                          class_weight={0: 1.0, 1: 2.0, 2: 0.5}, distributed=True)
    return _state(model, _history_numbers(history))


def sync_batchnorm():
    """BatchNorm with synchronized statistics: 8 SGD steps of a global batch of 64 train
    like one process of 64 rows (parameters and running statistics)."""
    X, y = _data(64 * 8)
    model = _net(batchnorm=True)
    trainer = pynn.Trainer(DataParallel(model, sync_batchnorm=True), nn.CrossEntropyLoss(),
                           optim.SGD(model.parameters(), lr=0.1, momentum=0.5))
    history = trainer.fit(X, y, epochs=1, batch_size=64, seed=4, verbose=0)
    return _state(model, _history_numbers(history))


def batchnorm_per_rank():
    """BatchNorm with each rank's own statistics (the default): the replicas stay identical,
    and the running statistics are rank 0's."""
    X, y = _data(64 * 4)
    model = _net(batchnorm=True)
    trainer = pynn.Trainer(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters()))
    trainer.fit(X, y, epochs=2, batch_size=64, seed=4, verbose=0, distributed=True)
    return _state(model)


def checkpointed(path=None, epochs=2, resume=False):
    """Adam with a ModelCheckpoint each epoch (rank 0 writes it): the file resumes on any
    number of ranks."""
    X, y = _data(150)
    model = _net()
    trainer = pynn.Trainer(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(),
                                                                    lr=1e-2))
    path = path or os.environ["PYNN_TEST_CHECKPOINT"]
    history = trainer.fit(X, y, epochs=epochs, batch_size=40, seed=9, verbose=0,
                          validation_split=0.2, distributed=True,
                          callbacks=[pynn.train.ModelCheckpoint(path, monitor="val_loss")],
                          resume_from=path if resume else None)
    return _state(model, _history_numbers(history))


def sparse_adam():
    """A CSR X (the compiled step's sparse first Dense on each rank's CSR rows): 5
    ``train_step`` steps of a global batch of 64, then 3 epochs of Adam through
    Trainer.fit(distributed=True) over 150 rows in global batches of 40 (shards 20/20 and
    15/15)."""
    import scipy.sparse as sp

    X = sp.random(150, 40, density=0.15, format="csr", random_state=1, dtype=np.float64)
    y = np.asarray(X @ np.random.default_rng(1).standard_normal((40, 3))).argmax(axis=1)
    pynn.manual_seed(7)
    model = nn.Sequential(nn.Dense(40, 16, dtype=np.float64), nn.ReLU(),
                          nn.Dense(16, 3, dtype=np.float64))
    dp = DataParallel(model)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    part = slice(*shard_bounds(64, dp.world.rank, dp.world.size))
    losses = [dp.train_step(X[part], y[part], nn.CrossEntropyLoss(), opt) for _ in range(5)]
    # (loss, optimizer, plan, program) of the last compiled step
    compiled = model._recent_train_steps[0] if model._recent_train_steps else None
    trainer = pynn.Trainer(model, nn.CrossEntropyLoss(), opt)
    history = trainer.fit(X, y, epochs=3, batch_size=40, seed=6, verbose=0, distributed=True)
    return {**_state(model, _history_numbers(history)), "losses": np.array(losses),
            "sparse_compiled": np.array(float(compiled is not None and compiled[2].sparse))}


def _history_numbers(history):
    return {k: v for k, v in history.history.items() if k != "seconds"}


CASES = {f.__name__: f for f in (sgd_momentum_steps, sgd_momentum_fit, adam_uneven,
                                 weighted_eager, sync_batchnorm, batchnorm_per_rank,
                                 checkpointed, sparse_adam)}


def main(argv):
    if argv[0] == "--fail":
        w = world()
        DataParallel(_net())  # installs the abort-on-error hook
        if w.rank == int(argv[1]):
            raise RuntimeError(f"rank {w.rank} fails on purpose")
        w.sum([1.0])  # the other ranks wait here: the job must still end
        return
    if argv[0] == "--kill":
        w = world()
        DataParallel(_net())
        if w.rank == int(argv[1]):
            os.kill(os.getpid(), 9)
        w.sum([1.0])
        return
    out, names = argv[0], argv[1:]
    w = world()
    results = {}
    for name in names:
        for key, value in CASES[name]().items():
            results[f"{name}/{key}"] = value
    gathered = w.comm.gather(results, root=0)
    if w.rank == 0:
        arrays = {}
        for rank, res in enumerate(gathered):
            arrays.update({f"rank{rank}/{k}": v for k, v in res.items()})
        np.savez(out, **arrays)


if __name__ == "__main__":
    main(sys.argv[1:])
