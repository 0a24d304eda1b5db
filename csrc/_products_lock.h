/* The products lock: a reader/writer lock around every matrix product pynn runs (the eager
 * dense kernels, a compiled training step's run, an inference program's run).
 *
 * Why: a product whose strategy is BLAS's own threads sets OpenBLAS's process-wide thread
 * count to n (_blas_threads.h) for its one BLAS call; a product in another Python thread that
 * tiles over pynn's team sets it to 1 before its tiles. Interleaved, one of them runs with the
 * other's setting (tiles each waking BLAS threads: 2 x 2 threads on 2 cores; or the big product
 * on one thread). So a product on BLAS's threads holds the lock exclusively and every other
 * product holds it shared: any number of those run at once (predict from many threads), and
 * never beside one that changes the setting. Taken without the GIL, never while holding it
 * around Python code, and never nested (a run takes it once, for all its products).
 *
 * One lock per process: each module that includes this header has its own copy of the statics,
 * so pynn._kernels.dense owns the lock and the other modules adopt its address at import
 * (pynn_products_lock_adopt). */
#ifndef PYNN_PRODUCTS_LOCK_H
#define PYNN_PRODUCTS_LOCK_H

#if defined(_WIN32)
#include <windows.h>
typedef SRWLOCK pynn_rwlock_t;
static pynn_rwlock_t pynn_products_lock_own = SRWLOCK_INIT;
#else
#include <pthread.h>
typedef pthread_rwlock_t pynn_rwlock_t;
static pynn_rwlock_t pynn_products_lock_own = PTHREAD_RWLOCK_INITIALIZER;
#endif

static pynn_rwlock_t *pynn_products_lock = &pynn_products_lock_own;

/* This module's lock's address (pynn._kernels.dense hands it to the others). */
static void *pynn_products_lock_address(void) { return (void *)pynn_products_lock; }

/* Use the lock at ``address`` (pynn._kernels.dense's) instead of this module's own. */
static void pynn_products_lock_adopt(void *address) {
    pynn_products_lock = (pynn_rwlock_t *)address;
}

static inline void pynn_products_acquire(int exclusive) {
#if defined(_WIN32)
    if (exclusive)
        AcquireSRWLockExclusive(pynn_products_lock);
    else
        AcquireSRWLockShared(pynn_products_lock);
#else
    if (exclusive)
        pthread_rwlock_wrlock(pynn_products_lock);
    else
        pthread_rwlock_rdlock(pynn_products_lock);
#endif
}

static inline void pynn_products_release(int exclusive) {
#if defined(_WIN32)
    if (exclusive)
        ReleaseSRWLockExclusive(pynn_products_lock);
    else
        ReleaseSRWLockShared(pynn_products_lock);
#else
    (void)exclusive;
    pthread_rwlock_unlock(pynn_products_lock);
#endif
}

#endif /* PYNN_PRODUCTS_LOCK_H */
