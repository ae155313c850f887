"""Models (rnn + dense head): outputs and every gradient against the same model in PyTorch,
parameter names and init, seeds, state dicts, and input checks."""

import math

import numpy as np
import pytest
from train_helpers import TorchModel, torch

from lstm_numba.nn.heads import Dense, Embedding
from lstm_numba.nn.losses import mse_loss, softmax_cross_entropy
from lstm_numba.nn.models import (
    CharLM,
    Forecaster,
    SequenceClassifier,
    SequenceRegressor,
    build_model,
    derive_seed,
)

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")

TOL = 1e-10


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


def assert_grads_match(grads, ref):
    assert list(grads) == list(ref) or set(grads) == set(ref)
    for key in ref:
        assert grads[key].shape == ref[key].shape, key
        assert rel(grads[key], ref[key]) < TOL, (key, rel(grads[key], ref[key]))


@needs_torch
@pytest.mark.parametrize("bidirectional,layers", [(False, 1), (True, 2)])
def test_forecaster_seq2one_matches_torch_with_lengths(rng, bidirectional, layers):
    model = Forecaster(3, 4, hidden_size=5, num_layers=layers, bidirectional=bidirectional,
                       dtype="float64", seed=1)
    ref = TorchModel(model)
    x = rng.standard_normal((6, 7, 3))
    lengths = np.array([7, 3, 5, 1, 7, 2])
    y_true = rng.standard_normal((6, 4))

    pred = model.forward(x, lengths)
    loss, dpred = mse_loss(pred, y_true)
    grads = model.backward(dpred)

    tp = ref(torch.tensor(x), lengths)
    tloss = torch.nn.functional.mse_loss(tp, torch.tensor(y_true))
    tloss.backward()
    assert rel(pred, tp.detach().numpy()) < TOL
    assert abs(loss - tloss.item()) < 1e-12
    assert_grads_match(grads, ref.grads())


@needs_torch
def test_regressor_seq2seq_matches_torch(rng):
    model = SequenceRegressor(2, 3, hidden_size=4, return_sequences=True, dtype="float64", seed=2)
    ref = TorchModel(model)
    x = rng.standard_normal((3, 5, 2))
    target = rng.standard_normal((3, 5, 3))
    pred = model.forward(x)
    assert pred.shape == (3, 5, 3)
    _, dpred = mse_loss(pred, target)
    grads = model.backward(dpred)
    tp = ref(torch.tensor(x))
    torch.nn.functional.mse_loss(tp, torch.tensor(target)).backward()
    assert rel(pred, tp.detach().numpy()) < TOL
    assert_grads_match(grads, ref.grads())


@needs_torch
@pytest.mark.parametrize("gate", ["lstm", pytest.param("gru", marks=pytest.mark.slow)])
def test_classifier_cross_entropy_matches_torch(rng, gate):
    model = SequenceClassifier(3, 4, hidden_size=6, bidirectional=True, dtype="float64", seed=3, gate=gate)
    ref = TorchModel(model)
    x = rng.standard_normal((5, 6, 3))
    lengths = np.array([6, 2, 4, 1, 5])
    labels = np.array([0, 3, 1, 2, 3])
    logits = model.forward(x, lengths)
    _, dlogits = softmax_cross_entropy(logits, labels)
    grads = model.backward(dlogits)
    tl = ref(torch.tensor(x), lengths)
    torch.nn.functional.cross_entropy(tl, torch.tensor(labels)).backward()
    assert rel(logits, tl.detach().numpy()) < TOL
    assert_grads_match(grads, ref.grads())
    proba = model.predict_proba(x, lengths)
    assert np.allclose(proba.sum(1), 1.0) and proba.shape == (5, 4)


@needs_torch
@pytest.mark.parametrize("embedding_dim", [4, None])
def test_charlm_two_chunks_with_carried_state_match_torch(rng, embedding_dim):
    model = CharLM(7, hidden_size=5, num_layers=2, embedding_dim=embedding_dim, dtype="float64", seed=4)
    ref = TorchModel(model)
    ids = rng.integers(0, 7, size=(3, 9))
    targets = rng.integers(0, 7, size=(3, 9))
    state, tstate = None, None
    for chunk in (slice(0, 5), slice(5, 9)):
        logits, state = model.forward(ids[:, chunk], state)
        b, t, v = logits.shape
        loss, dl = softmax_cross_entropy(logits.reshape(b * t, v), targets[:, chunk].reshape(-1))
        grads = model.backward(dl.reshape(b, t, v))

        ref.zero_grad()
        tlogits, tstate = ref(torch.tensor(ids[:, chunk]), state=tstate)
        tloss = torch.nn.functional.cross_entropy(tlogits.reshape(b * t, v),
                                                  torch.tensor(targets[:, chunk].reshape(-1)))
        tloss.backward()
        tstate = tuple(s.detach() for s in tstate)  # truncated BPTT: detach between chunks
        assert abs(loss - tloss.item()) < 1e-12
        assert rel(logits, tlogits.detach().numpy()) < TOL
        assert_grads_match(grads, ref.grads())
        assert rel(state[0], tstate[0].numpy()) < TOL


