/* The one place pynn decides whether hot loops are cloned per CPU feature (GCC target_clones).
 * Included by csrc/_optim.h, csrc/_batchnorm.h, csrc/_activations.h and csrc/_dot.h;
 * tests/test_build.py checks that no other file spells target_clones.
 *
 * A cloned function is called through an ifunc: the dynamic loader runs a resolver once, at load
 * time, which picks the AVX-512, AVX2 or baseline clone for this CPU. ifunc is a glibc feature:
 * musl (musllinux wheels, Alpine) has none, and GCC refuses to compile target_clones for a
 * target without ifunc. clang's target_clones differs in details. Every other platform and
 * compiler gets the baseline build.
 *
 * Clones by CPU feature, not "arch=": the resolver tests arch= clones with __builtin_cpu_is,
 * which is false on CPUs newer than the named one and on VMs reporting a generic model. */
#ifndef PYNN_SIMD_CLONE_H
#define PYNN_SIMD_CLONE_H

/* __GLIBC__ comes from glibc's <features.h>, which every glibc header includes: include one
 * here so the test below does not depend on what the including file included first. */
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && defined(__GLIBC__)
#define PYNN_HAVE_TARGET_CLONES 1
#define PYNN_TARGET_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define PYNN_TARGET_CLONES_FMA __attribute__((target_clones(PYNN_FMA_CLONES)))
#else
#define PYNN_HAVE_TARGET_CLONES 0
#define PYNN_TARGET_CLONES
#define PYNN_TARGET_CLONES_FMA
#endif

/* PYNN_TARGET_CLONES_FMA: clones for a loop whose speed is its fused multiply-adds (the dense
 * few-rows kernel, _dot.h). GCC's "avx2" target does not imply FMA, so that clone multiplies
 * and adds separately (its "avx512f" does imply FMA: a PYNN_TARGET_CLONES loop that must round
 * alike on every CPU turns contraction off, as _activations.h, _batchnorm.h, _rownorm.h and
 * the optimizer module's flags do): 62 against 82 GFLOP/s for _dot.h's 16 x 784 x 256
 * float32 product on an AMD EPYC Zen 3. The x86-64-v3 level is AVX2 + FMA (+ BMI, ...), v4
 * adds AVX-512 F/BW/CD/DQ/VL; GCC >= 12 resolves them by CPU feature (__cpu_features2), not by
 * CPU model. Older GCC has no level clones: FMA alone (AVX + FMA3) then. A fused multiply-add
 * rounds once where a multiply then an add rounds twice: the clones differ in the last bits,
 * as CPUs' BLAS kernels do. */
#if defined(__GNUC__) && __GNUC__ >= 12
#define PYNN_FMA_CLONES "arch=x86-64-v4", "arch=x86-64-v3", "default"
#else
#define PYNN_FMA_CLONES "fma", "default"
#endif


#endif /* PYNN_SIMD_CLONE_H */
