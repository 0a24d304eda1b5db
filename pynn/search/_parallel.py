"""Where a search's trials run and with how many threads each: joblib's workers on this machine
share the caller's cores; a cluster's workers (joblib's dask or ray backend, or any other) each
take their own share of the cores the caller cannot see."""
import sys

from .._checks import check_int
from .._threads import _default_threads, get_num_threads

# joblib's own backends, whose workers run on this machine (in this process or in processes it
# started): a trial's threads are the caller's pynn.get_num_threads() split among the workers.
# Named rather than imported: joblib keeps their classes in a private module.
LOCAL_BACKENDS = ("SequentialBackend", "ThreadingBackend", "MultiprocessingBackend",
                  "LokyBackend")


def require_joblib():
    try:
        import joblib
    except ImportError:
        raise ImportError("n_jobs other than 1 needs joblib: pip install 'pynn[search]'") \
            from None
    return joblib


def workers_for(n_jobs, n_trials):
    """(joblib or None, number of workers). n_jobs=1 never imports joblib; None follows
    joblib.parallel_config when joblib is installed (1 outside such a context), else 1."""
    if n_jobs is None:
        try:
            import joblib
        except ImportError:
            return None, 1
    else:
        n_jobs = check_int("n_jobs", n_jobs)
        if n_jobs == 0:
            raise ValueError("n_jobs must not be 0: a positive count, or -1 for every core")
        if n_jobs == 1:
            return None, 1
        joblib = require_joblib()
    workers = min(joblib.effective_n_jobs(n_jobs), n_trials)
    return (joblib, workers) if workers > 1 else (None, 1)


def active_backend(joblib):
    """The backend ``joblib.Parallel`` will use here: ``parallel_config``'s, else loky."""
    backend, _ = joblib.parallel.get_active_backend()
    return backend


def threads_per_trial_for(backend, workers, threads_per_trial):
    """The threads every trial sets, or None when each cluster worker decides (its share).
    ``backend`` is None when the trials run in the caller, without joblib."""
    if threads_per_trial is not None:
        return check_int("threads_per_trial", threads_per_trial, 1)
    if backend is not None and type(backend).__name__ not in LOCAL_BACKENDS:
        # the caller's core count says nothing about the cluster's machines: a 64-core caller
        # running 4 trials would otherwise start 16 threads on each worker's busy cores
        return None
    # n_jobs processes x threads each must not exceed the cores pynn may use, or the trials
    # oversubscribe them and every one slows down
    return max(1, get_num_threads() // workers)


def results_as(backend):
    """joblib.Parallel's ``return_as``: the rows one at a time, as they come (the progress
    display), except on the backends that can only hand them all over at the end (joblib's
    multiprocessing, and Ray's, built on it)."""
    return "generator" if getattr(backend, "supports_return_generator", False) else "list"


def _trials_at_once():
    """Trials this process runs at the same time: a Dask worker's thread count, else 1 (a Ray
    or loky worker process runs one task at a time)."""
    distributed = sys.modules.get("distributed")  # a Dask worker has imported it; never import it
    if distributed is not None:
        try:
            return distributed.get_worker().state.nthreads
        except ValueError:  # distributed is loaded but this process is not a Dask worker
            pass
    return 1


def cluster_worker_threads():
    """A cluster worker's share for one trial: the cores this process may use as pynn counts
    them by default (OMP_NUM_THREADS, which Dask's nanny and Ray set to each worker's share;
    else the CPU affinity capped by a cgroup quota), divided among the trials it runs at once.
    The default, not get_num_threads(): an earlier trial in this worker has already set that."""
    cores, _ = _default_threads()
    return max(1, cores // _trials_at_once())
