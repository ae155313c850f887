"""Tests for lstm_numba.training.data and the embedded datasets in lstm_numba.datasets."""

import json

import numpy as np
import pytest

from lstm_numba import datasets
from lstm_numba.training import data

# ------------------------------------------------------------------ embedded data


def test_embedded_series_co2():
    dates, values = datasets.load_series()
    assert datasets.DEFAULT_SERIES == "co2" and datasets.SEASONAL_PERIOD == 12
    assert len(dates) == len(values) == 526
    assert values.dtype == np.float64 and np.all(np.isfinite(values))
    assert dates[0] == "1958-03" and dates[-1] == "2001-12"
    assert 310 < values.min() and values.max() < 380
    # monthly, no gaps: consecutive months throughout
    months = np.array([int(d[:4]) * 12 + int(d[5:]) for d in dates])
    assert np.all(np.diff(months) == 1)
    # the same file read through the generic CSV reader
    cols = data.read_csv_columns(datasets.series_path("co2"), target="co2")
    assert cols.names == ["co2"] and cols.target_index == 0
    np.testing.assert_array_equal(cols.values[:, 0], values)


def test_embedded_series_is_seasonal():
    _, values = datasets.load_series()
    # one step ahead the trend favours last-value; over half a year the season dominates
    fd = data.prepare_forecast(values, 0, window=24, horizon=6, val_fraction=0.2,
                               seasonal_period=datasets.SEASONAL_PERIOD)
    rmse = lambda p: np.sqrt(np.mean((p - fd.y_val_orig) ** 2))  # noqa: E731
    assert rmse(fd.naive_seasonal) < rmse(fd.naive_last)


@pytest.mark.parametrize("name,length", [("alice", 84443), ("constitution", 26392)])
def test_embedded_texts(name, length):
    text = datasets.load_text(name)
    assert len(text) == length and text.isascii()
    assert "Gutenberg" not in text and "\r" not in text
    with open(datasets.text_path(name), encoding="utf-8") as f:
        assert f.read() == text


def test_embedded_default_text_and_unknown_names():
    assert datasets.load_text().startswith("CHAPTER I. Down the Rabbit-Hole")
    with pytest.raises(ValueError, match="unknown series 'nope'.*co2"):
        datasets.load_series("nope")
    with pytest.raises(ValueError, match="unknown text 'nope'.*alice"):
        datasets.text_path("nope")


# ------------------------------------------------------------------------- windows


def test_make_windows_hand_example():
    values = np.array([[0, 10], [1, 11], [2, 12], [3, 13], [4, 14], [5, 15]], float)
    w = data.make_windows(values, target_index=1, window=3, horizon=2)
    assert w.x.shape == (2, 3, 2) and w.y.shape == (2, 2)
    np.testing.assert_array_equal(w.x[0], values[0:3])
    np.testing.assert_array_equal(w.x[1], values[1:4])
    np.testing.assert_array_equal(w.y, [[13, 14], [14, 15]])
    w2 = data.make_windows(np.arange(10.0), 0, window=2, horizon=1, step=3)
    np.testing.assert_array_equal(w2.x[..., 0], [[0, 1], [3, 4], [6, 7]])
    np.testing.assert_array_equal(w2.y, [[2], [5], [8]])


def test_make_windows_too_short():
    with pytest.raises(ValueError, match="needs at least 7 points, got 6"):
        data.make_windows(np.zeros((6, 1)), 0, window=5, horizon=2)


# ---------------------------------------------------------------------- normaliser


def test_normalizer_fit_on_train_only_and_roundtrip():
    rng = np.random.default_rng(0)
    values = np.column_stack([np.arange(100.0), rng.normal(5.0, 2.0, 100), np.ones(100)])
    fd = data.prepare_forecast(values, 0, window=5, horizon=2, val_fraction=0.25)
    norm = fd.normalizer
    assert fd.n_train_points == 75
    np.testing.assert_allclose(norm.mean, values[:75].mean(axis=0))
    np.testing.assert_allclose(norm.std[:2], values[:75, :2].std(axis=0))
    assert norm.std[2] == 1.0  # constant feature
    scaled = norm.transform(values)
    assert abs(scaled[:75, 0].mean()) < 1e-12 and scaled[75:, 0].mean() > 1.0  # val differs
    np.testing.assert_allclose(norm.inverse_transform(scaled), values)
    np.testing.assert_allclose(norm.inverse_transform(fd.y_val, column=0), fd.y_val_orig)
    restored = data.Normalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    np.testing.assert_array_equal(restored.transform(values), scaled)
    with pytest.raises(RuntimeError, match="not fitted"):
        data.Normalizer().transform(values)


def test_time_split():
    train, val = data.time_split(10, 0.3)
    assert (train.start, train.stop, val.start, val.stop) == (0, 7, 7, 10)
    with pytest.raises(ValueError, match="val_fraction"):
        data.time_split(10, 1.0)


# -------------------------------------------------------------------- forecasting


