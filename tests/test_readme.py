"""The README's Python examples run as written (so the tour cannot rot)."""
import importlib.util
import pathlib
import re

import pytest

import pynn

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_examples():
    assert len(_python_blocks()) >= 2


def test_readme_examples_run(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")  # the tour draws learning curves
    monkeypatch.chdir(tmp_path)  # the tour writes curves.png and model.npz
    namespace = {}
    try:
        for block in _python_blocks():
            if "import pynn.onnx" in block and importlib.util.find_spec("onnx") is None:
                continue  # the "onnx" extra's example (the test extra installs it)
            exec(compile(block, str(README), "exec"), namespace)
    finally:
        pynn.manual_seed(None)  # the tour seeds pynn globally; later tests expect it unseeded
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert (tmp_path / "model.npz").stat().st_size > 0
    assert namespace["trainer"].evaluate(
        namespace["scaler"].transform(namespace["X_test"]), namespace["y_test"]
    )["accuracy"] > 0.9
