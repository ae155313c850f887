"""The training loop: loss curves identical to the same run in PyTorch, early stopping with
best-weight restore, one seed for everything, checkpoint contents, in-process resume, and
clear errors for checkpoints that need a missing plugin."""

import json
import math

import numpy as np
import pytest
from train_helpers import (
    TorchModel,
    torch,
    with_plugin,
    write_labelled,
    write_series,
    write_text,
)

from lstm_numba.training import checkpoint as ck
from lstm_numba.training.config import TrainConfig
from lstm_numba.training.metrics import MetricsLog
from lstm_numba.training.trainer import Trainer, load_trained

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


class Recorder:
    """Wraps ``task.train_step`` to record every batch it is given."""

    def __init__(self, trainer):
        self.batches = []
        step = trainer.task.train_step

        def recording(model, batch):
            self.batches.append(batch)
            return step(model, batch)

        trainer.task.train_step = recording


def rel_curve(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b) / np.abs(b)))


# ----------------------------------------------------------------------------- torch parity


@needs_torch
def test_forecaster_training_loss_curve_matches_torch_adam_clip(tmp_path):
    cfg = TrainConfig(data=write_series(tmp_path / "s.csv"), window=12, horizon=3, hidden_size=8,
                      dtype="float64", epochs=4, batch_size=16, lr=0.02, optimizer="adam",
                      clip_grad=0.5, schedule="cosine", patience=0, seed=3)
    trainer = Trainer(cfg)
    ref = TorchModel(trainer.model)  # same initial weights
    rec = Recorder(trainer)
    trainer.fit()
    assert len(trainer.step_losses) >= 20

    task = trainer.task
    opt = torch.optim.Adam(ref.parameters(), lr=0.02)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
    losses, clipped = [], 0
    per_epoch = len(trainer.step_losses) // 4
    for i, rows in enumerate(rec.batches):
        opt.zero_grad()
        pred = ref(torch.tensor(task.x_train[rows]))
        loss = torch.nn.functional.mse_loss(pred, torch.tensor(task.y_train[rows]))
        loss.backward()
        clipped += float(torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.5)) > 0.5
        opt.step()
        losses.append(loss.item())
        if (i + 1) % per_epoch == 0:
            sched.step()
    assert clipped > 0  # clipping was exercised
    assert rel_curve(trainer.step_losses, losses) < 1e-8
    for key, value in ref.state_dict().items():
        assert np.allclose(trainer.model.params[key], value.numpy(), rtol=1e-8, atol=1e-10), key


@needs_torch
def test_charlm_truncated_bptt_loss_curve_matches_torch_sgd_momentum(tmp_path):
    cfg = TrainConfig(task="charlm", data=write_text(tmp_path / "t.txt", 2000), window=16, hidden_size=16,
                      embedding_dim=8, dtype="float64", epochs=1, batch_size=4, lr=0.5, optimizer="sgd",
                      momentum=0.9, clip_grad=1.0, seed=1)
    trainer = Trainer(cfg)
    ref = TorchModel(trainer.model)
    trainer.fit()
    assert len(trainer.step_losses) >= 20

    opt = torch.optim.SGD(ref.parameters(), lr=0.5, momentum=0.9)
    state, losses = None, []
    for inputs, targets in trainer.task.chunks:
        opt.zero_grad()
        logits, state = ref(torch.tensor(inputs.T), state=state)
        b, t, v = logits.shape
        loss = torch.nn.functional.cross_entropy(logits.reshape(b * t, v),
                                                 torch.tensor(targets.T.reshape(-1)))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
        opt.step()
        state = tuple(s.detach() for s in state)
        losses.append(loss.item())
    assert len(losses) == len(trainer.step_losses)
    assert rel_curve(trainer.step_losses, losses) < 1e-8
    assert losses[-1] < losses[0]


# ----------------------------------------------------------------------------- loop behaviour


class ScriptedTask:
    """A real forecaster training step, with validation losses read from a script."""

    name = "forecast"

    def __init__(self, trainer_task, val_losses):
        self.inner = trainer_task
        self.val_losses = list(val_losses)
        self.path = trainer_task.path
        self.epoch = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def evaluate(self, model):
        self.epoch += 1
        return {"val_loss": self.val_losses[self.epoch - 1]}


