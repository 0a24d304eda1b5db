"""Compile bench/membench.pyx (the optimizer's memory floor) on first use.

The loop is benchmark-only, so it is not one of pynn's compiled modules and stays out of the
wheel. It is built here like the kernels (setup.py): Cython with the same directives, -O3 and
OpenMP, csrc/ on the include paths for _types.pxd, _omp.pxd and _omp.h. Needs Cython,
setuptools and a C compiler with OpenMP (``pip install ".[bench]"`` brings the first two).
"""
import importlib.util
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(os.path.dirname(HERE), "csrc")

# setup.py's OpenMP flags, tried in its order: GCC/clang, then Apple clang with Homebrew's libomp
OPENMP_FLAGS = [(["-fopenmp"], ["-fopenmp"]), (["-Xpreprocessor", "-fopenmp"], ["-lomp"])]
if sys.platform == "win32":
    OPENMP_FLAGS = [(["/openmp"], [])]
OPTIMIZE = ["/O2"] if sys.platform == "win32" else ["-O3"]


class MembenchUnavailable(RuntimeError):
    """membench.pyx could not be built here; the message says what is missing."""


def _build(out_dir, cflags, lflags):
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    ext = Extension("membench", [os.path.join(out_dir, "membench.pyx")], include_dirs=[CSRC],
                    extra_compile_args=OPTIMIZE + cflags, extra_link_args=lflags)
    directives = dict(boundscheck=False, wraparound=False, initializedcheck=False,
                      nonecheck=False, cdivision=True)
    dist = Distribution({"name": "membench", "ext_modules": cythonize(
        [ext], include_path=[CSRC], language_level=3, quiet=True,
        compiler_directives=directives)})
    build_ext = dist.get_command_obj("build_ext")
    build_ext.build_lib = out_dir
    build_ext.build_temp = os.path.join(out_dir, "temp")
    dist.run_command("build_ext")
    return build_ext.get_ext_fullpath("membench")


def load_membench(out_dir):
    """Build membench.pyx in out_dir (an empty directory) and import it; the module is returned.

    Raises MembenchUnavailable when Cython or setuptools is missing or no OpenMP build works.
    """
    try:
        import Cython  # noqa: F401
        import setuptools  # noqa: F401
    except ImportError as e:
        raise MembenchUnavailable(
            f"the memory floor is compiled on demand and needs Cython and setuptools "
            f"(pip install \".[bench]\"): {e}") from None
    # the copy keeps the generated C and objects out of the source tree
    shutil.copy(os.path.join(HERE, "membench.pyx"), out_dir)
    errors = []
    for cflags, lflags in OPENMP_FLAGS:
        try:
            path = _build(out_dir, cflags, lflags)
            break
        except Exception as e:  # a compiler or link error means: try the next flags
            errors.append(f"{' '.join(cflags)}: {e}")
    else:
        raise MembenchUnavailable("could not compile membench.pyx with OpenMP: "
                                  + "; ".join(errors))
    spec = importlib.util.spec_from_file_location("membench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
