/* One thread pool: pynn's OpenMP team does the parallel work, and every BLAS call it makes runs
 * single-threaded in the calling thread. We find OpenBLAS's thread-count setter in the very
 * library that provides the sgemm we call (scipy's, through scipy.linalg.cython_blas), so
 * another OpenBLAS in the process (numpy's) is never touched. The setting is process-wide
 * (openblas_set_num_threads_local, despite its name, sets the global count in the pthreads
 * builds scipy ships: measured), so the kernels set it before each product (1, or the thread
 * count for a product the planner gave to BLAS's own threads) and never restore it: two
 * threads setting and restoring would race. A product on BLAS's threads excludes every other
 * product meanwhile (the products lock, _products_lock.h), so it never runs under another's
 * tiles. Without a setter (another BLAS, no dlfcn) the lookup
 * gives NULL and the kernels fall back to one BLAS call with BLAS's own threads. */
#ifndef PYNN_BLAS_THREADS_H
#define PYNN_BLAS_THREADS_H

#if defined(__unix__) || defined(__APPLE__)
#include <dlfcn.h>  /* dladdr: Python.h defines _GNU_SOURCE first */
#define PYNN_HAVE_DLFCN 1
#else
#define PYNN_HAVE_DLFCN 0
#endif

typedef void (*pynn_set_threads_fn)(int);

/* OpenBLAS's openblas_set_num_threads in the library that `symbol` (a function of the BLAS
 * wrapper we call) was loaded from, searched with its dependencies; NULL when there is none. */
static pynn_set_threads_fn pynn_find_blas_threads(void *symbol) {
#if PYNN_HAVE_DLFCN
    Dl_info info;
    void *handle, *fn;
    if (!dladdr(symbol, &info) || !info.dli_fname)
        return 0;
    handle = dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD);
    if (!handle)
        return 0;
    fn = dlsym(handle, "scipy_openblas_set_num_threads");  /* scipy's wheels prefix it */
    if (!fn)
        fn = dlsym(handle, "openblas_set_num_threads");
    dlclose(handle);  /* only drops the reference RTLD_NOLOAD added: the library stays */
    return (pynn_set_threads_fn)fn;
#else
    (void)symbol;
    return 0;
#endif
}

/* The setter, looked up once per module that includes this header (each keeps its own copy:
 * the header's statics are per translation unit), by pynn_blas_threads_init at import. */
static pynn_set_threads_fn pynn_blas_threads_fn = 0;

static void pynn_blas_threads_init(void *symbol) {
    pynn_blas_threads_fn = pynn_find_blas_threads(symbol);
}

/* Whether every BLAS call can run single-threaded inside pynn's team. */
static inline int pynn_blas_control(void) { return pynn_blas_threads_fn != 0; }

/* The BLAS we call runs on n threads (process-wide; see the top of this file): 1 inside
 * pynn's team, n_threads for a product whose strategy is BLAS's own threads (which holds the
 * products lock exclusively meanwhile: _products_lock.h). */
static inline void pynn_blas_set(int n) {
    if (pynn_blas_threads_fn)
        pynn_blas_threads_fn(n);
}

static inline void pynn_blas_single(void) { pynn_blas_set(1); }

#endif
