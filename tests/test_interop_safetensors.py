"""safetensors: round trips of layers and models, files torch writes and reads, bad input.

The reference is PyTorch itself: ``safetensors.torch.load_file`` of our file gives a
state_dict that ``torch.nn.LSTM``/``nn.GRU`` load and run to our outputs.
"""

import sys

import numpy as np
import pytest
from conftest import max_rel_err

import lstm_numba as ln
from lstm_numba.interop import InteropError, MissingExtraError

pytest.importorskip("safetensors")
torch = pytest.importorskip("torch")
import safetensors.torch  # noqa: E402

T, B, I, H = 5, 3, 4, 6


def _x(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("kw", [dict(), dict(gate="gru", num_layers=2, bidirectional=True),
                                pytest.param(dict(gate="peephole", clip=0.7, activation="softsign", bias=False),
                                             marks=pytest.mark.slow)],
                         ids=["lstm", "gru-2-bi", "peephole-clip"])
def test_layer_round_trip(tmp_path, kw):
    rnn = ln.LSTM(I, H, seed=1, **kw).eval()
    path = tmp_path / "rnn.safetensors"
    rnn.save_safetensors(path)
    loaded = ln.load_safetensors(path)
    assert type(loaded) is type(rnn) and loaded.config() == rnn.config()
    for key, value in rnn.state_dict().items():
        np.testing.assert_array_equal(loaded.params[key], value)
    x = _x((T, B, I))
    np.testing.assert_array_equal(loaded(x)[0], rnn(x)[0])
    fresh = ln.LSTM(I, H, seed=2, **kw)  # and in place, into an existing layer
    fresh.load_safetensors(path)
    np.testing.assert_array_equal(fresh.eval()(x)[0], rnn(x)[0])


def test_models_round_trip(tmp_path):
    models = [ln.Forecaster(2, 3, hidden_size=5, seed=0, bidirectional=True),
              ln.SequenceClassifier(2, 4, hidden_size=5, seed=0, gate="gru"),
              ln.CharLM(7, hidden_size=5, embedding_dim=3, seed=0)]
    for model in models:
        path = tmp_path / f"{model.config()['type']}.safetensors"
        model.save_safetensors(path)
        loaded = ln.load_safetensors(path)
        assert type(loaded) is type(model) and loaded.config() == model.config()
        if isinstance(model, ln.CharLM):
            ids = np.array([[1, 2, 3], [4, 5, 6]])
            np.testing.assert_array_equal(loaded(ids)[0], model.eval()(ids)[0])
        else:
            x = _x((2, T, 2))
            np.testing.assert_array_equal(loaded.predict(x), model.eval().predict(x))


@pytest.mark.parametrize("gate", ["lstm", "gru"])
def test_torch_loads_our_file_and_matches(tmp_path, gate):
    rnn = ln.LSTM(I, H, num_layers=2, bidirectional=True, gate=gate, seed=3).eval()
    path = tmp_path / "rnn.safetensors"
    rnn.save_safetensors(path)
    state = safetensors.torch.load_file(str(path))
    cls = torch.nn.GRU if gate == "gru" else torch.nn.LSTM
    twin = cls(I, H, num_layers=2, bidirectional=True)
    twin.load_state_dict(state)  # strict: every name and shape is torch's
    x = _x((T, B, I), seed=4)
    with torch.no_grad():
        y_ref, _ = twin(torch.from_numpy(x))
    assert max_rel_err(rnn(x)[0], y_ref.numpy()) < 1e-5


def test_model_file_loads_into_torch_modules(tmp_path):
    model = ln.SequenceClassifier(I, 3, hidden_size=H, seed=5).eval()
    path = tmp_path / "clf.safetensors"
    model.save_safetensors(path)
    state = safetensors.torch.load_file(str(path))
    rnn, head = torch.nn.LSTM(I, H, batch_first=True), torch.nn.Linear(H, 3)
    rnn.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("rnn.")})
    head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})
    x = _x((B, T, I), seed=6)
    with torch.no_grad():
        _, (h_n, _) = rnn(torch.from_numpy(x))
        logits = head(h_n[-1]).numpy()
    assert max_rel_err(model.predict(x), logits) < 1e-5


def test_a_file_torch_wrote_loads_as_the_layer_it_describes(tmp_path):
    torch.manual_seed(0)
    twin = torch.nn.GRU(I, H, num_layers=2, bias=False)
    path = tmp_path / "torch.safetensors"
    safetensors.torch.save_file(twin.state_dict(), str(path))
    rnn = ln.load_safetensors(path)
    assert isinstance(rnn, ln.GRU) and (rnn.num_layers, rnn.bias, rnn.bidirectional) == (2, False, False)
    x = _x((T, B, I), seed=7)
    with torch.no_grad():
        y_ref, _ = twin(torch.from_numpy(x))
    assert max_rel_err(rnn(x)[0], y_ref.numpy()) < 1e-5


def _one_line(exc_info, *fragments):
    message = str(exc_info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_bad_input_gets_one_line(tmp_path):
    npz = tmp_path / "ckpt.npz"
    np.savez(npz, a=np.zeros(3))
    with pytest.raises(InteropError) as info:
        ln.load_safetensors(npz)
    _one_line(info, "ckpt.npz", "not a safetensors file", "zip")
    with pytest.raises(InteropError) as info:
        ln.load_safetensors(tmp_path / "missing.safetensors")
    _one_line(info, "no such file")
    path = tmp_path / "rnn.safetensors"
    ln.LSTM(I, H).save_safetensors(path)
    with pytest.raises(InteropError) as info:
        ln.LSTM(I, H + 1).load_safetensors(path)
    _one_line(info, "rnn.safetensors", "weight_ih_l0")
    with pytest.raises(InteropError) as info:
        ln.save_safetensors(object(), path)
    _one_line(info, "expected an lstm-numba layer or model")
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(InteropError) as info:
        ln.load_safetensors(tmp_path / "other.safetensors")
    _one_line(info, "not an nn.LSTM/nn.GRU state_dict", "load_safetensors")


def test_missing_extra_names_the_pip_command(tmp_path, monkeypatch):
    for name in [n for n in sys.modules if n == "safetensors" or n.startswith("safetensors.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "safetensors", None)  # import safetensors -> ImportError
    with pytest.raises(MissingExtraError) as info:
        ln.LSTM(I, H).save_safetensors(tmp_path / "x.safetensors")
    _one_line(info, 'pip install "lstm-numba[safetensors]"')
