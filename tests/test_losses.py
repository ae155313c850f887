"""Losses and their gradients: torch autograd, central finite differences, edge cases."""

import numpy as np
import pytest

from lstm_numba.nn.losses import mse_loss, softmax, softmax_cross_entropy

RNG = np.random.default_rng(7)
LOGITS = RNG.standard_normal((6, 5)) * 3
LABELS = np.array([0, 4, 2, 2, 1, 3])


def finite_difference(f, x, h=1e-6):
    """Central differences of scalar f at every element of x (float64)."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        up = f(x)
        x[i] = old - h
        down = f(x)
        x[i] = old
        grad[i] = (up - down) / (2 * h)
    return grad


# ---------------------------------------------------------------- mse

def test_mse_matches_torch():
    torch = pytest.importorskip("torch")
    pred, target = RNG.standard_normal((4, 3, 2)), RNG.standard_normal((4, 3, 2))
    tp = torch.tensor(pred, requires_grad=True)
    ref = torch.nn.functional.mse_loss(tp, torch.tensor(target))
    ref.backward()
    loss, dpred = mse_loss(pred, target)
    assert loss == pytest.approx(ref.item(), rel=1e-14)
    np.testing.assert_allclose(dpred, tp.grad.numpy(), rtol=1e-14)


def test_mse_gradient_finite_difference():
    pred, target = RNG.standard_normal((3, 4)), RNG.standard_normal((3, 4))
    _, dpred = mse_loss(pred, target)
    fd = finite_difference(lambda p: mse_loss(p, target)[0], pred.copy())
    np.testing.assert_allclose(dpred, fd, rtol=1e-6, atol=1e-9)


def test_mse_keeps_dtype_and_checks_shapes():
    pred = np.ones((2, 3), dtype=np.float32)
    loss, dpred = mse_loss(pred, np.zeros((2, 3)))
    assert dpred.dtype == np.float32 and loss == 1.0
    with pytest.raises(ValueError, match="shape"):
        mse_loss(pred, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="float32 or float64"):
        mse_loss(np.ones(3, dtype=np.int64), np.ones(3))


# ---------------------------------------------------------------- cross-entropy

@pytest.mark.parametrize("ignore_index", [None, 2])
def test_cross_entropy_matches_torch(ignore_index):
    torch = pytest.importorskip("torch")
    tl = torch.tensor(LOGITS, requires_grad=True)
    kw = {} if ignore_index is None else {"ignore_index": ignore_index}
    ref = torch.nn.functional.cross_entropy(tl, torch.tensor(LABELS), **kw)
    ref.backward()
    loss, dlogits = softmax_cross_entropy(LOGITS, LABELS, ignore_index=ignore_index)
    assert loss == pytest.approx(ref.item(), rel=1e-14)
    np.testing.assert_allclose(dlogits, tl.grad.numpy(), rtol=1e-13, atol=1e-16)


def test_cross_entropy_ignore_index_negative_like_torch_default():
    torch = pytest.importorskip("torch")
    labels = LABELS.copy()
    labels[[1, 4]] = -100
    tl = torch.tensor(LOGITS, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(tl, torch.tensor(labels))
    ref.backward()
    loss, dlogits = softmax_cross_entropy(LOGITS, labels, ignore_index=-100)
    assert loss == pytest.approx(ref.item(), rel=1e-14)
    np.testing.assert_allclose(dlogits, tl.grad.numpy(), rtol=1e-13, atol=1e-16)
    assert not dlogits[[1, 4]].any()


@pytest.mark.parametrize("ignore_index", [None, 2])
def test_cross_entropy_gradient_finite_difference(ignore_index):
    _, dlogits = softmax_cross_entropy(LOGITS, LABELS, ignore_index)
    fd = finite_difference(lambda z: softmax_cross_entropy(z, LABELS, ignore_index)[0],
                           LOGITS.copy())
    np.testing.assert_allclose(dlogits, fd, rtol=1e-6, atol=1e-9)


def test_cross_entropy_is_stable_for_huge_logits():
    shifted = LOGITS + 1e4
    loss, dlogits = softmax_cross_entropy(shifted, LABELS)
    ref_loss, ref_grad = softmax_cross_entropy(LOGITS, LABELS)
    assert np.isfinite(loss) and loss == pytest.approx(ref_loss, rel=1e-9)
    np.testing.assert_allclose(dlogits, ref_grad, atol=1e-12)
    loss32, dlogits32 = softmax_cross_entropy(shifted.astype(np.float32) * 10, LABELS)
    assert np.isfinite(loss32) and dlogits32.dtype == np.float32 and np.isfinite(dlogits32).all()


def test_cross_entropy_all_ignored_is_nan_with_zero_gradient_like_torch():
    loss, dlogits = softmax_cross_entropy(LOGITS, np.full(6, -1), ignore_index=-1)
    assert np.isnan(loss) and not dlogits.any()


@pytest.mark.parametrize("labels,match", [
    (np.array([0, 4, 2, 2, 1, 5]), r"label 5 at row 5 is outside \[0, 5\)"),
    (np.array([0, -1, 2, 2, 1, 3]), r"label -1 at row 1"),
    (np.array([0, 1, 2]), "shape"),
    (LABELS.astype(np.float64), "integer"),
])
def test_cross_entropy_rejects_bad_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        softmax_cross_entropy(LOGITS, labels)


def test_cross_entropy_out_of_range_names_ignore_index():
    with pytest.raises(ValueError, match="not ignore_index -100"):
        softmax_cross_entropy(LOGITS, np.array([0, 9, 2, 2, 1, 3]), ignore_index=-100)


def test_cross_entropy_requires_2d_logits():
    with pytest.raises(ValueError, match="2-D"):
        softmax_cross_entropy(LOGITS.ravel(), LABELS)


# ---------------------------------------------------------------- softmax

@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0])
def test_softmax_matches_torch(temperature):
    torch = pytest.importorskip("torch")
    ref = torch.softmax(torch.tensor(LOGITS) / temperature, dim=-1).numpy()
    np.testing.assert_allclose(softmax(LOGITS, temperature), ref, rtol=1e-14)


def test_softmax_stable_and_normalised():
    p = softmax(np.array([[1e4, 1e4 - 1.0, -1e4]], dtype=np.float32))
    assert p.dtype == np.float32 and np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-6)
    assert softmax(np.array([1.0, 2.0, 3.0]), temperature=1e-3).argmax() == 2
    with pytest.raises(ValueError, match="temperature"):
        softmax(LOGITS, temperature=0.0)
