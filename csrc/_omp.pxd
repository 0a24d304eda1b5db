# The only place OpenMP is cimported. Without OpenMP (_OPENMP undefined) the runtime calls become
# serial stubs, and Cython's prange compiles to a plain loop, so the same sources build either way.

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define PYNN_HAVE_OPENMP 1
    #else
    #define PYNN_HAVE_OPENMP 0
    static inline int omp_get_max_threads(void) { return 1; }
    static inline int omp_get_thread_num(void) { return 0; }
    static inline int omp_get_num_threads(void) { return 1; }
    #endif
    """
    bint PYNN_HAVE_OPENMP
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil
    int omp_get_num_threads() noexcept nogil