def test_parameter_names_follow_torch_modules():
    m = CharLM(10, hidden_size=8, embedding_dim=3)
    assert list(m.params) == ["embedding.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0",
                              "rnn.bias_ih_l0", "rnn.bias_hh_l0", "head.weight", "head.bias"]
    f = Forecaster(2, 3, hidden_size=4, bidirectional=True)
    assert f.params["head.weight"].shape == (3, 8)
    assert "rnn.weight_ih_l0_reverse" in f.params


def test_dense_init_is_torch_linear_uniform_bound():
    d = Dense(16, 1000, np.float64, np.random.default_rng(0))
    w, b = d.params["weight"], d.params["bias"]
    bound = 1 / math.sqrt(16)
    assert w.shape == (1000, 16) and b.shape == (1000,)
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert np.abs(w).max() > 0.95 * bound  # spread over the whole interval
    e = Embedding(50, 20, np.float32, np.random.default_rng(0))
    assert e.params["weight"].dtype == np.float32 and 0.9 < e.params["weight"].std() < 1.1


def test_params_are_live_arrays_and_grads_have_the_same_keys(rng):
    m = Forecaster(2, 1, hidden_size=3, dtype="float64", seed=0)
    assert m.params["rnn.weight_ih_l0"] is m.rnn.params["weight_ih_l0"]
    assert m.params["head.weight"] is m.head.params["weight"]
    pred = m.forward(rng.standard_normal((2, 4, 2)))
    g = m.backward(np.ones_like(pred))
    assert list(g) == list(m.params)
    assert all(g[k].shape == m.params[k].shape and g[k].dtype == np.float64 for k in g)


@pytest.mark.parametrize("layer, key, replacement, expected", [
    (Dense(3, 2, np.float32, np.random.default_rng(0)), "weight", np.zeros((2, 3)),
     r"params\['weight'\]: expected a float32 array of shape \(2, 3\), got float64 \(2, 3\)"),
    (Dense(3, 2, np.float32, np.random.default_rng(0)), "bias", np.zeros(3, np.float32),
     r"params\['bias'\]: expected a float32 array of shape \(2,\), got float32 \(3,\)"),
    (Embedding(5, 2, np.float64, np.random.default_rng(0)), "weight", np.zeros((2, 5)),
     r"params\['weight'\]: expected a float64 array of shape \(5, 2\), got float64 \(2, 5\)"),
])
def test_a_replaced_head_parameter_is_checked(layer, key, replacement, expected):
    """As for the recurrent layer: an array swapped into ``params`` with another dtype or
    shape is named, not silently upcast (every later result float64) or read wrongly."""
    dense = isinstance(layer, Dense)
    inputs = np.ones((4, 3), layer.dtype) if dense else np.array([0, 4, 1])
    good = layer.params[key]
    layer.params[key] = replacement
    with pytest.raises(ValueError, match=expected):
        layer.forward(inputs)
    layer.params[key] = np.full_like(good, 0.5)  # a replacement of the right dtype and shape is used
    p = layer.params
    expected = inputs @ p["weight"].T + p["bias"] if dense else p["weight"][inputs]
    np.testing.assert_allclose(layer.forward(inputs), expected, rtol=1e-6)


@pytest.mark.parametrize("replace_in", ["model", "layer"])
def test_a_model_refuses_params_that_its_layers_no_longer_read(replace_in, rng):
    """The optimisers update ``model.params`` and the layers read their own dicts: an array
    replaced in either would otherwise leave training updating weights nothing reads."""
    m = CharLM(6, hidden_size=4, embedding_dim=3, dtype="float64", seed=0)
    ids = rng.integers(0, 6, (2, 5))
    live = m.params["head.weight"]
    if replace_in == "model":
        m.params["head.weight"] = np.zeros_like(live)
    else:
        m.head.params["weight"] = np.zeros_like(live)
    with pytest.raises(ValueError, match=r"params\['head.weight'\]: no longer the array that head reads"):
        m.forward(ids)
    m.params["head.weight"] = m.head.params["weight"] = live
    live[...] = 0  # the supported way: in place
    logits, _ = m.forward(ids)
    np.testing.assert_array_equal(logits, np.broadcast_to(m.params["head.bias"], logits.shape))
    f = Forecaster(2, 1, hidden_size=3, seed=0)  # the regressors check too
    f.params["rnn.weight_hh_l0"] = f.params["rnn.weight_hh_l0"].copy()
    with pytest.raises(ValueError, match=r"params\['rnn.weight_hh_l0'\]: no longer the array that rnn reads"):
        f.forward(np.zeros((2, 4, 2)))


