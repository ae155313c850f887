"""ONNX export checked against onnxruntime: layers over gates, layers, directions, layouts,
lengths, initial states, clip and activations; whole models; trained checkpoints with their
pre- and post-processing (``lstm-numba predict``'s path); the CLI; refusals.

float32 throughout: onnxruntime's CPU LSTM and GRU are float only. Tolerance 1e-5 relative
to the largest reference value.
"""

import sys

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import max_rel_err
from interop_helpers import one_line, run_onnx, series_windows, train_checkpoints

import lstm_numba as ln
from lstm_numba.interop import InteropError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

TOL = 1e-5
T, B, I, H = 5, 3, 3, 4
LENGTHS = np.array([5, 2, 4], dtype=np.int32)

LAYERS = [
    dict(),
    dict(num_layers=2, bidirectional=True),
    dict(gate="gru", num_layers=2, bidirectional=True, batch_first=True),
    dict(gate="peephole", clip=0.5, bidirectional=True),
    dict(gate="coupled", num_layers=2, clip=0.8),
    dict(activation="softsign", recurrent_activation="hard_sigmoid", bidirectional=True),
    # each activation list (and its alpha, beta) compiles kernels of its own: run under -m slow
    pytest.param(dict(activation="scaled_tanh", activation_alpha=1.5, activation_beta=0.7,
                      recurrent_activation="hard_sigmoid", recurrent_activation_alpha=0.3,
                      recurrent_activation_beta=0.4), marks=pytest.mark.slow),
    pytest.param(dict(gate="gru", activation="elu", activation_alpha=0.5, recurrent_activation="sigmoid",
                      clip=0.6, bias=False), marks=pytest.mark.slow),
]


def _layer_id(kw) -> str:
    return "-".join(f"{k}={v}" for k, v in kw.items()) or "lstm"


@pytest.mark.parametrize("kw", LAYERS, ids=_layer_id)
@pytest.mark.parametrize("extras", [False, True], ids=["plain", "lengths+state"])
def test_layer_matches_onnxruntime(tmp_path, kw, extras):
    rnn = ln.LSTM(I, H, seed=1, **kw).eval()
    for value in rnn.params.values():  # larger weights, so that clip and hard_sigmoid's corners bite
        value *= 2.0
    path = tmp_path / "rnn.onnx"
    ln.export_onnx(rnn, path, sequence_lens=extras, initial_state=extras)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(B, T, I) if rnn.batch_first else (T, B, I)).astype(np.float32)
    n, ld = len(rnn.state_names), rnn.num_layers * rnn.num_directions
    s0 = (0.5 * rng.normal(size=(n, ld, B, H))).astype(np.float32)
    feeds = {"X": x}
    if extras:
        feeds.update(sequence_lens=LENGTHS, initial_h=s0[0], **({"initial_c": s0[1]} if n == 2 else {}))
        y, final = rnn(x, s0[0] if n == 1 else tuple(s0), lengths=LENGTHS)
    else:
        y, final = rnn(x)
    out = run_onnx(path, feeds)
    assert max_rel_err(y, out["Y"]) < TOL
    finals = [final] if n == 1 else list(final)
    for name, ours in zip(["Y_h", "Y_c"], finals):
        assert max_rel_err(ours, out[name]) < TOL, name


def test_float64_layer_exports_as_float32(tmp_path):
    rnn = ln.LSTM(I, H, seed=5, dtype="float64", bidirectional=True).eval()
    model = ln.export_onnx(rnn, tmp_path / "r64.onnx")
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in model.graph.initializer
               if t.name.startswith(("W_", "R_", "B_")))
    x = np.random.default_rng(6).normal(size=(T, B, I))
    assert max_rel_err(rnn(x)[0], run_onnx(tmp_path / "r64.onnx", {"X": x.astype(np.float32)})["Y"]) < TOL


def test_graph_names_and_opset(tmp_path):
    rnn = ln.LSTM(I, H, batch_first=True)
    model = ln.export_onnx(rnn, tmp_path / "r.onnx", opset=15, sequence_lens=True)
    assert [i.name for i in model.graph.input] == ["X", "sequence_lens"]
    assert [o.name for o in model.graph.output] == ["Y", "Y_h", "Y_c"]
    assert model.opset_import[0].version == 15
    assert [n.op_type for n in model.graph.node].count("LSTM") == 1
    assert all(a.name != "layout" for n in model.graph.node for a in n.attribute)  # Transpose instead