def test_early_stopping_restores_the_best_weights(tmp_path):
    cfg = TrainConfig(data=write_series(tmp_path / "s.csv"), window=12, horizon=3, hidden_size=4,
                      epochs=20, patience=3, seed=0, dtype="float64")
    base = Trainer(cfg)
    trainer = Trainer(cfg, _task=ScriptedTask(base.task, [5, 4, 3, 3.5, 3.2, 3.1, 1, 1]))
    snapshots = {}

    class Snap:
        def epoch_start(self, *a):
            pass

        def batch_end(self, *a):
            pass

        def epoch_end(self, tr, record):
            snapshots[record["epoch"]] = tr.model.state_dict()

    before_restore = {}
    real_load = trainer.model.load_state_dict

    def spy(state):
        before_restore.update(trainer.model.state_dict())
        real_load(state)

    trainer.model.load_state_dict = spy
    st = trainer.fit(callbacks=Snap())
    assert st.stopped_early and st.finished and st.epoch == 6
    assert st.best_epoch == 3 and st.best_val == 3
    assert [r["best"] for r in st.history] == [True, True, True, False, False, False]
    # the epoch-6 snapshot is taken after the restore: it holds epoch 3's weights
    for key in snapshots[3]:
        assert np.array_equal(trainer.model.params[key], snapshots[3][key])
        assert np.array_equal(snapshots[6][key], snapshots[3][key])
    assert any(not np.array_equal(before_restore[k], snapshots[3][k]) for k in before_restore)


def _params_equal(a, b):
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_one_seed_fixes_init_shuffling_and_dropout(tmp_path):
    data = write_series(tmp_path / "s.csv")
    kw = dict(data=data, window=12, horizon=3, hidden_size=4, layers=2, dropout=0.3, epochs=2,
              batch_size=16, dtype="float64", patience=0)
    runs = []
    for seed in (7, 7, 8):
        tr = Trainer(TrainConfig(seed=seed, **kw))
        rec = Recorder(tr)
        tr.fit()
        runs.append((tr.model.state_dict(), [r.tolist() for r in rec.batches], tr.step_losses))
    (p1, b1, l1), (p2, b2, l2), (p3, b3, l3) = runs
    assert _params_equal(p1, p2) and b1 == b2 and l1 == l2
    assert b1 != b3 and not _params_equal(p1, p3)
    # dropout comes from the seed too: same init and order, different dropout stream
    tr = Trainer(TrainConfig(seed=7, **kw))
    tr.model.rnn._rng = np.random.default_rng(12345)
    tr.fit()
    assert tr.step_losses[0] != l1[0]


class StopAfter:
    """Simulates a crash right after the checkpoint of epoch ``k`` is written."""

    def __init__(self, k):
        self.k = k

    def epoch_start(self, *a):
        pass

    def batch_end(self, *a):
        pass

    def epoch_end(self, tr, record):
        if record["epoch"] == self.k:
            raise KeyboardInterrupt


@pytest.mark.parametrize("task, gate", [("forecast", "lstm"), ("charlm", "lstm"), ("charlm", "slstm")])
def test_resume_in_process_gives_bitwise_identical_weights(tmp_path, task, gate):
    """Also a run of a four-state gate (sLSTM: h, c, n, m), whose state the character model
    carries across chunks."""
    if task == "forecast":
        kw = dict(data=write_series(tmp_path / "s.csv"), window=12, horizon=3, hidden_size=6, layers=2,
                  dropout=0.2, epochs=5, batch_size=16, patience=0)
    else:
        kw = dict(task="charlm", data=write_text(tmp_path / "t.txt", 1500), window=20, hidden_size=12,
                  epochs=3, batch_size=4, optimizer="sgd", lr=0.3, schedule="step")
    cfg = TrainConfig(seed=11, gate=gate, **kw)
    full = Trainer(cfg)
    full.fit(checkpoint=tmp_path / "full.npz")
    history = full.state.history
    assert history[-1]["train_loss"] < history[0]["train_loss"]

    cut = tmp_path / "cut.npz"
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg).fit(checkpoint=cut, callbacks=StopAfter(2))
    resumed = Trainer.resume(cut)
    assert resumed.state.epoch == 2 and not resumed.state.finished
    resumed.fit(checkpoint=cut)
    assert _params_equal(resumed.model.state_dict(), full.model.state_dict())
    a, b = ck.load_checkpoint(cut), ck.load_checkpoint(tmp_path / "full.npz")
    assert _params_equal(a.params, b.params)
    assert all(np.array_equal(a.optim_state[k], b.optim_state[k]) if isinstance(b.optim_state[k], np.ndarray)
               else a.optim_state[k] == b.optim_state[k] for k in b.optim_state)
    assert [r["val_loss"] for r in a.meta["history"]] == [r["val_loss"] for r in b.meta["history"]]
    assert a.meta["rng"] == b.meta["rng"] and a.meta["progress"] == b.meta["progress"]