def test_prepare_forecast_windows_and_baselines():
    # period-4 pattern on a trend: v[t] = t + (0, 5, 0, -5)[t % 4]
    t = np.arange(16)
    v = t + np.array([0, 5, 0, -5])[t % 4].astype(float)
    fd = data.prepare_forecast(v, 0, window=3, horizon=2, val_fraction=0.25,
                               seasonal_period=4)
    # train = v[:12], val = v[12:16]; val windows: targets (12,13), (13,14), (14,15)
    assert fd.x_train.shape == (8, 3, 1) and fd.y_train.shape == (8, 2)
    assert fd.x_val.shape == (3, 3, 1)
    np.testing.assert_array_equal(fd.y_val_orig, [[v[12], v[13]], [v[13], v[14]],
                                                   [v[14], v[15]]])
    np.testing.assert_array_equal(fd.naive_last, [[v[11]] * 2, [v[12]] * 2, [v[13]] * 2])
    np.testing.assert_array_equal(fd.naive_seasonal, [[v[8], v[9]], [v[9], v[10]],
                                                      [v[10], v[11]]])
    # first validation window's context is the last 3 training points
    np.testing.assert_allclose(fd.normalizer.inverse_transform(fd.x_val[0]), v[9:12, None])
    # no training target is a validation point
    assert fd.normalizer.inverse_transform(fd.y_train, column=0).max() <= v[:12].max()
    # horizon past one season reaches back whole seasons from the origin
    fd2 = data.prepare_forecast(v, 0, window=3, horizon=3, val_fraction=0.25,
                                seasonal_period=2)
    np.testing.assert_array_equal(fd2.naive_seasonal[0], [v[10], v[11], v[10]])
    assert data.prepare_forecast(v, 0, 3, 1, 0.25).naive_seasonal is None


def test_prepare_forecast_too_short():
    with pytest.raises(ValueError, match="training part too short"):
        data.prepare_forecast(np.arange(10.0), 0, window=8, horizon=2, val_fraction=0.3)
    with pytest.raises(ValueError, match="validation part too short"):
        data.prepare_forecast(np.arange(20.0), 0, window=3, horizon=5, val_fraction=0.1)


# ------------------------------------------------------------------------------ CSV


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_read_csv_columns_selection(tmp_path):
    path = _write(tmp_path, "s.csv", "date,a,b\n2000-01,1,2\n2000-02,3,4\n")
    cols = data.read_csv_columns(path)
    assert cols.names == ["a", "b"] and cols.target_index is None
    np.testing.assert_array_equal(cols.values, [[1, 2], [3, 4]])
    cols = data.read_csv_columns(path, columns=["b"], target="a")
    assert cols.names == ["b", "a"] and cols.target_index == 1


@pytest.mark.parametrize("text,pattern", [
    ("a,b\n1,2\n", "no column 'zz'; available: 'a', 'b'"),
    ("a,zz\n1,x\n3,4\n", "non-numeric value 'x' in column 'zz' at line 2"),
    ("a,zz\n1,2\n3,nan\n", "nan in column 'zz' at line 3"),
    ("a,zz\n1,2\n3,\n", "empty cell in column 'zz' at line 3"),
    ("a,zz\n", "no data rows"),
    ("a,zz\n1,2\n3\n", "line 3 has 1 cells, the header has 2"),
])
def test_read_csv_columns_errors(tmp_path, text, pattern):
    path = _write(tmp_path, "bad.csv", text)
    with pytest.raises(ValueError) as exc:
        data.read_csv_columns(path, columns=["zz"])
    assert str(path) in str(exc.value) and pattern in str(exc.value)