MODELS = [
    lambda: ln.Forecaster(2, 3, hidden_size=5, seed=0),
    lambda: ln.SequenceRegressor(2, 2, hidden_size=5, num_layers=2, bidirectional=True, gate="gru", seed=0),
    lambda: ln.SequenceRegressor(2, 3, hidden_size=4, return_sequences=True, bidirectional=True, seed=0),
    lambda: ln.SequenceClassifier(2, 4, hidden_size=5, num_layers=2, bidirectional=True, gate="peephole", seed=0),
]


@pytest.mark.parametrize("make", MODELS, ids=["forecaster", "regressor-gru-2-bi", "seq2seq-bi", "classifier"])
def test_sequence_models_match_onnxruntime(tmp_path, make):
    model = make().eval()
    path = tmp_path / "m.onnx"
    ln.export_onnx(model, path, sequence_lens=True)
    x = np.random.default_rng(3).normal(size=(B, T, 2)).astype(np.float32)
    out = run_onnx(path, {"x": x, "lengths": LENGTHS})
    if isinstance(model, ln.SequenceClassifier):
        assert max_rel_err(model.predict(x, LENGTHS), out["logits"]) < TOL
        assert max_rel_err(model.predict_proba(x, LENGTHS), out["probabilities"]) < TOL
    else:
        assert max_rel_err(model.predict(x, LENGTHS), out["prediction"]) < TOL


@pytest.mark.parametrize("kw", [dict(embedding_dim=3), dict(embedding_dim=None, gate="gru", num_layers=2)],
                         ids=["embedding", "one-hot-gru-2"])
def test_charlm_matches_onnxruntime_with_carried_state(tmp_path, kw):
    model = ln.CharLM(6, hidden_size=5, seed=0, **kw).eval()
    path = tmp_path / "lm.onnx"
    ln.export_onnx(model, path, initial_state=True)
    ids = np.random.default_rng(4).integers(0, 6, size=(2, 7))
    _, state = model(ids[:, :3])
    logits, final = model(ids[:, 3:], state)
    states = [state] if model.rnn.gate_name == "gru" else list(state)
    feeds = {"ids": ids[:, 3:].astype(np.int64), "h0": states[0], **({"c0": states[1]} if len(states) == 2 else {})}
    out = run_onnx(path, feeds)
    assert max_rel_err(logits, out["logits"]) < TOL
    from lstm_numba.nn.losses import softmax
    assert max_rel_err(softmax(logits), out["probabilities"]) < TOL
    assert max_rel_err(final if len(states) == 1 else final[0], out["h_n"]) < TOL


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return train_checkpoints(tmp_path_factory.mktemp("runs"))


@pytest.mark.parametrize("name", ["forecast", "forecast_seq2seq"])
def test_trained_forecaster_includes_the_predict_path(tmp_path, checkpoints, name):
    """The graph takes raw values in original units and returns the forecast in original
    units: exactly what ``lstm-numba predict`` computes."""
    from lstm_numba.training.data.series import Normalizer
    from lstm_numba.training.tasks.forecast import (
        forecast_to_original,
        forecast_windows,
    )

    trained = ln.load_trained(checkpoints[name])
    path = tmp_path / "f.onnx"
    model = ln.export_onnx(checkpoints[name], path)
    windows = series_windows(trained)
    d = trained.data
    normalizer = Normalizer.from_dict(d["normalizer"])
    expected = []
    for values in windows:  # the CLI's own functions, one window at a time
        x, x_norm = forecast_windows(values, normalizer, d["target_index"], d["window"], d["relative"], np.float32)
        pred = trained.model.predict(x)
        pred = pred[:, -1] if pred.ndim == 3 else pred
        expected.append(forecast_to_original(pred, x_norm, normalizer, d["target_index"], d["relative"])[0])
    out = run_onnx(path, {"values": windows.astype(np.float32)})
    assert out["forecast"].shape == (len(windows), d["horizon"])
    assert max_rel_err(out["forecast"], np.array(expected)) < TOL
    import json
    meta = json.loads({p.key: p.value for p in model.metadata_props}["lstm_numba"])
    assert meta["task"] == "forecast" and meta["data"]["columns"] == d["columns"] and meta["preprocess"]


