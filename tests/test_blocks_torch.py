"""Issue 21's blocks against torch end to end: a torch state_dict of
Linear-LayerNorm-GELU-RMSNorm-Linear loads strictly (and pynn's into torch), and a network with
LayerNorm, GELU, a residual SiLU block and RMSNorm trained 5 steps with ``train_step`` and AdamW
ends on torch's weights (float64 to round-off, float32 to the tolerance table)."""
import numpy as np
import pytest

import pynn
from pynn import nn

from conftest import assert_close

torch = pytest.importorskip("torch")

F32, F64 = np.float32, np.float64


def _tdtype(dtype):
    return torch.float64 if dtype == F64 else torch.float32


def test_torch_state_dict_of_linear_layernorm_gelu_rmsnorm_linear_loads_strictly(dtype, rng):
    torch.manual_seed(0)
    tnet = torch.nn.Sequential(torch.nn.Linear(7, 12), torch.nn.LayerNorm(12), torch.nn.GELU(),
                               torch.nn.RMSNorm(12), torch.nn.Linear(12, 3)).to(_tdtype(dtype))
    with torch.no_grad():  # not the initial ones and zeros
        for p in tnet.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    ours = nn.Sequential(nn.Dense(7, 12, dtype=dtype), nn.LayerNorm(12, dtype=dtype), nn.GELU(),
                         nn.RMSNorm(12, dtype=dtype), nn.Dense(12, 3, dtype=dtype))
    ours.load_state_dict(tnet.state_dict(), strict=True)
    X = (rng.standard_normal((9, 7)) * 2).astype(dtype)
    with torch.no_grad():
        expected = tnet(torch.from_numpy(X)).numpy()
    assert_close(ours.predict(X), expected, dtype, k=12)
    assert_close(ours.eval().forward(X), expected, dtype, k=12)
    # and back: pynn's state dict is torch's, key for key
    twin = torch.nn.Sequential(torch.nn.Linear(7, 12), torch.nn.LayerNorm(12), torch.nn.GELU(),
                               torch.nn.RMSNorm(12), torch.nn.Linear(12, 3)).to(_tdtype(dtype))
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()},
                         strict=True)


class _TorchResidual(torch.nn.Module):
    def __init__(self, *layers):
        super().__init__()
        self.block = torch.nn.Sequential(*layers)

    def forward(self, x):
        return x + self.block(x)


def _nets(dtype, width=16, classes=4):
    ours = nn.Sequential(
        nn.Dense(10, width, dtype=dtype), nn.LayerNorm(width, dtype=dtype), nn.GELU(),
        nn.Residual(nn.LayerNorm(width, dtype=dtype), nn.Dense(width, 24, dtype=dtype),
                    nn.SiLU(), nn.Dense(24, width, dtype=dtype)),
        nn.RMSNorm(width, dtype=dtype), nn.Dense(width, classes, dtype=dtype))
    theirs = torch.nn.Sequential(
        torch.nn.Linear(10, width), torch.nn.LayerNorm(width), torch.nn.GELU(),
        _TorchResidual(torch.nn.LayerNorm(width), torch.nn.Linear(width, 24), torch.nn.SiLU(),
                       torch.nn.Linear(24, width)),
        torch.nn.RMSNorm(width), torch.nn.Linear(width, classes)).to(_tdtype(dtype))
    theirs.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in
                            ours.state_dict().items()}, strict=True)
    return ours, theirs


@pytest.mark.parametrize("n_threads", [1, 2], ids=["t1", "t2"])
def test_five_adamw_train_steps_end_on_torchs_weights(dtype, n_threads, rng):
    pynn.set_num_threads(n_threads)
    ours, theirs = _nets(dtype)
    X = (rng.standard_normal((48, 10)) * 1.5).astype(dtype)
    y = rng.integers(0, 4, 48)
    loss = nn.CrossEntropyLoss(label_smoothing=0.05)
    opt = pynn.optim.AdamW(ours.parameters(), lr=0.02, weight_decay=0.05)
    topt = torch.optim.AdamW(theirs.parameters(), lr=0.02, weight_decay=0.05)
    tloss = torch.nn.CrossEntropyLoss(label_smoothing=0.05)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    values, tvalues = [], []
    for _ in range(5):
        values.append(ours.train_step(X, y, loss, opt))
        topt.zero_grad()
        value = tloss(theirs(Xt), yt)
        value.backward()
        topt.step()
        tvalues.append(value.item())
    assert values[-1] < values[0]
    assert_close(values, tvalues, dtype, k=48)
    ours_state = ours.state_dict()
    for key, value in theirs.state_dict().items():
        assert_close(ours_state[key], value.numpy(), dtype, err_msg=key)