def test_read_csv_missing_file_and_too_short_series(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.csv: no such file"):
        data.read_csv_columns(tmp_path / "nothere.csv")
    path = _write(tmp_path, "short.csv", "v\n1\n2\n3\n")
    cols = data.read_csv_columns(path, target="v")
    with pytest.raises(ValueError, match="needs at least 6 points, got 3"):
        data.make_windows(cols.values, cols.target_index, window=4, horizon=2)


# ----------------------------------------------------------------------------- text


def test_char_vocab_roundtrip():
    text = "hello, world\n"
    vocab = data.CharVocab.from_text(text)
    assert vocab.size == len(vocab) == len(set(text))
    ids = vocab.encode(text)
    assert ids.dtype == np.int64 and vocab.decode(ids) == text
    restored = data.CharVocab.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert restored.chars == vocab.chars
    with pytest.raises(ValueError, match="'Z' is not in the vocabulary"):
        vocab.encode("Z")


def test_make_char_sequences():
    inputs, targets = data.make_char_sequences(np.arange(11), seq_len=3)
    np.testing.assert_array_equal(inputs, [[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    np.testing.assert_array_equal(targets, [[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    with pytest.raises(ValueError, match="needs at least 4 characters, got 3"):
        data.make_char_sequences(np.arange(3), seq_len=3)


def test_batchify_and_bptt():
    stream = data.batchify_stream(np.arange(26), batch_size=4)  # 2 dropped
    assert stream.shape == (6, 4)
    np.testing.assert_array_equal(stream[:, 1], np.arange(6, 12))
    chunks = list(data.iterate_bptt(stream, bptt=2))
    assert [c[0].shape for c in chunks] == [(2, 4), (2, 4), (1, 4)]
    inputs = np.concatenate([c[0] for c in chunks])
    targets = np.concatenate([c[1] for c in chunks])
    np.testing.assert_array_equal(inputs, stream[:-1])
    np.testing.assert_array_equal(targets, stream[1:])
    with pytest.raises(ValueError, match="too short for batch_size 4"):
        data.batchify_stream(np.arange(7), batch_size=4)


# ------------------------------------------------------------------- classification


def test_load_labelled_npz(tmp_path):
    x = np.arange(2 * 3 * 2, dtype=float).reshape(2, 3, 2)
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=np.array([1, 0]))
    ds = data.load_labelled(path)
    np.testing.assert_array_equal(ds.x, x)
    np.testing.assert_array_equal(ds.y, [1, 0])
    np.testing.assert_array_equal(ds.lengths, [3, 3])
    np.savez(path, x=x, y=np.array([1.0, 0.0]), lengths=np.array([3, 1]))
    ds = data.load_labelled(path)
    assert ds.y.dtype == np.int64 and list(ds.lengths) == [3, 1]
    assert np.all(ds.x[1, 1:] == 0)


@pytest.mark.parametrize("arrays,pattern", [
    (dict(x=np.full((2, 3, 1), np.nan), y=np.array([0, 1])), "NaN"),
    (dict(x=np.zeros((2, 3, 1)), y=np.array([0.5, 1.0])), "non-integer"),
    (dict(x=np.zeros((2, 3)), y=np.array([0, 1])), r"\(N, T, F\)"),
    (dict(x=np.zeros((2, 3, 1)), y=np.array([0, 1, 1])), "3 labels but x has 2"),
    (dict(x=np.zeros((2, 3, 1)), y=np.array([0, 1]), lengths=np.array([0, 3])),
     r"lengths must be in \[1, 3\]"),
    (dict(x=np.array([np.zeros((2, 1)), np.zeros((3, 1))], dtype=object),
          y=np.array([0, 1])), "ragged"),
])
def test_load_labelled_npz_errors(tmp_path, arrays, pattern):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=pattern) as exc:
        data.load_labelled(path)
    assert str(path) in str(exc.value)


def test_load_labelled_csv_variable_lengths(tmp_path):
    path = _write(tmp_path, "d.csv",
                  "sequence_id,label,f1,f2\n"
                  "s1,2,1,10\ns1,2,2,20\ns1,2,3,30\n"
                  "s0,0,4,40\n")
    ds = data.load_labelled(path)
    assert ds.x.shape == (2, 3, 2)
    np.testing.assert_array_equal(ds.lengths, [3, 1])
    np.testing.assert_array_equal(ds.y, [2, 0])
    np.testing.assert_array_equal(ds.x[0], [[1, 10], [2, 20], [3, 30]])
    np.testing.assert_array_equal(ds.x[1], [[4, 40], [0, 0], [0, 0]])


@pytest.mark.parametrize("body,pattern", [
    ("s,1.5,1\n", "label '1.5' at line 2 is not an integer"),
    ("s,1,1\ns,0,2\n", "label 1 at line 2 but 0 at line 3"),
    ("s,1,nan\n", "nan in column 'f' at line 2"),
    ("s,1,abc\n", "non-numeric value 'abc' in column 'f' at line 2"),
])
def test_load_labelled_csv_errors(tmp_path, body, pattern):
    path = _write(tmp_path, "bad.csv", "sequence_id,label,f\n" + body)
    with pytest.raises(ValueError, match=pattern) as exc:
        data.load_labelled(path)
    assert str(path) in str(exc.value)


# ------------------------------------------------------------------------ batching


def test_iterate_minibatches_reproducible():
    def batches(seed):
        return list(data.iterate_minibatches(10, 4, np.random.default_rng(seed)))

    a, b = batches(7), batches(7)
    assert [len(x) for x in a] == [4, 4, 2]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert sorted(np.concatenate(a)) == list(range(10))
    assert not all(np.array_equal(x, y) for x, y in zip(a, batches(8)))
    plain = list(data.iterate_minibatches(5, 2, None, shuffle=False))
    np.testing.assert_array_equal(np.concatenate(plain), np.arange(5))


def test_unlabelled_npz_only_when_labels_are_optional(tmp_path):
    from lstm_numba.training.data.labelled import load_labelled

    path = tmp_path / "x.npz"
    np.savez(path, x=np.ones((3, 4, 2)), lengths=np.array([4, 2, 1]))
    with pytest.raises(ValueError, match=r"missing array 'y'"):
        load_labelled(path)
    seqs = load_labelled(path, require_labels=False)
    assert seqs.y is None and seqs.x.shape == (3, 4, 2)
    np.testing.assert_array_equal(seqs.lengths, [4, 2, 1])
    assert seqs.x[2, 1:].sum() == 0  # zeroed past each length
