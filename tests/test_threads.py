"""Default thread count: OMP_NUM_THREADS, the affinity mask and cgroup CPU quotas, in that order."""
import json
import os
import subprocess
import sys

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import pynn
from pynn import _threads
from pynn._threads import cgroup_cpu_limit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_pynn(code, omp=None):
    """Run ``code`` after ``import pynn`` in a fresh interpreter with OMP_NUM_THREADS=omp
    (unset for None); its CompletedProcess."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = ROOT
    if omp is not None:
        env["OMP_NUM_THREADS"] = omp
    return subprocess.run([sys.executable, "-c", "import pynn; " + code], capture_output=True,
                          text=True, env=env, timeout=120)


def test_omp_num_threads_sets_the_default_in_a_fresh_process():
    r = _run_pynn("print(pynn.get_num_threads()); pynn.show_config()", omp="1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "1"
    assert "threads: 1 (OMP_NUM_THREADS)" in lines
    # More threads than CPUs is the user's call, as in OpenMP itself; a comma list's first
    # entry (libgomp's outermost level) counts.
    n = len(os.sched_getaffinity(0)) + 1 if hasattr(os, "sched_getaffinity") else 3
    r = _run_pynn("print(pynn.get_num_threads())", omp=f" {n} ,2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(n)]


@pytest.mark.parametrize("value", ["abc", "0", "-2", "2.5", ",3"])
def test_invalid_omp_num_threads_is_ignored_with_a_warning(value):
    default = _run_pynn("print(pynn.get_num_threads())")
    r = _run_pynn("print(pynn.get_num_threads())", omp=value)
    assert r.returncode == 0, r.stderr
    assert r.stdout == default.stdout
    assert "OMP_NUM_THREADS" in r.stderr and "ignores it" in r.stderr


def test_omp_num_threads_parsing():
    assert _threads._omp_num_threads(None) is None
    assert _threads._omp_num_threads("") is None
    assert _threads._omp_num_threads("4") == 4
    assert _threads._omp_num_threads("4,2,1") == 4
    with pytest.warns(RuntimeWarning, match="OMP_NUM_THREADS='0' is not a positive integer"):
        assert _threads._omp_num_threads("0") is None


def _fake_default(monkeypatch, omp, cpus, quota):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    if omp is not None:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    monkeypatch.setattr(_threads, "cgroup_cpu_limit", lambda root="/": quota)
    return _threads._default_threads()


def test_default_is_the_smaller_of_affinity_and_cgroup_quota_unless_omp_num_threads_is_set(
        monkeypatch):
    assert _fake_default(monkeypatch, None, 8, None) == (8, "CPU affinity")
    assert _fake_default(monkeypatch, None, 8, 3) == (3, "cgroup CPU quota")
    assert _fake_default(monkeypatch, None, 2, 3) == (2, "CPU affinity")
    assert _fake_default(monkeypatch, "5", 8, 3) == (5, "OMP_NUM_THREADS")


def test_get_num_threads_resolves_the_default_once_and_set_num_threads_overrides(monkeypatch):
    before = pynn.get_num_threads()
    monkeypatch.setattr(_threads, "_default_threads", lambda: (1, "cgroup CPU quota"))
    monkeypatch.setattr(_threads, "_num_threads", None)
    try:
        with threadpool_limits(limits=2, user_api="blas"):  # restored when the block exits
            assert pynn.get_num_threads() == 1
            assert _threads.num_threads_source() == "cgroup CPU quota"
            # A BLAS with more threads than the default is limited to it.
            assert all(lib["num_threads"] == 1 for lib in threadpool_info()
                       if lib["user_api"] == "blas")
        pynn.set_num_threads(2)
        assert pynn.get_num_threads() == 2
        assert _threads.num_threads_source() == "pynn.set_num_threads"
    finally:
        pynn.set_num_threads(before)


def test_cap_blas_only_lowers():
    with threadpool_limits(limits=1, user_api="blas"):
        _threads._cap_blas(2)
        assert all(lib["num_threads"] == 1 for lib in threadpool_info()
                   if lib["user_api"] == "blas")


# ------------------------------------------------------------------------ cgroup reader
def _tree(tmp_path, proc_cgroup, files):
    """A fake filesystem root: proc/self/cgroup and files under sys/fs/cgroup."""
    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "self" / "cgroup").write_text(proc_cgroup)
    for rel, text in files.items():
        path = tmp_path / "sys" / "fs" / "cgroup" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(tmp_path)


def test_cgroup_v2_cpu_max_of_the_process_cgroup(tmp_path):
    root = _tree(tmp_path, "0::/app.slice/job\n", {
        "app.slice/job/cpu.max": "150000 100000\n",  # 1.5 CPUs -> 2 threads
        "cpu.max": "max 100000\n",
    })
    assert cgroup_cpu_limit(root) == 2


def test_cgroup_v2_parent_limit_binds_and_unlimited_is_none(tmp_path):
    root = _tree(tmp_path / "a", "0::/parent/child\n", {
        "parent/cpu.max": "300000 100000\n",
        "parent/child/cpu.max": "max 100000\n",
    })
    assert cgroup_cpu_limit(root) == 3
    root = _tree(tmp_path / "b", "0::/parent/child\n", {"parent/child/cpu.max": "max 100000\n"})
    assert cgroup_cpu_limit(root) is None


def test_cgroup_v2_container_whose_listed_path_is_not_mounted_uses_the_mount_root(tmp_path):
    root = _tree(tmp_path, "0::/docker/abc123\n", {"cpu.max": "200000 100000\n"})
    assert cgroup_cpu_limit(root) == 2


def test_cgroup_v1_cfs_quota_and_period(tmp_path):
    root = _tree(tmp_path / "a", "4:memory:/x\n3:cpu,cpuacct:/docker/abc\n", {
        "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "250000\n",
        "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
    })
    assert cgroup_cpu_limit(root) == 3
    # quota -1 means unlimited; a quota below one period still allows one thread
    root = _tree(tmp_path / "b", "2:cpu:/\n", {
        "cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"})
    assert cgroup_cpu_limit(root) is None
    root = _tree(tmp_path / "c", "2:cpu:/\n", {
        "cpu/cpu.cfs_quota_us": "5000\n", "cpu/cpu.cfs_period_us": "100000\n"})
    assert cgroup_cpu_limit(root) == 1


def test_cgroup_reader_tolerates_missing_and_garbled_files(tmp_path):
    assert cgroup_cpu_limit(str(tmp_path / "nothing")) is None  # no /proc/self/cgroup at all
    root = _tree(tmp_path / "a", "0::/\n", {})  # no cpu.max
    assert cgroup_cpu_limit(root) is None
    root = _tree(tmp_path / "b", "garbage\n0::/\n", {"cpu.max": "lots\n"})
    assert cgroup_cpu_limit(root) is None
    root = _tree(tmp_path / "c", "2:cpu:/\n", {"cpu/cpu.cfs_quota_us": "200000\n"})  # no period
    assert cgroup_cpu_limit(root) is None
    root = _tree(tmp_path / "d", "0::/../escaped\n", {"cpu.max": "100000 100000\n"})
    assert cgroup_cpu_limit(root) == 1  # a path outside the namespace: only the mount root


def test_import_sets_no_environment_variable_and_blas_runs_inside_the_team():
    """One thread pool by construction, not by wait-policy variables: importing pynn leaves
    os.environ alone, and the kernels' products run single-threaded inside pynn's team."""
    code = ("import os, json; before = dict(os.environ); import pynn; "
            "from pynn._kernels import dense; "
            "print(json.dumps([sorted(set(os.environ.items()) ^ set(before.items())), "
            "dense.blas_thread_control()]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(pynn.__file__)))
    changed, controlled = json.loads(out.stdout.strip().splitlines()[-1])
    assert changed == []
    assert controlled  # scipy's OpenBLAS exposes its thread setter


def test_share_cores_divides_the_default_among_the_ranks_but_keeps_a_chosen_count(monkeypatch):
    """An MPI rank's default: the CPUs it sees over the ranks that see them (no
    oversubscription); OMP_NUM_THREADS and set_num_threads are the user's and stay."""
    before = pynn.get_num_threads()
    try:
        with threadpool_limits(limits=before, user_api="blas"):
            monkeypatch.setattr(_threads, "_num_threads_source", None)
            monkeypatch.setattr(_threads, "_default_threads", lambda: (8, "CPU affinity"))
            _threads.share_cores(2)
            assert pynn.get_num_threads() == 4
            assert _threads.num_threads_source() == "CPU affinity / 2 processes"
            _threads.share_cores(16)
            assert pynn.get_num_threads() == 1  # never 0
            monkeypatch.setattr(_threads, "_default_threads", lambda: (3, "OMP_NUM_THREADS"))
            monkeypatch.setattr(_threads, "_num_threads", 3)
            monkeypatch.setattr(_threads, "_num_threads_source", "OMP_NUM_THREADS")
            _threads.share_cores(2)
            assert pynn.get_num_threads() == 3
            pynn.set_num_threads(2)
            monkeypatch.setattr(_threads, "_default_threads", lambda: (8, "CPU affinity"))
            _threads.share_cores(4)
            assert pynn.get_num_threads() == 2
            with pytest.raises(ValueError, match="processes"):
                _threads.share_cores(0)
    finally:
        pynn.set_num_threads(before)
