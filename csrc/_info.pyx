"""Build facts of the compiled kernels, for pynn.show_config()."""
from _omp cimport PYNN_HAVE_OPENMP, omp_get_max_threads


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(PYNN_HAVE_OPENMP)


def openmp_max_threads():
    """omp_get_max_threads() of the runtime the kernels are linked to (1 in a serial build)."""
    return omp_get_max_threads()