def test_trained_classifier_and_charlm(tmp_path, checkpoints):
    from lstm_numba.training.data.labelled import load_labelled
    from lstm_numba.training.data.series import Normalizer

    trained = ln.load_trained(checkpoints["classify"])
    ln.export_onnx(trained, tmp_path / "c.onnx")
    seqs = load_labelled(trained.config.data)
    x, lengths = seqs.x[:5], seqs.lengths[:5]
    x_norm = Normalizer.from_dict(trained.data["normalizer"]).transform(x)
    mask = np.arange(x.shape[1])[None, :] < lengths[:, None]
    expected = trained.model.predict_proba(np.where(mask[:, :, None], x_norm, 0.0).astype(np.float32), lengths)
    out = run_onnx(tmp_path / "c.onnx", {"x": x.astype(np.float32), "lengths": lengths.astype(np.int32)})
    assert max_rel_err(out["probabilities"], expected) < TOL

    trained = ln.load_trained(checkpoints["charlm"])
    model = ln.export_onnx(trained, tmp_path / "lm.onnx")
    import json
    meta = json.loads({p.key: p.value for p in model.metadata_props}["lstm_numba"])
    assert meta["data"]["vocab"] == trained.data["vocab"]
    ids = np.array([[0, 3, 2, 1]])
    assert max_rel_err(run_onnx(tmp_path / "lm.onnx", {"ids": ids})["logits"], trained.model(ids)[0]) < TOL


def test_cli_export(tmp_path, checkpoints):
    from lstm_numba_cli.main import cli

    out = tmp_path / "sub" / "model.onnx"
    result = CliRunner().invoke(cli, ["export", str(checkpoints["classify"]), str(out), "--opset", "16"])
    assert result.exit_code == 0, result.output
    assert out.exists() and "model.onnx" in result.output and "lengths" in result.output
    assert onnx.load(str(out)).opset_import[0].version == 16
    result = CliRunner().invoke(cli, ["export", str(tmp_path / "nope.npz"), str(out)])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "nope.npz" in result.output


def _third_party_gate(monkeypatch):
    from importlib import metadata

    from lstm_numba import registry

    point = metadata.EntryPoint(name="fancy", value="lstm_numba_plugins.gates.lstm:gate", group="lstm_numba.gates")
    real = registry._entry_points
    monkeypatch.setattr(registry, "_entry_points", lambda group: list(real(group)) + (
        [point] if group == "lstm_numba.gates" else []))
    registry.REGISTRY.clear()
    return ln.LSTM(I, H, gate="fancy")


def test_refusals_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(InteropError) as info:
        ln.export_onnx(ln.LSTM(I, H, gate="slstm"), tmp_path / "s.onnx")
    one_line(info, "'slstm'", "no ONNX operator")
    with pytest.raises(InteropError) as info:
        ln.export_onnx(ln.SequenceClassifier(2, 3, gate="slstm"), tmp_path / "s.onnx")
    one_line(info, "'slstm'")
    with pytest.raises(InteropError) as info:
        ln.export_onnx({"weight": np.zeros(3)}, tmp_path / "d.onnx")
    one_line(info, "no recurrent layer")
    with pytest.raises(InteropError) as info:
        ln.export_onnx(ln.LSTM(I, H), tmp_path / "o.onnx", opset=9)
    one_line(info, "opset 9")
    with pytest.raises(InteropError) as info:
        ln.export_onnx(ln.Forecaster(2, 3), tmp_path / "o.onnx", initial_state=True)
    one_line(info, "initial_state", "zero state")
    with pytest.raises(InteropError) as info:
        ln.export_onnx(ln.CharLM(5), tmp_path / "o.onnx", sequence_lens=True)
    one_line(info, "sequence_lens", "character LM")
    try:
        with pytest.raises(InteropError) as info:
            ln.export_onnx(_third_party_gate(monkeypatch), tmp_path / "f.onnx")
        one_line(info, "'fancy'", "only the lstm, peephole, coupled and gru gates")
    finally:
        monkeypatch.undo()
        from lstm_numba import registry
        registry.REGISTRY.clear()
    assert not (tmp_path / "s.onnx").exists()


def test_missing_extra_names_the_pip_command(tmp_path, monkeypatch):
    from lstm_numba.interop import MissingExtraError

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(MissingExtraError) as info:
        ln.export_onnx(ln.LSTM(I, H), tmp_path / "r.onnx")
    one_line(info, 'pip install "lstm-numba[onnx]"')
    with pytest.raises(MissingExtraError):
        ln.load_onnx(tmp_path / "r.onnx")
