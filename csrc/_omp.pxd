# The only place OpenMP is cimported. Without OpenMP (_OPENMP undefined) the runtime calls become
# serial stubs (_omp.h), and Cython's prange compiles to a plain loop, so the same sources build
# either way.

cdef extern from "_omp.h":
    bint PYNN_HAVE_OPENMP
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil
    int omp_get_num_threads() noexcept nogil
