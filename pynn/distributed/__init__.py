"""Data-parallel training over MPI (``pip install 'pynn[mpi]'``; run with ``mpirun -n N``).

``DataParallel(model)`` keeps one replica of the model per rank and sums the ranks' gradients
with one allreduce per step; ``Trainer.fit(..., distributed=True)`` (or a Trainer over a
``DataParallel``) gives each rank its contiguous shard of every global batch. See
docs/distributed.md.
"""
from ._world import launched_size, world
from .data_parallel import DataParallel

__all__ = ["DataParallel", "get_rank", "get_world_size", "is_root", "launched_size", "world"]


def get_rank():
    """This process's rank in the MPI job (0 outside one)."""
    return world().rank


def get_world_size():
    """The number of ranks in the MPI job (1 outside one)."""
    return world().size


def is_root():
    """True on rank 0, the rank that prints, reports and writes files."""
    return world().rank == 0