def test_one_seed_fixes_every_initial_weight():
    a, b, c = (CharLM(9, hidden_size=4, seed=s) for s in (5, 5, 6))
    for key in a.params:
        assert np.array_equal(a.params[key], b.params[key])
    assert not np.array_equal(a.params["head.weight"], c.params["head.weight"])
    assert not np.array_equal(a.params["rnn.weight_ih_l0"], c.params["rnn.weight_ih_l0"])
    assert derive_seed(5, "rnn") != derive_seed(5, "head") != derive_seed(6, "head")
    fresh = Forecaster(1, 1, hidden_size=2)
    assert isinstance(fresh.config()["seed"], int)  # drawn and recorded


def test_build_model_from_config_roundtrip():
    for m in (Forecaster(3, 2, hidden_size=4, num_layers=2, dropout=0.2, seed=1, dtype="float64"),
              SequenceClassifier(2, 5, hidden_size=3, bidirectional=True, seed=2),
              CharLM(11, hidden_size=6, embedding_dim=None, seed=3),
              SequenceRegressor(1, 1, hidden_size=2, return_sequences=True, seed=4)):
        clone = build_model(m.config())
        assert type(clone) is type(m) and clone.config() == m.config()
        for key in m.params:
            assert np.array_equal(clone.params[key], m.params[key])
        with_rnn = build_model({**m.config(), "rnn": m.rnn.config()})  # as checkpoints store it
        assert with_rnn.config() == m.config()
    with pytest.raises(ValueError, match="unknown model type"):
        build_model({"type": "transformer"})


def test_load_state_dict_checks_keys_and_shapes():
    m = Forecaster(2, 1, hidden_size=3, seed=0)
    state = m.state_dict()
    state["head.weight"] = state["head.weight"] * 0 + 0.5
    m.load_state_dict(state)
    assert np.all(m.params["head.weight"] == 0.5)
    with pytest.raises(ValueError, match="missing keys"):
        m.load_state_dict({k: v for k, v in state.items() if k != "head.bias"})
    bad = dict(state, **{"head.weight": np.zeros((2, 3))})
    with pytest.raises(ValueError, match="head.weight"):
        m.load_state_dict(bad)
    assert np.all(m.params["head.weight"] == 0.5)  # unchanged on error


def test_inference_needs_no_tape_and_backward_requires_one(rng):
    m = SequenceClassifier(2, 3, hidden_size=3, seed=0).eval()
    m.forward(rng.standard_normal((2, 4, 2)).astype(np.float32))
    with pytest.raises(RuntimeError, match="forward"):
        m.backward(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="lengths"):
        m.forward(rng.standard_normal((2, 4, 2)), lengths=[5, 1])
    with pytest.raises(ValueError, match="bidirectional"):
        CharLM(5, bidirectional=True)
    with pytest.raises(ValueError, match="ids"):
        CharLM(5, hidden_size=2).forward(np.array([[0, 5]]))


def test_dropout_is_seeded_and_only_in_training(rng):
    x = rng.standard_normal((4, 5, 2))
    outs = []
    for _ in range(2):
        m = Forecaster(2, 1, hidden_size=4, num_layers=2, dropout=0.5, dtype="float64", seed=9)
        outs.append((m.forward(x), m.forward(x), m.eval().forward(x), m.forward(x)))
    first, second = outs
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert not np.array_equal(first[0], first[1])  # fresh masks each step
    assert np.array_equal(first[2], first[3])  # eval: no dropout


def test_sample_is_seeded_and_respects_prime():
    m = CharLM(6, hidden_size=4, seed=0)
    a = m.sample(30, [1, 2, 3], temperature=0.7, rng=np.random.default_rng(1))
    b = m.sample(30, [1, 2, 3], temperature=0.7, rng=np.random.default_rng(1))
    c = m.sample(30, [1, 2, 3], temperature=0.7, rng=np.random.default_rng(2))
    assert a.shape == (30,) and np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() < 6
    cold = m.sample(20, [0], temperature=1e-3, rng=np.random.default_rng(3))
    # near-zero temperature is greedy: the sample equals the argmax chain
    state, cur, greedy = None, 0, []
    for _ in range(20):
        logits, state = m.forward(np.array([[cur]]), state, need_grad=False)
        cur = int(logits[0, -1].argmax())
        greedy.append(cur)
    assert cold.tolist() == greedy
    assert m.training  # mode restored
