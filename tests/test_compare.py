"""pynn bench (pynn/bench/: the harness and the worker; pynn/cli/bench.py: its options): the
harness end to end at toy sizes, and the contenders computing the same thing as pynn, so the
comparison is apples to apples."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import pynn
from pynn import bench
from pynn.bench import _worker as worker
from pynn.cli import main as cli_main
from pynn.cli.bench import main as bench_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch


# ------------------------------------------------------------ the contenders compute the same
@pytest.fixture
def cython_backend():
    before = pynn.get_backend().name
    pynn.set_backend("cython")
    yield
    pynn.set_backend(before)


def _pynn_net(sizes, bn, seed=3):
    model = worker.pynn_model(sizes, bn, np.float64, seed=seed)
    loss = pynn.nn.CrossEntropyLoss()
    opt = pynn.optim.Adam(model.parameters(), lr=worker.LR)
    step, path = worker.pynn_train_step(model, loss, opt)
    return model, step, path


def _batch(sizes, n=24, seed=7):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, sizes[0])), rng.integers(0, sizes[-1], n)


# In float64: Adam divides each gradient by its own RMS, so a gradient that is only rounding
# noise (the Dense biases before BatchNorm have a zero true gradient) would become a full step in
# float32 and differ between implementations; in float64 eps dominates such a step.
@pytest.mark.parametrize("case", ["small", "medium"])
def test_numpy_loop_follows_pynn_loss_trajectory(case, cython_backend):
    spec = worker.case_spec(case, quick=True)
    sizes, bn = spec["sizes"], spec["bn"]
    model, step, path = _pynn_net(sizes, bn)
    assert path == "model.train_step"  # what the timings say they timed: the compiled step
    loop = worker.NumpyLoopMLP.from_pynn(model, sizes, bn)
    X, y = _batch(sizes)
    ours = [step(X, y) for _ in range(6)]
    theirs = [loop.step(X, y) for _ in range(6)]
    assert ours[-1] < ours[0]  # it trains
    np.testing.assert_allclose(theirs, ours, rtol=1e-11)
    # the weights after the steps, and eval-mode outputs (BatchNorm's running statistics);
    # atol: a Dense bias before BatchNorm only moves by rounding noise (~1e-12, not an output)
    after = worker.NumpyLoopMLP.from_pynn(model, sizes, bn)
    for a, b in zip(after.params, loop.params):
        for k in a:
            np.testing.assert_allclose(b[k], a[k], rtol=1e-9, atol=1e-10, err_msg=k)
    # eval-mode outputs on pynn's weights and running statistics (BatchNorm's): the two
    # predicts, without the trajectories' drift above (up to 1e-10 in a weight, which the
    # outputs carry on; how much depends on the CPU's rounding of those noise-sized steps)
    Xp = _batch(sizes, n=50, seed=8)[0]
    np.testing.assert_allclose(after.predict(Xp, 16), model.predict(Xp, batch_size=16),
                               rtol=1e-9, atol=1e-12)


def test_numpy_loop_on_a_shuffled_epoch_matches_pynn_trainer(cython_backend):
    """The epoch case: Trainer.fit(seed=rep) walks the batches of worker.epoch_order(rep)."""
    spec = worker.case_spec("epoch", quick=True)
    sizes, bn, batch = spec["sizes"], spec["bn"], spec["batch"]
    model, _, _ = _pynn_net(sizes, bn)
    loop = worker.NumpyLoopMLP.from_pynn(model, sizes, bn)
    X, y = _batch(sizes, n=97)  # a last batch of one row joins the one before
    trainer = pynn.Trainer(model, pynn.nn.CrossEntropyLoss(), pynn.optim.Adam(
        model.parameters(), lr=worker.LR))
    history = trainer.fit(X, y, epochs=1, batch_size=batch, seed=2, verbose=0)
    order = worker.epoch_order(2, X.shape[0])
    bounds = worker.batch_bounds(X.shape[0], batch)
    assert bounds == pynn.data.batch_bounds(X.shape[0], batch)
    losses = [loop.step(X[order[lo:hi]], y[order[lo:hi]]) * (hi - lo) for lo, hi in bounds]
    np.testing.assert_allclose(sum(losses) / X.shape[0], history.history["loss"][0],
                               rtol=1e-11)


@pytest.mark.parametrize("case", ["small", "medium"])
def test_torch_contender_follows_pynn_loss_trajectory(case, cython_backend):
    torch = _torch_or_none()
    if torch is None:
        pytest.skip("torch is optional")
    spec = worker.case_spec(case, quick=True)
    sizes, bn = spec["sizes"], spec["bn"]
    model, step, _ = _pynn_net(sizes, bn)
    net = worker.torch_model(torch, sizes, bn, np.float64)
    net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()})
    info = {}
    opt = worker.torch_adam(torch, net.parameters(), info)
    X, y = _batch(sizes)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    ours, theirs = [], []
    for _ in range(6):
        ours.append(step(X, y))
        opt.zero_grad()
        value = torch.nn.functional.cross_entropy(net(Xt), yt)
        value.backward()
        opt.step()
        theirs.append(value.item())
    np.testing.assert_allclose(theirs, ours, rtol=1e-10)


def test_resnet_case_is_the_same_net_in_pynn_and_torch(cython_backend):
    """The ResNet-MLP case: pynn's and torch's nets share state_dict keys and, without
    Dropout's random masks, follow the same AdamW trajectory (float64); pynn's step is the
    compiled program with the Dropout the case has."""
    torch = _torch_or_none()
    if torch is None:
        pytest.skip("torch is optional")
    spec = dict(worker.case_spec("resnet", quick=True), dropout=0.0)
    model = worker.pynn_contender.pynn_resnet(spec, np.float64)
    net = worker.libraries.torch_resnet(torch, spec, np.float64)
    net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()})
    loss = pynn.nn.CrossEntropyLoss()
    opt = pynn.optim.AdamW(model.parameters(), lr=worker.LR)
    info = {}
    topt = worker.torch_adam(torch, net.parameters(), info, "adamw")
    assert info["torch_optimizer"] == "AdamW"
    X, y = _batch(spec["sizes"])
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    ours, theirs = [], []
    for _ in range(5):
        ours.append(model.train_step(X, y, loss, opt))
        topt.zero_grad()
        value = torch.nn.functional.cross_entropy(net(Xt), yt)
        value.backward()
        topt.step()
        theirs.append(value.item())
    np.testing.assert_allclose(theirs, ours, rtol=1e-10)
    dropped = worker.pynn_contender.pynn_resnet(worker.case_spec("resnet", quick=True),
                                                np.float32)
    program = dropped.compiled_step(X.astype(np.float32), loss,
                                    pynn.optim.AdamW(dropped.parameters()))
    assert program.op_names().count("dropout") == spec["blocks"]


@pytest.mark.parametrize("case", ["small", "medium"])
def test_jax_contender_follows_pynn_loss_trajectory(case, cython_backend):
    jax = pytest.importorskip("jax")
    pytest.importorskip("optax")
    spec = worker.case_spec(case, quick=True)
    sizes, bn = spec["sizes"], spec["bn"]
    weights = worker.initial_weights(sizes, bn, np.float64)
    model, step, _ = _pynn_net(sizes, bn)
    worker.load_weights(model, weights)
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        jax_step, _, jax_weights = worker.jax_programs(weights)
        X, y = _batch(sizes)
        ours = [step(X, y) for _ in range(6)]
        theirs = [jax_step(X, y) for _ in range(6)]
        np.testing.assert_allclose(theirs, ours, rtol=1e-10)
        after = worker.NumpyLoopMLP.from_pynn(model, sizes, bn).params
        for a, b in zip(after, jax_weights()):
            for k in a:  # (a Dense bias before BatchNorm moves by rounding noise only)
                np.testing.assert_allclose(b[k], a[k], rtol=1e-9, atol=1e-10, err_msg=k)
    finally:
        jax.config.update("jax_enable_x64", before)


def test_every_contender_predicts_the_same_from_the_shared_weights(cython_backend):
    # the predict and latency cases run every contender on inference_weights: the same logits
    spec = worker.case_spec("latency-16")
    X, _ = worker.make_data(spec, np.float32)
    weights = worker.inference_weights(spec, np.float32)
    model = worker.load_weights(worker.pynn_model(spec["sizes"], spec["bn"], np.float32),
                                weights).eval()
    ours = model.predict(X)
    tol = dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(worker.NumpyLoopMLP(spec["sizes"], spec["bn"], np.float32,
                                                   params=weights).predict(X), ours, **tol)
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx"):
        session = worker.ort_session(worker.onnx_graph(weights, np.float32), 1)
        np.testing.assert_allclose(session.run(None, {"X": X})[0], ours, **tol)
    if importlib.util.find_spec("jax") and importlib.util.find_spec("optax"):
        np.testing.assert_allclose(worker.jax_programs(weights)[1](X), ours, **tol)
    torch = _torch_or_none()
    if torch is not None:
        net = worker.torch_load_weights(
            torch, worker.torch_model(torch, spec["sizes"], spec["bn"], np.float32), weights)
        with torch.no_grad():
            np.testing.assert_allclose(net.eval()(torch.from_numpy(X)).numpy(), ours, **tol)


def test_floor_products_are_the_case_gemms():
    spec = worker.case_spec("medium", quick=True)
    for variant in ("numpy", "scipy"):
        calls = worker._gemm_calls(spec, np.float32, variant)  # checks each product itself
        # 3 forward, 3 dW, 2 dX (none for the first layer)
        assert len(calls) == 8
    resnet = worker.case_spec("resnet", quick=True)  # stem, 2 blocks of 2, head: 6 Dense
    assert len(worker._gemm_calls(resnet, np.float32, "numpy")) == 6 + 6 + 5
    predict = worker.case_spec("predict", quick=True)
    n_batches = len(worker.batch_bounds(predict["n"], predict["batch"]))
    assert len(worker._gemm_calls(predict, np.float32, "scipy")) == 3 * n_batches


# ------------------------------------------------------------------------- the harness
def _check_results(path, cases, contenders):
    results = json.loads(path.read_text())
    assert set(results["cases"]) == set(cases)
    assert results["machine"]["cpu_model"]
    assert results["machine"]["versions"]["numpy"] == np.__version__
    assert results["options"]["threads"] == 2
    for name, case in results["cases"].items():
        entries = case["contenders"]
        expected = [c for c in contenders
                    if worker.CASES[name]["kind"] in bench.APPLIES[c]
                    and c in worker.CASES[name].get("contenders", worker.CONTENDERS)]
        assert list(entries) == expected, name
        ref = entries["pynn"]["median"]
        for c, e in entries.items():
            assert e["status"] == "ok", (name, c, e.get("reason"), e.get("stderr"))
            times = [t for run in e["runs"] for t in run["times"]]
            assert times and all(t > 0 for t in times), (name, c)
            assert e["n"] == len(times)
            assert e["min"] <= e["median"] <= e["max"]
            assert e["median"] == pytest.approx(float(np.median(times)), rel=1e-12)
            assert e["ratio_vs_pynn"] == pytest.approx(e["median"] / ref, rel=1e-12)
            if "floor" in entries:
                assert e["ratio_vs_floor"] == pytest.approx(
                    e["median"] / entries["floor"]["median"], rel=1e-12)
        if "floor" in entries:
            assert case["pynn_over_floor"] == pytest.approx(
                ref / entries["floor"]["median"], rel=1e-12)
    return results


def test_pynn_bench_quick_runs_every_case(tmp_path, capsys):
    contenders = ["pynn", "pynn-eager", "pynn-loop", "numpy-loop", "floor"]
    out = tmp_path / "out"
    status = cli_main(["bench", "--quick", "--contenders", ",".join(contenders),
                       "--threads", "2", "--out", str(out)])
    printed = capsys.readouterr().out
    assert status == 0, printed
    results = _check_results(out / "compare.json", bench.CASE_NAMES, contenders)
    epoch = results["cases"]["epoch"]
    assert epoch["fit_over_loop"] == pytest.approx(
        epoch["contenders"]["pynn"]["median"] / epoch["contenders"]["pynn-loop"]["median"])
    info = results["cases"]["small"]["contenders"]["pynn"]["runs"][0]["info"]
    assert info["step_path"] == "model.train_step"
    eager = results["cases"]["small"]["contenders"]["pynn-eager"]["runs"][0]["info"]
    assert eager["step_path"].startswith("eager")
    assert info["pynn_threads"] == 2
    assert os.path.realpath(info["pynn_file"]) == os.path.realpath(pynn.__file__)
    # the floor ran with OpenBLAS's workers spinning (the user's environment) and sleeping,
    # and kept the faster; its times are that variant's
    for case in results["cases"].values():
        floor = case["contenders"]["floor"]
        if "OPENBLAS_THREAD_TIMEOUT" not in bench.child_environment():
            assert set(floor["env_variant_medians"]) == {"", "OPENBLAS_THREAD_TIMEOUT=4"}
            assert floor["median"] == min(floor["env_variant_medians"].values())
            assert {r["env_variant"] for r in floor["runs"]} == {floor["env_variant"]}
    # the NumPy loop and the floor never import pynn (it sets thread variables at import)
    for c in ("numpy-loop", "floor"):
        assert not results["cases"]["small"]["contenders"][c]["runs"][0]["info"]["pynn_loaded"]
    for case in results["cases"].values():
        assert case["title"] in printed
    assert "pynn / floor" in printed and "Trainer.fit / hand-written pynn loop" in printed
    assert (out / "compare.txt").read_text().splitlines()[0] == printed.splitlines()[0]
    if (out / "compare.png").exists():
        assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    else:
        assert "no plot: matplotlib is not installed" in printed


def test_torch_contenders_run_isolated(tmp_path, capsys):
    """torch eager and pynn-after-torch (or their skip note without torch), one small case."""
    contenders = ["pynn", "torch", "pynn-after-torch"]
    out = tmp_path / "out"
    status = bench_main(["--quick", "--cases", "small", "--contenders", ",".join(contenders),
                         "--out", str(out)])
    printed = capsys.readouterr().out
    assert status == 0, printed
    results = json.loads((out / "compare.json").read_text())
    entries = results["cases"]["small"]["contenders"]
    if _torch_or_none() is None:
        assert entries["torch"]["status"] == "skipped"
        assert entries["pynn-after-torch"]["status"] == "skipped"
        assert "torch is not importable" in printed
        return
    _check_results(out / "compare.json", ["small"], contenders)
    torch_info = entries["torch"]["runs"][0]["info"]
    assert torch_info["torch_threads"] == 2 and not torch_info["pynn_loaded"]
    assert torch_info["torch_adam"] == "fused"
    # torch's process starts without the variables ``import pynn`` sets in this process
    assert torch_info["env_at_start"].get("OMP_WAIT_POLICY") == \
        bench.child_environment().get("OMP_WAIT_POLICY")
    after = entries["pynn-after-torch"]["runs"][0]["info"]
    assert after["torch_loaded"] and after["pynn_loaded"]


def test_jax_and_onnxruntime_contenders_run_isolated(tmp_path, capsys):
    """The JAX and ONNX Runtime contenders (or their skip notes): a step, predict and latency
    case each where they apply, in processes that never import pynn."""
    contenders = ["pynn", "jax", "onnxruntime"]
    out = tmp_path / "out"
    status = bench_main(["--quick", "--cases", "small,predict,latency-1", "--contenders",
                         ",".join(contenders), "--out", str(out)])
    printed = capsys.readouterr().out
    assert status == 0, printed
    results = json.loads((out / "compare.json").read_text())
    assert "onnxruntime" not in results["cases"]["small"]["contenders"]  # no training there
    installed = {"jax": bool(importlib.util.find_spec("jax") and importlib.util.find_spec("optax")),
                 "onnxruntime": bool(importlib.util.find_spec("onnxruntime")
                                     and importlib.util.find_spec("onnx"))}
    for case in ("predict", "latency-1"):
        for name in ("jax", "onnxruntime"):
            entry = results["cases"][case]["contenders"][name]
            if not installed[name]:
                assert entry["status"] == "skipped" and "is not importable" in entry["reason"]
                continue
            assert entry["status"] == "ok", entry.get("stderr")
            info = entry["runs"][0]["info"]
            assert not info["pynn_loaded"]
    if installed["onnxruntime"]:
        entries = results["cases"]
        assert entries["latency-1"]["contenders"]["onnxruntime"]["runs"][0]["info"][
            "ort_threads"] == 1
        assert entries["predict"]["contenders"]["onnxruntime"]["runs"][0]["info"][
            "ort_threads"] == 2
    if installed["jax"]:
        info = results["cases"]["small"]["contenders"]["jax"]["runs"][0]["info"]
        assert info["jax_loaded"] and info["step_path"].startswith("jax.jit")


def test_missing_peers_are_skipped_with_a_note(tmp_path, capsys, monkeypatch):
    """Without jax or onnxruntime (here: made unimportable in the contenders' processes) their
    rows are skipped with a note, and the run goes on."""
    for name in ("jax", "onnxruntime"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(
            f"raise ImportError({'No module named ' + name + ' (hidden by the test)'!r}, "
            f"name={name!r})\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    out = tmp_path / "out"
    status = bench_main(["--quick", "--cases", "latency-1", "--contenders",
                         "pynn,jax,onnxruntime,floor", "--out", str(out)])
    printed = capsys.readouterr().out
    assert status == 0, printed
    entries = json.loads((out / "compare.json").read_text())["cases"]["latency-1"]["contenders"]
    for name in ("jax", "onnxruntime"):
        assert entries[name]["status"] == "skipped"
        assert f"{name}: skipped" in printed
    assert entries["pynn"]["status"] == entries["floor"]["status"] == "ok"


def test_bad_options_are_one_line_errors(capsys):
    assert cli_main(["bench", "--cases", "small,huge"]) == 2
    assert "unknown case 'huge'" in capsys.readouterr().err
    assert cli_main(["bench", "--rounds", "0"]) == 2


def test_compare_script_is_the_same_command(tmp_path):
    """bench/compare.py is a thin script over pynn.cli.bench (run from outside the source tree)."""
    script = os.path.join(ROOT, "bench", "compare.py")
    proc = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for option in ("--cases", "--contenders", "--rounds", "--reps", "--threads", "--out",
                   "--quick"):
        assert option in proc.stdout


@pytest.mark.filterwarnings("ignore::UserWarning")  # ConvergenceWarning: fixed epochs
@pytest.mark.parametrize("case", ["sk-digits", "sk-mnist"])
def test_fit_cases_train_the_same_network_as_sklearn(case):
    """The fit cases time the same training in both: from the same settings pynn.sklearn and
    scikit-learn's MLPClassifier reach the same weights (float64) after the case's epochs."""
    sk = pytest.importorskip("sklearn.neural_network")
    from pynn.sklearn import MLPClassifier

    spec = worker.case_spec(case, quick=True)
    X, y = worker.make_data(spec, np.float64)
    params = worker.sklearn_params(spec)
    ours = MLPClassifier(**params).fit(X, y)
    theirs = sk.MLPClassifier(**params).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == spec["epochs"]
    for a, b in zip(ours.coefs_, theirs.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert worker.CASES[case]["kind"] == "fit" and "fit" in bench.APPLIES["sklearn"]
