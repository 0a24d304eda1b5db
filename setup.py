"""Build pynn's Cython kernels (csrc/*.pyx -> pynn._kernels.*).

Environment switches:
  PYNN_FAIL_NO_OPENMP=1  abort the build when OpenMP does not work (CI uses this), instead of
                         warning and building serial loops.
  PYNN_CYTHON_DEBUG=1    bounds/wraparound/None checks back on, -O0 -g: for hunting a kernel bug.
"""
import glob
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# One row per compiled module: pynn._kernels.<name> is built from csrc/<name>.pyx. True where
# the module cimports numpy: only those get numpy's headers (include path and API macro).
# Longest compile first (seconds on one core: train_step 13, batchnorm 7.6, optim 7.1, dense
# 6.3, activations 5.5, the rest under 4), so the parallel build does not end on one big module.
KERNEL_MODULES = {
    "train_step": True,  # reads array data pointers through numpy's C API
    "inference": True,  # likewise
    "batchnorm": False,
    "optim": False,
    "dense": False,
    "rownorm": False,
    "sparse": False,
    "activations": False,
    "losses": False,
    "dropout": False,
    "checks": True,  # labels_in_range reads the labels through numpy's C API
    "_info": False,
}

# Cython's own runtime code (the memoryview type and its helpers) is compiled once, into this
# module, which the others import, instead of once into each: it was half of every module's
# compile time. Needs Cython 3.1 (pyproject.toml).
CYTHON_SHARED_MODULE = "pynn._kernels._cyutility"


def _cpu_count():
    """CPUs this process may run on (its affinity mask where the OS has one: a container's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


DEBUG = os.environ.get("PYNN_CYTHON_DEBUG") == "1"
FAIL_NO_OPENMP = os.environ.get("PYNN_FAIL_NO_OPENMP") == "1"

OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    #include <stdio.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        printf("%d\\n", n);
        return n >= 1 ? 0 : 1;
    }
    """
)


def _openmp_flags(compiler):
    """Compile, link and run a tiny OpenMP program; return (compile_args, link_args) or None."""
    if compiler.compiler_type == "msvc":
        candidates = [(["/openmp"], [])]
    else:
        candidates = [(["-fopenmp"], ["-fopenmp"]), (["-Xpreprocessor", "-fopenmp"], ["-lomp"])]
    for cflags, lflags in candidates:
        tmp = tempfile.mkdtemp(prefix="pynn-omp-")
        try:
            src = os.path.join(tmp, "probe.c")
            with open(src, "w") as f:
                f.write(OPENMP_PROBE)
            objects = compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
            exe = os.path.join(tmp, "probe")
            # LDFLAGS reach shared objects but not executables: pass them here too, or a
            # sanitizer build (CFLAGS=-fsanitize=...) fails this probe and builds serial.
            compiler.link_executable(objects, exe, extra_preargs=shlex.split(
                os.environ.get("LDFLAGS", "")), extra_postargs=lflags)
            subprocess.run([exe], check=True, capture_output=True, timeout=60)
            return cflags, lflags
        except Exception:  # any failure (no header, no runtime, cannot run) means "no OpenMP"
            continue
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return None


class BuildExt(build_ext):
    def finalize_options(self):
        super().finalize_options()
        # The extensions are independent: compile them side by side, one per CPU, unless the
        # user chose (-j N / --parallel N; -j 1 builds one at a time).
        if not self.parallel:
            self.parallel = _cpu_count()

    def build_extensions(self):
        flags = _openmp_flags(self.compiler)
        if flags is None:
            message = "pynn: OpenMP is not available with this compiler; building serial kernels"
            if FAIL_NO_OPENMP:
                sys.exit(message + " (PYNN_FAIL_NO_OPENMP=1 makes this an error)")
            print("WARNING: " + message, file=sys.stderr)
            cflags, lflags = [], []
        else:
            cflags, lflags = flags
        opt = ["-O0", "-g"] if DEBUG else ["-O3"]
        if self.compiler.compiler_type == "msvc":
            opt = ["/Od"] if DEBUG else ["/O2"]
        for ext in self.extensions:
            ext.extra_compile_args = opt + cflags + ext.extra_compile_args
            ext.extra_link_args = lflags + ext.extra_link_args
        super().build_extensions()


# Cython only tracks headers named in `cdef extern from "..."`, not ones #included by other C
# (_simd_clone.h, from _optim.h, _batchnorm.h, _activations.h, _dot.h and _direct.h): list them
# all, so editing one recompiles the modules instead of leaving stale objects.
HEADERS = sorted(glob.glob("csrc/*.h"))


def _extension(name, uses_numpy):
    numpy_args = {}
    if uses_numpy:
        numpy_args = dict(include_dirs=[numpy.get_include()],
                          define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")])
    return Extension(f"pynn._kernels.{name}", [f"csrc/{name}.pyx"], depends=HEADERS,
                     **numpy_args)


# The shared module's C is written by cythonize (below), not from a .pyx. It goes first: its
# 8 s compile is the second longest, so it runs beside train_step.pyx's.
extensions = [Extension(CYTHON_SHARED_MODULE, [CYTHON_SHARED_MODULE.replace(".", "/") + ".c"])]
extensions += [_extension(name, uses_numpy) for name, uses_numpy in KERNEL_MODULES.items()]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["csrc"],
        language_level=3,
        # one Cython process per CPU
        nthreads=_cpu_count(),
        shared_utility_qualified_name=CYTHON_SHARED_MODULE,
        compiler_directives={
            "boundscheck": DEBUG,
            "wraparound": DEBUG,
            "initializedcheck": DEBUG,
            "nonecheck": DEBUG,
            "cdivision": True,
            "embedsignature": True,
            "freethreading_compatible": True,
        },
    ),
    cmdclass={"build_ext": BuildExt},
)
