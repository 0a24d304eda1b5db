"""examples/12_search.py (grid vs random search, one knob that matters): the quick run."""
import importlib.util
import pathlib

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "examples" / "12_search.py"


def _load():
    spec = importlib.util.spec_from_file_location("example_12_search", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_random_search_covers_the_knob_that_matters(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    result = _load().run(tmp_path, quick=True)
    # 9 trials each: the grid tries 3 learning rates three times, random search 9 different ones
    assert result["trials"] == 9
    assert result["grid_distinct_lr"] == 3 and result["random_distinct_lr"] == 9
    # the learning rate is the knob that matters, the annealing factor is not
    assert result["lr_spread"] > 0.5 and result["decay_spread"] < 0.1
    # and so random search's best is at least the grid's in most draws
    assert result["random_wins"] >= 0.5
    assert result["random_wins"] == pytest.approx(
        sum(b >= result["grid_best"] for b in result["random_bests"])
        / len(result["random_bests"]))
    assert all(0 <= b <= 1 for b in result["random_bests"])
    png = tmp_path / "12_search.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size < 150_000
    assert "random trials cover it" in capsys.readouterr().out
