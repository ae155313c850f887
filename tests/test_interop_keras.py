"""Keras 3 import, checked against Keras itself (torch backend): the ``.keras`` files are
written and their predictions taken once per module (importing Keras is slow), then read by
``ln.load_keras`` with zipfile and h5py only."""

import os
import sys

import numpy as np
import pytest
from conftest import max_rel_err
from interop_helpers import one_line

import lstm_numba as ln
from lstm_numba.interop import InteropError, MissingExtraError

pytest.importorskip("h5py")
TOL = 1e-5
X = np.random.default_rng(0).normal(size=(3, 6, 4)).astype(np.float32)


def _build_all(directory):
    """name -> (path, Keras prediction on X) for every architecture the tests load."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("these tests run Keras on the torch backend")
    L = keras.layers
    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 4))
    functional = keras.Model(inp, L.Bidirectional(L.LSTM(3, return_sequences=True))(inp))
    models = {
        "stacked_lstm_dense": keras.Sequential([keras.Input((6, 4)), L.LSTM(5, return_sequences=True),
                                                L.Dropout(0.3), L.LSTM(5), L.Dense(2)]),
        "bi_gru_softmax": keras.Sequential([keras.Input((6, 4)), L.Bidirectional(L.GRU(3)),
                                            L.Dense(3, activation="softmax")]),
        "lstm_layer": keras.Sequential([keras.Input((6, 4)), L.LSTM(5, return_sequences=True, activation="softsign",
                                                                    recurrent_activation="hard_sigmoid",
                                                                    use_bias=False)]),
        "functional_bi_lstm": functional,
        "gru_seq_dense": keras.Sequential([keras.Input((6, 4)), L.GRU(4, return_sequences=True), L.Dense(2)]),
        "gru_reset_before": keras.Sequential([keras.Input((6, 4)), L.GRU(3, reset_after=False)]),
        "conv": keras.Sequential([keras.Input((6, 4)), L.Conv1D(2, 3), L.LSTM(2)]),
        "hard_sigmoid_head": keras.Sequential([keras.Input((6, 4)), L.LSTM(2, recurrent_activation="hard_sigmoid"),
                                               L.Dense(1)]),
    }
    rng = np.random.default_rng(1)
    out = {}
    for name, model in models.items():
        # random weights everywhere, biases included (Keras starts them at 0 and 1)
        model.set_weights([(0.6 * rng.normal(size=w.shape)).astype(np.float32) for w in model.get_weights()])
        path = directory / f"{name}.keras"
        model.save(path)
        out[name] = (path, np.asarray(model.predict(X, verbose=0)))
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return _build_all(tmp_path_factory.mktemp("keras"))


def test_models_and_layers_match_keras(files):
    model = ln.load_keras(files["stacked_lstm_dense"][0])
    assert isinstance(model, ln.SequenceRegressor) and model.rnn.num_layers == 2
    assert max_rel_err(model.predict(X), files["stacked_lstm_dense"][1]) < TOL

    clf = ln.load_keras(files["bi_gru_softmax"][0])
    assert isinstance(clf, ln.SequenceClassifier) and clf.rnn.bidirectional and clf.rnn.gate_name == "gru"
    assert max_rel_err(clf.predict_proba(X), files["bi_gru_softmax"][1]) < TOL

    rnn = ln.load_keras(files["lstm_layer"][0])
    assert isinstance(rnn, ln.LSTM) and rnn.batch_first and not rnn.bias
    assert rnn.config()["recurrent_activation"] == "hard_sigmoid"
    assert max_rel_err(rnn(X)[0], files["lstm_layer"][1]) < TOL

    bi = ln.load_keras(files["functional_bi_lstm"][0])
    assert bi.bidirectional
    assert max_rel_err(bi(X)[0], files["functional_bi_lstm"][1]) < TOL

    seq = ln.load_keras(files["gru_seq_dense"][0])
    assert seq.return_sequences
    assert max_rel_err(seq.predict(X), files["gru_seq_dense"][1]) < TOL


def test_refusals_are_one_line(files, tmp_path):
    with pytest.raises(InteropError) as info:
        ln.load_keras(files["gru_reset_before"][0])
    one_line(info, "reset_after=False")
    with pytest.raises(InteropError) as info:
        ln.load_keras(files["conv"][0])
    one_line(info, "Conv1D", "not supported")
    with pytest.raises(InteropError) as info:
        ln.load_keras(files["hard_sigmoid_head"][0])
    one_line(info, "hard_sigmoid", "without the Dense head")
    npz = tmp_path / "c.npz"
    np.savez(npz, a=np.zeros(2))
    with pytest.raises(InteropError) as info:
        ln.load_keras(npz)
    one_line(info, "c.npz", "not a Keras 3 .keras file")
    (tmp_path / "t.keras").write_text("hello")
    with pytest.raises(InteropError) as info:
        ln.load_keras(tmp_path / "t.keras")
    one_line(info, "not a Keras 3 .keras file")


def test_library_never_imports_keras_or_tensorflow(files):
    import subprocess

    code = ("import sys, lstm_numba as ln; ln.load_keras(sys.argv[1]); "
            "print(any(m.split('.')[0] in ('keras', 'tensorflow', 'torch') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(files["bi_gru_softmax"][0])], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "False"


def test_missing_h5py_names_the_extra(files, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(MissingExtraError) as info:
        ln.load_keras(files["lstm_layer"][0])
    one_line(info, 'pip install "lstm-numba[keras]"')
