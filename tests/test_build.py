"""Portability of csrc/: CPU-feature clones only where the C library can dispatch them."""
import fnmatch
import glob
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")
GUARD_HEADER = "_simd_clone.h"


def _sources():
    """Hand-written C/Cython sources (the generated csrc/*.c are not ours to check)."""
    return sorted(p for ext in ("pyx", "pxd", "pxi", "h")
                  for p in glob.glob(os.path.join(CSRC, f"*.{ext}")))


def _code(path):
    """The file without comments (C block comments; Cython "# " comments in .pyx/.pxd), so a
    comment may talk about target_clones while code may not use it unguarded."""
    with open(path) as f:
        text = re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)
    if path.endswith((".pyx", ".pxd", ".pxi")):
        text = re.sub(r"(^|\s)# .*$", "", text, flags=re.M)
    return text


def test_target_clones_is_spelled_only_in_the_glibc_guarded_header():
    # target_clones needs ifunc, which musl lacks: a clone outside the guard breaks musllinux.
    spelled = [os.path.basename(p) for p in _sources() if "target_clones" in _code(p)]
    assert spelled == [GUARD_HEADER]
    text = _code(os.path.join(CSRC, GUARD_HEADER)).replace("\\\n", " ")  # join continued lines
    block = re.search(r"^#if (.*?)\n(.*?)^#else\n(.*?)^#endif", text, re.S | re.M)
    assert block, f"{GUARD_HEADER}: no #if/#else/#endif around the clones"
    condition, then, otherwise = block.groups()
    for term in ("defined(__GNUC__)", "!defined(__clang__)", "defined(__x86_64__)",
                 "defined(__linux__)", "defined(__GLIBC__)"):
        assert term in condition, term
    # PYNN_TARGET_CLONES and PYNN_TARGET_CLONES_FMA, both inside the guard
    assert text.count("target_clones") == then.count("target_clones") == 2
    assert "#define PYNN_TARGET_CLONES\n" in otherwise  # empty: the baseline build


def test_every_clone_user_includes_the_guard_header():
    users = [os.path.basename(p) for p in _sources()
             if "PYNN_TARGET_CLONES" in _code(p) and not p.endswith(GUARD_HEADER)]
    assert sorted(users) == ["_activations.h", "_batchnorm.h", "_direct.h", "_dot.h", "_optim.h",
                             "_rownorm.h"]
    for name in users:
        assert f'#include "{GUARD_HEADER}"' in _code(os.path.join(CSRC, name)), name


def test_c_lives_in_headers_not_in_cython_strings():
    # `cdef extern from *` with a string of C hides the C from C tools and from setup.py's
    # header dependencies: C goes in a csrc/*.h named in `cdef extern from "..."` instead.
    inline = [os.path.basename(p) for p in _sources() if not p.endswith(".h")
              and re.search(r"cdef extern from \*", _code(p))]
    assert inline == []


def _kernel_modules():
    """setup.py's KERNEL_MODULES table (name -> cimports numpy), read without running setup()."""
    import ast
    with open(os.path.join(ROOT, "setup.py")) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "KERNEL_MODULES":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no KERNEL_MODULES table")


def test_every_pyx_is_built_and_only_numpy_users_get_numpy_headers():
    table = _kernel_modules()
    pyx = {os.path.basename(p)[:-4] for p in glob.glob(os.path.join(CSRC, "*.pyx"))}
    assert set(table) == pyx
    for name, uses_numpy in table.items():
        code = _code(os.path.join(CSRC, f"{name}.pyx"))
        assert bool(re.search(r"^\s*cimport numpy\b", code, re.M)) == uses_numpy, name


def test_the_sdist_ships_every_header():
    patterns = [line.split()[2:] for line in open(os.path.join(ROOT, "MANIFEST.in"))
                if line.startswith("recursive-include csrc ")]
    for path in glob.glob(os.path.join(CSRC, "*.h")):
        name = os.path.basename(path)
        assert any(fnmatch.fnmatch(name, p) for ps in patterns for p in ps), name


def _compiler():
    """Python's C compiler command; skips the test where there is none (an installed wheel
    tested without a compiler: tools/build_wheel.sh)."""
    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")
    if not shutil.which(cc[0]):
        pytest.skip(f"no C compiler ({cc[0]})")
    return cc


def _preprocess(tmp_path, extra_args):
    """PYNN_HAVE_TARGET_CLONES as the C compiler's preprocessor sees it."""
    cc = _compiler()
    src = tmp_path / "probe.c"
    src.write_text(f'#include "{GUARD_HEADER}"\npynn_clones = PYNN_HAVE_TARGET_CLONES\n')
    r = subprocess.run([*cc, "-E", "-P", *extra_args, "-I", CSRC, str(src)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return int(re.search(r"pynn_clones = (\d)", r.stdout).group(1))


def test_without_glibc_the_guard_turns_clones_off(tmp_path):
    # A C library without __GLIBC__ (musl): -nostdinc and an empty <string.h> stand in for it,
    # while the compiler still predefines __GNUC__, __x86_64__ and __linux__.
    fake = tmp_path / "musl"
    fake.mkdir()
    (fake / "string.h").write_text("/* no glibc here */\n")
    assert _preprocess(tmp_path, ["-nostdinc", "-I", str(fake)]) == 0


@pytest.mark.skipif(not (sys.platform == "linux" and platform.machine() == "x86_64"
                         and platform.libc_ver()[0] == "glibc"),
                    reason="clones are built on x86-64 glibc Linux only")
def test_with_glibc_and_gcc_the_guard_keeps_clones_on(tmp_path):
    version = subprocess.run([*_compiler(), "--version"], capture_output=True, text=True).stdout
    if "clang" in version.lower():
        pytest.skip("clang builds the baseline only")
    assert _preprocess(tmp_path, []) == 1
