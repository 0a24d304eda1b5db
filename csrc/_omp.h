/* OpenMP for csrc/_omp.pxd (the only place OpenMP is cimported): the runtime's header when the
 * build has OpenMP, else serial stubs of the few runtime calls the kernels make, so the same
 * sources build either way. */
#ifndef PYNN_OMP_H
#define PYNN_OMP_H

#ifdef _OPENMP
#include <omp.h>
#define PYNN_HAVE_OPENMP 1
#else
#define PYNN_HAVE_OPENMP 0
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_thread_num(void) { return 0; }
static inline int omp_get_num_threads(void) { return 1; }
#endif

#endif /* PYNN_OMP_H */
