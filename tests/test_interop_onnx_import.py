"""ONNX import: files ``torch.onnx.export`` writes for nn.LSTM / nn.GRU load as layers that
reproduce torch's outputs; our own exports come back with their configuration and weights;
unsupported files get one line naming what is wrong."""

import warnings

import numpy as np
import pytest
from conftest import max_rel_err
from interop_helpers import one_line, run_onnx

import lstm_numba as ln
from lstm_numba.interop import InteropError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
from onnx import TensorProto, helper  # noqa: E402

T, B, I, H = 5, 2, 3, 4


def _torch_export(module, x, path, constant_folding=True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=14,
                          do_constant_folding=constant_folding)


@pytest.mark.parametrize("cls,kw", [
    (torch.nn.LSTM, dict(num_layers=2, bidirectional=True, batch_first=True)),
    (torch.nn.GRU, dict(num_layers=2)),
    (torch.nn.LSTM, dict(bias=False)),
], ids=["lstm-2-bi-batch-first", "gru-2", "lstm-nobias"])
def test_torch_onnx_export_loads_and_matches_torch(tmp_path, cls, kw):
    torch.manual_seed(0)
    module = cls(I, H, **kw).eval()
    x = torch.randn((B, T, I) if kw.get("batch_first") else (T, B, I))
    path = tmp_path / "torch.onnx"
    _torch_export(module, x, path)
    rnn = ln.load_onnx(path)
    assert isinstance(rnn, ln.GRU if cls is torch.nn.GRU else ln.LSTM)
    assert (rnn.num_layers, rnn.bidirectional, rnn.batch_first, rnn.bias) == (
        kw.get("num_layers", 1), kw.get("bidirectional", False), kw.get("batch_first", False), kw.get("bias", True))
    with torch.no_grad():
        y_ref, _ = module(x)
    assert max_rel_err(rnn(x.numpy())[0], y_ref.numpy()) < 1e-5
    torch_names = dict(module.named_parameters())  # the weights themselves, by torch's names
    for key, value in rnn.state_dict().items():
        np.testing.assert_allclose(value, torch_names[key].detach().numpy(), rtol=0, atol=0)


def test_weights_computed_from_constants_are_evaluated(tmp_path):
    """Without constant folding torch writes the gate reordering as Slice/Concat nodes."""
    torch.manual_seed(1)
    module = torch.nn.LSTM(I, H, bidirectional=True).eval()
    x = torch.randn(T, B, I)
    _torch_export(module, x, tmp_path / "nofold.onnx", constant_folding=False)
    rnn = ln.load_onnx(tmp_path / "nofold.onnx")
    with torch.no_grad():
        y_ref, _ = module(x)
    assert max_rel_err(rnn(x.numpy())[0], y_ref.numpy()) < 1e-5


@pytest.mark.parametrize("kw", [
    dict(gate="peephole", clip=0.5, num_layers=2, bidirectional=True),
    pytest.param(dict(gate="coupled", activation="softsign", recurrent_activation="hard_sigmoid",
                      recurrent_activation_alpha=0.3, recurrent_activation_beta=0.4), marks=pytest.mark.slow),
    pytest.param(dict(gate="gru", activation="scaled_tanh", activation_alpha=1.5, activation_beta=0.5,
                      batch_first=True), marks=pytest.mark.slow),
], ids=["peephole", "coupled", "gru"])
def test_our_export_comes_back(tmp_path, kw):
    rnn = ln.LSTM(I, H, seed=3, **kw).eval()
    ln.export_onnx(rnn, tmp_path / "r.onnx")
    back = ln.load_onnx(tmp_path / "r.onnx")
    expected = {k: v for k, v in rnn.config().items() if k != "seed"}
    assert {k: v for k, v in back.config().items() if k != "seed"} == pytest.approx(expected)
    for key, value in rnn.state_dict().items():
        np.testing.assert_array_equal(back.params[key], value)
    x = np.random.default_rng(4).normal(size=(B, T, I) if rnn.batch_first else (T, B, I)).astype(np.float32)
    assert max_rel_err(back(x)[0], run_onnx(tmp_path / "r.onnx", {"X": x})["Y"]) < 1e-5


def _save(tmp_path, nodes, inits, name="g.onnx", inputs=None):
    inputs = inputs or [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, B, I])]
    outputs = [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)]
    graph = helper.make_graph(nodes, "g", inputs, outputs,
                              [onnx.numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.save(model, str(tmp_path / name))
    return tmp_path / name


def _weights(n):
    rng = np.random.default_rng(0)
    return {"W": rng.normal(size=(1, n * H, I)), "R": rng.normal(size=(1, n * H, H))}


def test_unsupported_files_get_one_line(tmp_path):
    relu = _save(tmp_path, [helper.make_node("Relu", ["X"], ["Y"])], {}, "relu.onnx")
    with pytest.raises(InteropError) as info:
        ln.load_onnx(relu)
    one_line(info, "relu.onnx", "no LSTM or GRU node", "Relu")

    gru0 = _save(tmp_path, [helper.make_node("GRU", ["X", "W", "R"], ["Y"], hidden_size=H, name="g0")],
                 _weights(3), "gru0.onnx")
    with pytest.raises(InteropError) as info:
        ln.load_onnx(gru0)
    one_line(info, "gru0.onnx", "GRU node 'g0'", "linear_before_reset=0")

    gh = _save(tmp_path, [helper.make_node("LSTM", ["X", "W", "R"], ["Y"], hidden_size=H, name="l",
                                           activations=["Sigmoid", "Tanh", "Relu"])], _weights(4), "gh.onnx")
    with pytest.raises(InteropError) as info:
        ln.load_onnx(gh)
    one_line(info, "unsupported activations", "g and h differ")

    odd = _save(tmp_path, [helper.make_node("LSTM", ["X", "W", "R"], ["Y"], hidden_size=H,
                                            activations=["Affine", "Tanh", "Tanh"])], _weights(4), "aff.onnx")
    with pytest.raises(InteropError) as info:
        ln.load_onnx(odd)
    one_line(info, "unsupported activation 'Affine'")

    rnn = _save(tmp_path, [helper.make_node("RNN", ["X", "W", "R"], ["Y"], hidden_size=H)], _weights(1), "rnn.onnx")
    with pytest.raises(InteropError) as info:
        ln.load_onnx(rnn)
    one_line(info, "plain ONNX RNN")

    rev = _save(tmp_path, [helper.make_node("LSTM", ["X", "W", "R"], ["Y"], hidden_size=H, direction="reverse")],
                _weights(4), "rev.onnx")
    with pytest.raises(InteropError) as info:
        ln.load_onnx(rev)
    one_line(info, "direction='reverse'")

    w_input = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, B, I]),
               helper.make_tensor_value_info("W", TensorProto.FLOAT, [1, 4 * H, I])]
    live = _save(tmp_path, [helper.make_node("LSTM", ["X", "W", "R"], ["Y"], hidden_size=H)],
                 {"R": _weights(4)["R"]}, "live.onnx", inputs=w_input)
    with pytest.raises(InteropError) as info:
        ln.load_onnx(live)
    one_line(info, "W is not a constant")

    npz = tmp_path / "c.npz"
    np.savez(npz, a=np.zeros(2))
    with pytest.raises(InteropError) as info:
        ln.load_onnx(npz)
    one_line(info, "c.npz", "not an ONNX model")