def test_resume_of_a_finished_run_has_nothing_to_do(tmp_path):
    cfg = TrainConfig(data=write_series(tmp_path / "s.csv"), window=12, horizon=3, hidden_size=4,
                      epochs=2, seed=0)
    Trainer(cfg).fit(checkpoint=tmp_path / "c.npz")
    again = Trainer.resume(tmp_path / "c.npz")
    assert again.state.finished and again.state.epoch == 2
    with pytest.raises(ValueError, match="cannot change hidden_size"):
        Trainer.resume(tmp_path / "c.npz", hidden_size=8)


def test_checkpoint_holds_config_plugins_optimizer_rng_and_data(tmp_path):
    path = tmp_path / "c.npz"
    cfg = TrainConfig(task="charlm", data=write_text(tmp_path / "t.txt", 1200), window=10, hidden_size=8,
                      epochs=1, batch_size=4, seed=2)
    tr = Trainer(cfg)
    tr.fit(checkpoint=path)
    c = ck.load_checkpoint(path)
    meta = c.meta
    assert meta["kind"] == "lstm-numba-train" and meta["task"] == "charlm"
    assert meta["plugins"]["gate"]["name"] == "lstm" and meta["plugins"]["gate"]["version"]
    assert {"activation", "recurrent_activation"} <= set(meta["plugins"])
    assert meta["model"]["type"] == "charlm" and meta["model"]["rnn"]["hidden_size"] == 8
    assert meta["train"]["window"] == 10 and meta["train"]["seed"] == 2
    assert meta["progress"]["epoch"] == 1 and meta["progress"]["step"] == len(tr.task.chunks)
    assert meta["rng"]["shuffle"]["bit_generator"] == "PCG64" and "dropout" in meta["rng"]
    assert "".join(meta["data"]["vocab"]["chars"]) == "".join(tr.task.vocab.chars)
    assert c.optim_state["type"] == "adam" and "exp_avg/rnn.weight_ih_l0" in c.optim_state
    assert any(k.startswith("best/") for k in c.extra)
    json.dumps(meta)  # all JSON

    fc = tmp_path / "f.npz"
    Trainer(TrainConfig(data=write_series(tmp_path / "s.csv"), window=12, horizon=3, hidden_size=4,
                        epochs=1)).fit(checkpoint=fc)
    d = ck.load_checkpoint(fc).meta["data"]
    assert d["columns"] == ["temp"] and d["target"] == "temp" and set(d["normalizer"]) == {"mean", "std"}
    trained = load_trained(fc)
    assert trained.task == "forecast" and not trained.model.training


def test_checkpoint_needing_a_missing_plugin_names_file_and_plugin(tmp_path):
    src = tmp_path / "c.npz"
    Trainer(TrainConfig(data=write_series(tmp_path / "s.csv"), window=12, horizon=3, hidden_size=4,
                        epochs=1)).fit(checkpoint=src)
    bad = tmp_path / "needs_plugin.npz"
    with_plugin(src, bad, "zoneout_lstm")
    for load in (load_trained, Trainer.resume):
        with pytest.raises(ck.CheckpointError) as info:
            load(bad)
        msg = str(info.value)
        assert "needs_plugin.npz" in msg and "zoneout_lstm" in msg and "lstm-fancy-gates" in msg


