"""One knob for parallelism: OpenMP threads of the kernels and BLAS threads, set together."""
import math
import os
import warnings

# Load scipy's BLAS before any limit is set: threadpoolctl only reaches libraries already loaded.
import scipy.linalg  # noqa: F401
from threadpoolctl import ThreadpoolController, threadpool_limits

from ._checks import check_int

_num_threads = None
_num_threads_source = None
_blas_limiter = None

# Below this many elements an elementwise/reduction kernel runs on one thread: waking a second
# thread costs a few microseconds, more than it saves on a 32x32 operation.
PARALLEL_MIN_ELEMENTS = 1 << 15


def _omp_num_threads(value):
    """OMP_NUM_THREADS as libgomp reads it: the first entry of a comma list (the outermost
    parallel level), a positive integer. None when unset; an invalid value warns and is None,
    as libgomp ignores it too."""
    if value is None or not value.strip():
        return None
    first = value.split(",", 1)[0].strip()
    if first.isascii() and first.isdigit() and int(first) >= 1:
        return int(first)
    warnings.warn(
        f"OMP_NUM_THREADS={value!r} is not a positive integer (or a comma list of them); "
        "pynn ignores it", RuntimeWarning, stacklevel=3,
    )
    return None


def _read_quota(quota_file, period_file=None):
    """ceil(quota / period) from cgroup v2 ``cpu.max`` ("quota period", quota "max" when
    unlimited) or from cgroup v1's two files (quota -1 when unlimited); None when unlimited,
    missing or unreadable."""
    try:
        with open(quota_file) as f:
            fields = f.read().split()
        if period_file is not None:
            with open(period_file) as f:
                fields = fields[:1] + f.read().split()[:1]
        quota, period = int(fields[0]), int(fields[1])
    except (OSError, ValueError, IndexError):  # no file, "max", or garbage: no limit known
        return None
    if quota <= 0 or period <= 0:
        return None
    return max(1, math.ceil(quota / period))


def _ancestors(mount, cgroup_path):
    """``mount``/``cgroup_path`` and each parent directory up to ``mount`` itself.

    A limit set on a parent cgroup binds its children too. Inside a container the path listed
    in /proc/self/cgroup may not exist under the container's mount (its own cgroup is the
    mount's root); walking up still reaches that root.
    """
    parts = [p for p in cgroup_path.split("/") if p and p != "."]
    if ".." in parts:  # a cgroup outside our namespace: only the mount root is ours to read
        parts = []
    return [os.path.join(mount, *parts[:i]) for i in range(len(parts), -1, -1)]


def cgroup_cpu_limit(root="/"):
    """CPUs the process's cgroup lets it use (CFS bandwidth quota), or None when unlimited.

    Reads the process's cgroup from ``root``/proc/self/cgroup, then cgroup v2 ``cpu.max`` or
    cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` under ``root``/sys/fs/cgroup, in that
    cgroup and its ancestors, and returns the smallest ceil(quota / period) (at least 1).
    ``root`` exists so tests can point it at a fake tree. Missing files mean no limit.
    """
    sys_cgroup = os.path.join(root, "sys", "fs", "cgroup")
    try:
        with open(os.path.join(root, "proc", "self", "cgroup")) as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    limits = []
    for line in lines:
        # "hierarchy-id:controllers:path"; v2 is "0::path", v1 lists its controllers.
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        if controllers == "":
            for d in _ancestors(sys_cgroup, path):
                limits.append(_read_quota(os.path.join(d, "cpu.max")))
        elif "cpu" in controllers.split(","):
            # v1 mounts the controller at cpu,cpuacct (named as listed), with "cpu" a link.
            for mount in dict.fromkeys([controllers, "cpu"]):
                for d in _ancestors(os.path.join(sys_cgroup, mount), path):
                    limits.append(_read_quota(os.path.join(d, "cpu.cfs_quota_us"),
                                              os.path.join(d, "cpu.cfs_period_us")))
    limits = [n for n in limits if n is not None]
    return min(limits) if limits else None


def _default_threads():
    """(threads, where the number came from), as an OpenMP program would see it.

    OMP_NUM_THREADS, when set and valid, wins (scikit-learn's _openmp_effective_n_threads
    does the same); otherwise the CPUs this process may run on, capped by a cgroup CPU quota
    (a container limited to 2 CPUs on a 64-core host would otherwise start 64 threads and be
    throttled).
    """
    n = _omp_num_threads(os.environ.get("OMP_NUM_THREADS"))
    if n is not None:
        return n, "OMP_NUM_THREADS"
    try:
        n, source = max(1, len(os.sched_getaffinity(0))), "CPU affinity"
    except AttributeError:  # not on Linux
        n, source = max(1, os.cpu_count() or 1), "os.cpu_count"
    quota = cgroup_cpu_limit()
    if quota is not None and quota < n:
        n, source = quota, "cgroup CPU quota"
    return n, source


def _cap_blas(n):
    """Limit every loaded BLAS using more than ``n`` threads to ``n``, leaving the others.

    OpenBLAS honours OMP_NUM_THREADS and the affinity mask itself, but not a cgroup quota;
    only lowering keeps a smaller OPENBLAS_NUM_THREADS the user chose.
    """
    controller = ThreadpoolController().select(user_api="blas")
    for lib in controller.lib_controllers:
        if lib.num_threads > n:
            lib.set_num_threads(n)


def get_num_threads():
    """Number of threads pynn's kernels (and the BLAS they call) use.

    ``set_num_threads`` decides when called; otherwise OMP_NUM_THREADS (its first entry) when
    set, else the CPUs in the affinity mask capped by a cgroup CPU quota. The default is
    resolved once, at the first call, and BLAS libraries using more threads are limited to it.
    """
    global _num_threads, _num_threads_source
    if _num_threads is None:
        n, source = _default_threads()
        _cap_blas(n)
        _num_threads, _num_threads_source = n, source
    return _num_threads


def num_threads_source():
    """Where ``get_num_threads()`` came from: "pynn.set_num_threads", "OMP_NUM_THREADS",
    "cgroup CPU quota", "CPU affinity" or "os.cpu_count" (for ``show_config``)."""
    get_num_threads()
    return _num_threads_source


def set_num_threads(n):
    """Use ``n`` threads in every kernel and in BLAS (through threadpoolctl).

    Parameters
    ----------
    n : int
        At least 1.
    """
    global _num_threads, _num_threads_source, _blas_limiter
    _num_threads = n = check_int("n", n, 1)
    _num_threads_source = "pynn.set_num_threads"
    # threadpool_limits applied without "with" stays in force; it covers numpy's and scipy's
    # OpenBLAS alike (the Cython kernels call scipy's through cython_blas).
    _blas_limiter = threadpool_limits(limits=n, user_api="blas")


def share_cores(processes):
    """Make the default thread count this process's share of the CPUs it may use when
    ``processes`` processes (MPI ranks) share them: that count divided by ``processes``, at
    least 1. Threads chosen by ``set_num_threads`` or OMP_NUM_THREADS are kept."""
    global _num_threads, _num_threads_source
    processes = check_int("processes", processes, 1)
    n, source = _default_threads()
    if source == "OMP_NUM_THREADS" or _num_threads_source == "pynn.set_num_threads":
        return
    if processes > 1:
        n, source = max(1, n // processes), f"{source} / {processes} processes"
    _cap_blas(n)
    _num_threads, _num_threads_source = n, source


def threads_for(size):
    """Threads a kernel over ``size`` elements should use (1 below the parallel threshold)."""
    if size < PARALLEL_MIN_ELEMENTS:
        return 1
    return get_num_threads()