def test_classification_run_learns_and_seq2seq_forecast_trains(tmp_path):
    tr = Trainer(TrainConfig(data=write_labelled(tmp_path / "l.npz"), hidden_size=8, epochs=8,
                             batch_size=8, lr=0.02, seed=0))
    assert tr.config.task == "classify"
    st = tr.fit()
    assert max(r["val_accuracy"] for r in st.history) >= 0.9

    tr = Trainer(TrainConfig(data=write_series(tmp_path / "s.csv"), window=12, horizon=3, hidden_size=6,
                             seq2seq=True, epochs=3, seed=0))
    st = tr.fit()
    assert tr.task.y_train_seq.shape == (tr.task.n_train, 12, 3)
    assert st.history[-1]["train_loss"] < st.history[0]["train_loss"]
    assert math.isfinite(st.history[-1]["val_rmse"])


def test_metrics_log_csv_and_jsonl(tmp_path):
    cfg = TrainConfig(data=write_series(tmp_path / "s.csv"), window=12, horizon=3, hidden_size=4, epochs=2)
    for name in ("m.csv", "m.jsonl"):
        tr = Trainer(cfg)
        log = MetricsLog(tmp_path / name)
        tr.fit(metrics=log)
        text = (tmp_path / name).read_text().splitlines()
        if name.endswith(".csv"):
            assert text[0].split(",")[:4] == ["epoch", "step", "train_loss", "val_loss"] and len(text) == 3
        else:
            rows = [json.loads(line) for line in text]
            assert [r["epoch"] for r in rows] == [1, 2] and "val_rmse" in rows[0]
    with pytest.raises(ValueError, match=r"\.csv or \.jsonl"):
        MetricsLog(tmp_path / "m.txt")


def test_config_errors_are_clear(tmp_path):
    data = write_series(tmp_path / "s.csv")
    with pytest.raises(ValueError, match="unknown optimizer"):
        Trainer(TrainConfig(data=data, optimizer="rmsprop"))
    with pytest.raises(ValueError, match="unknown gate 'nope'"):
        Trainer(TrainConfig(data=data, gate="nope"))
    with pytest.raises(ValueError, match="too short"):
        Trainer(TrainConfig(data=data, window=200))
    with pytest.raises(ValueError, match="window must be a positive integer"):
        Trainer(TrainConfig(data=data, window=0))


def test_task_is_inferred_from_the_data_file(tmp_path):
    from lstm_numba.training.config import infer_task

    long_csv = tmp_path / "long.csv"
    long_csv.write_text("sequence_id,label,f\na,0,1.0\na,0,2.0\nb,1,3.0\n")
    assert infer_task(None) == "forecast"
    assert infer_task(write_series(tmp_path / "s.csv")) == "forecast"
    assert infer_task(str(long_csv)) == "classify"
    assert infer_task(write_labelled(tmp_path / "l.npz")) == "classify"
    assert infer_task(write_text(tmp_path / "t.txt", 100)) == "charlm"
    with pytest.raises(ValueError, match="cannot tell the task"):
        infer_task(str(tmp_path / "data.parquet"))
    with pytest.raises(ValueError, match="horizon: only for --task forecast, not charlm"):
        TrainConfig(task="charlm", horizon=3).resolved()


def test_resume_refuses_changed_data_and_a_diverging_run_stops_clearly(tmp_path):
    data = tmp_path / "s.csv"
    cfg = TrainConfig(data=write_series(data), window=12, horizon=3, hidden_size=4, epochs=3)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg).fit(checkpoint=tmp_path / "c.npz", callbacks=StopAfter(1))
    write_series(data, seed=1)
    with pytest.raises(ck.CheckpointError, match="changed since the checkpoint"):
        Trainer.resume(tmp_path / "c.npz")

    tr = Trainer(cfg)
    step = tr.task.train_step
    tr.task.train_step = lambda model, rows: (float("nan"),) + step(model, rows)[1:]
    with pytest.raises(ValueError, match="training diverged at epoch 1, step 1: the loss is nan"):
        tr.fit()
