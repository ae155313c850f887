"""Data-parallel training and sweeps on a Dask cluster (``lstm_numba.training.distributed``,
``lstm_numba.training.sweep``, ``lstm-numba train --scheduler``, ``lstm-numba sweep``).

One ``local_cluster(2)`` (a ``LocalCluster(processes=True, n_workers=2,
threads_per_worker=1)``) serves the module.
Tiny models, few steps. The references are independent of the cluster: the same
training with the shards computed in this process, and an unsharded run."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from train_helpers import write_series, write_text

from lstm_numba.training import checkpoint as ck
from lstm_numba.training import distributed as D
from lstm_numba.training import shards
from lstm_numba.training import sweep as S
from lstm_numba.training.config import TrainConfig
from lstm_numba.training.trainer import Callbacks, Trainer

distributed = pytest.importorskip("distributed")

#: 106 training windows in batches of 16: 7 steps an epoch, the last of 10 rows.
TINY = dict(window=12, horizon=3, hidden_size=8, layers=2, dropout=0.25, batch_size=16, epochs=2,
            patience=0, seed=3, schedule="none")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_series(tmp_path_factory.mktemp("dask") / "series.csv", n=150)


@pytest.fixture(scope="module")
def cluster():
    c = D.local_cluster(2)
    client = distributed.Client(c)
    yield client
    client.close()
    c.close()


@pytest.fixture
def client(cluster):
    cluster.wait_for_workers(2, timeout=60)  # a killed worker's nanny restarts it
    return cluster


def test_the_clusters_it_starts_run_their_workers_without_the_statistical_profiler(client):
    import dask

    enabled = client.run(lambda: dask.config.get("distributed.worker.profile.enabled"))
    assert len(enabled) == 2 and set(enabled.values()) == {False}
    assert dask.config.get("distributed.worker.profile.enabled") is True  # only inside


def config(data, **kw):
    return TrainConfig(data=data, **{**TINY, **kw})


@pytest.fixture(scope="module")
def reference(data):
    """The in-process sharded run (4 shards) every cluster run must equal bit for bit."""
    trainer = Trainer(config(data, shards=4))
    trainer.fit()
    return trainer.model.state_dict(), trainer.state.step


def assert_bitwise(params, expected):
    assert params.keys() == expected.keys()
    for key in expected:
        assert params[key].dtype == expected[key].dtype
        assert np.array_equal(params[key], expected[key]), key


# ----------------------------------------------------------------------------- shards
def _result(shard, grads):
    return shards.ShardResult(shard, float(shard), {"w": np.asarray(grads, dtype=np.float32)}, 1)


def test_sum_shards_adds_in_shard_index_order_whatever_the_arrival_order():
    # float32 addition is not associative here: 1e8 + 1 rounds the 1 away.
    values = [[1e8], [1.0], [-1e8], [1.0]]
    results = [_result(s, v) for s, v in enumerate(values)]
    expected = ((np.float32(1e8) + np.float32(1)) + np.float32(-1e8)) + np.float32(1)
    other_order = ((np.float32(1e8) + np.float32(-1e8)) + np.float32(1)) + np.float32(1)
    assert expected != other_order  # the order matters, so the test can tell
    for arrival in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]):
        loss, grads, n = shards.sum_shards([results[i] for i in arrival])
        assert grads["w"][0] == expected and loss == 6.0 and n == 4
    assert results[0].grads["w"][0] == np.float32(1e8)  # the inputs are not modified
    with pytest.raises(ValueError, match="twice"):
        shards.sum_shards([results[0], results[0]])


def test_shards_cover_each_batch_once_with_weights_summing_to_one(data, tmp_path):
    from lstm_numba.training.tasks.registry import make_task

    task = make_task(config(data).resolved())
    batch = np.arange(100, 110)  # 10 rows in 4 shards: 3, 3, 2, 2
    parts = [shards.shard_part(task, batch, s, 4) for s in range(4)]
    assert [len(p) for p, _ in parts] == [3, 3, 2, 2]
    assert np.array_equal(np.concatenate([p for p, _ in parts]), batch)
    assert sum(w for _, w in parts) == pytest.approx(1.0)
    assert shards.live_shards(task, np.arange(2), 4) == [0, 1]  # a short last batch
    text = make_task(TrainConfig(data=write_text(tmp_path / "t.txt", 2000), window=16, batch_size=5).resolved())
    streams = [shards.shard_part(text, 0, s, 2)[0] for s in range(2)]
    assert [list(s) for s in streams] == [[0, 1, 2], [3, 4]]


def test_shard_gradients_sum_to_the_global_batch_mean_and_runs_agree_to_tolerance(data):
    cfg = config(data, dropout=0.0)
    trainer = Trainer(cfg)
    task, model = trainer.task, trainer.model
    batch = np.arange(16)
    loss, grads, n = task.train_step(model, batch)
    sharded = shards.sum_shards([shards.shard_gradient(task, model, batch, s, 4, 0, cfg.seed) for s in range(4)])
    assert sharded[0] == pytest.approx(loss, rel=1e-6) and sharded[2] == n == 16
    for key in grads:
        np.testing.assert_allclose(sharded[1][key], grads[key], rtol=1e-5, atol=1e-7)
    trainer.fit()
    other = Trainer(config(data, dropout=0.0, shards=4))
    other.fit()
    for key, value in trainer.model.params.items():
        np.testing.assert_allclose(other.model.params[key], value, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- the cluster
def test_one_and_two_workers_give_bitwise_the_in_process_weights(client, data, reference):
    params, steps = reference
    two = Trainer(config(data), client=client)  # shards default to the 2 workers
    assert two.config.shards == 2
    four = Trainer(config(data, shards=4), client=client)
    four.fit()
    assert_bitwise(four.model.params, params)
    assert four.state.step == steps and four.shards.stats.summary().startswith("per-step overhead")
    first = sorted(client.nthreads())[0]
    one = Trainer(config(data, shards=4), client=client, workers=[first])
    one.fit()
    assert_bitwise(one.model.params, params)


def test_charlm_shards_carry_their_state_across_chunks_on_the_cluster(client, tmp_path):
    text = write_text(tmp_path / "t.txt", 2000)
    cfg = TrainConfig(data=text, window=16, hidden_size=8, layers=2, dropout=0.2, batch_size=6, epochs=2,
                      patience=0, seed=1, embedding_dim=4, shards=3)
    here = Trainer(cfg)
    here.fit()
    there = Trainer(cfg, client=client)
    there.fit()
    assert_bitwise(there.model.params, here.model.params)


def test_a_worker_with_another_plugin_version_or_none_is_refused_before_training(client, data):
    def fake(version, drop):
        from lstm_numba import registry

        registry._saved = (registry._distribution_of, registry._entry_points)
        real_dist, real_points = registry._saved
        registry._distribution_of = lambda ep: (real_dist(ep)[0], version or real_dist(ep)[1])
        registry._entry_points = lambda group: [ep for ep in real_points(group) if ep.name != drop]
        registry.REGISTRY.clear()

    def undo():
        from lstm_numba import registry

        registry._distribution_of, registry._entry_points = registry._saved
        registry.REGISTRY.clear()

    victim = sorted(client.nthreads())[1]
    try:
        client.run(fake, "9.9", None, workers=[victim])
        with pytest.raises(D.ClusterError) as info:
            Trainer(config(data), client=client)
        message = str(info.value)
        assert "\n" not in message and victim in message and "gate plugin 'lstm'" in message
        assert "9.9" in message
        runner = CliRunner().invoke(_cli(), ["train", data, "--window", "12", "--horizon", "3",
                                             "--hidden-size", "8", "--scheduler", client.scheduler.address,
                                             "--out", os.path.join(os.path.dirname(data), "refused.npz")])
        assert runner.exit_code == 1
        errors = [line for line in runner.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and victim in errors[0] and "9.9" in errors[0], runner.stderr
        client.run(undo, workers=[victim])
        client.run(fake, None, "lstm", workers=[victim])
        with pytest.raises(D.ClusterError, match=f"worker {victim}: cannot load the gate plugin 'lstm'"):
            Trainer(config(data), client=client)
    finally:
        client.run(undo, workers=[victim])
    Trainer(config(data), client=client)  # the worker is fine again


@pytest.mark.parametrize("how", ["inside its computation", "by client.run(os._exit) after dispatch"])
def test_a_worker_killed_mid_epoch_costs_no_step_and_changes_no_weight(client, data, reference, how):
    params, steps = reference
    trainer = Trainer(config(data, shards=4), client=client)
    victim = sorted(client.nthreads())[1]
    killed = []

    def die_inside_compute_at(step):
        """Run on a worker: its next shard computation at ``step`` ends the process (a worker
        that dies while it computes; the nanny then starts a fresh one)."""
        import os

        from lstm_numba.training import distributed

        real = distributed.shard_gradient

        def dying(task, model, batch, shard, n_shards, at, *args, **kw):
            if at == step:
                os._exit(1)
            return real(task, model, batch, shard, n_shards, at, *args, **kw)

        distributed.shard_gradient = dying

    if how.startswith("inside"):
        client.run(die_inside_compute_at, 3, workers=[victim])
    else:
        def kill(step, addresses):
            if step == 3 and not killed:  # mid-epoch 1, the step's calls sent
                killed.append(victim)
                try:
                    client.run(os._exit, 1, workers=[victim])
                except Exception:  # noqa: BLE001 - the connection dies with the worker
                    pass

        trainer.shards.on_dispatch = kill
    callbacks = None if how.startswith("inside") else _WaitForTheRestartedWorker(client)
    trainer.fit(callbacks=callbacks)
    assert victim in trainer.shards.lost and trainer.shards.stats.recovered == 1
    assert trainer.state.step == steps
    assert_bitwise(trainer.model.params, params)
    if callbacks is not None:  # the nanny's fresh worker was checked and used in epoch 2
        assert len(trainer.shards.checked) == 3 and trainer.shards.used == trainer.shards.checked


class _WaitForTheRestartedWorker(Callbacks):
    def __init__(self, client):
        self.client = client

    def epoch_end(self, trainer, record):
        if record["epoch"] == 1:
            self.client.wait_for_workers(2, timeout=60)


class _Crash(Exception):
    pass


class _CrashAfterFirstEpoch(Callbacks):
    def epoch_end(self, trainer, record):
        if record["epoch"] == 1:
            raise _Crash


def test_checkpoint_and_resume_on_the_cluster_match_the_uninterrupted_run(client, data, reference, tmp_path):
    params, _ = reference
    path = tmp_path / "run.npz"
    first = Trainer(config(data, shards=4), client=client)
    with pytest.raises(_Crash):
        first.fit(checkpoint=path, callbacks=_CrashAfterFirstEpoch())
    assert first.shards.actors == {}  # released when fit ends, even by an exception
    resumed = Trainer.resume(path, client=client)
    assert resumed.config.shards == 4 and resumed.state.epoch == 1
    resumed.fit(checkpoint=path)
    assert_bitwise(resumed.model.params, params)
    assert_bitwise(ck.load_checkpoint(path).params, params)
    plain = tmp_path / "plain.npz"
    Trainer(config(data, epochs=1)).fit(checkpoint=plain)
    with pytest.raises(ck.CheckpointError, match="unsharded"):
        Trainer.resume(plain, client=client)


def _cli():
    from lstm_numba_cli.main import cli

    return cli


def test_cli_train_on_the_cluster_equals_the_in_process_shards_and_prints_the_overhead(client, data, tmp_path):
    args = ["train", data, "--window", "12", "--horizon", "3", "--hidden-size", "8", "--layers", "2",
            "--dropout", "0.25", "--batch-size", "16", "--epochs", "2", "--seed", "3", "--shards", "4", "-q"]
    here = CliRunner().invoke(_cli(), [*args, "--out", str(tmp_path / "here.npz")])
    assert here.exit_code == 0, here.output
    there = CliRunner().invoke(_cli(), [*args, "--out", str(tmp_path / "there.npz"),
                                        "--scheduler", client.scheduler.address])
    assert there.exit_code == 0, there.output
    assert "cluster: 4 shards; per-step overhead" in there.output
    assert_bitwise(ck.load_checkpoint(tmp_path / "there.npz").params,
                   ck.load_checkpoint(tmp_path / "here.npz").params)


# ----------------------------------------------------------------------------- sweeps
def test_grid_parsing_and_the_ranking_of_rows():
    assert S.parse_grid("hidden_size=64,128 lr=1e-3,3e-3 restore-best=false clip_grad=none,1") == {
        "hidden_size": [64, 128], "lr": [1e-3, 3e-3], "restore_best": [False], "clip_grad": [None, 1.0]}
    for bad in ("hidden_size", "hidden_size=", "colour=red", "data=x.csv", "layers=two", "lr=1 lr=2"):
        with pytest.raises(ValueError, match="--grid"):
            S.parse_grid(bad)
    assert S.combination_name({"hidden_size": 64, "lr": 0.001}) == "hidden_size=64_lr=0.001"
    rows = [{"index": i, "status": status, "value": value, "val_loss": loss, "settings": {"lr": i},
             "metric": "val_accuracy"}
            for i, (status, value, loss) in enumerate([("ok", 0.5, 0.7), ("failed", None, None),
                                                      ("ok", 0.9, 0.4), ("ok", 0.9, 0.3)])]
    assert [r["index"] for r in S.sort_rows(rows, "classify")] == [3, 2, 0, 1]
    assert [r["index"] for r in S.sort_rows(rows, "forecast")] == [0, 3, 2, 1]


def test_cli_sweep_on_the_cluster_ranks_every_combination_and_reports_a_failing_one(client, data, tmp_path):
    out = tmp_path / "sweep"
    result = CliRunner().invoke(_cli(), [
        "sweep", data, "--grid", "hidden_size=4,8 lr=1e-2,1e30", "--window", "12", "--horizon", "3",
        "--batch-size", "16", "--epochs", "2", "--clip-grad", "0", "--out-dir", str(out),
        "--scheduler", client.scheduler.address, "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 4 and [r["status"] for r in rows] == ["ok", "ok", "failed", "failed"]
    ok, failed = rows[:2], rows[2:]
    assert ok[0]["value"] <= ok[1]["value"] and all(r["metric"] == "val_rmse" for r in rows)
    assert {r["settings"]["lr"] for r in ok} == {1e-2} and {r["settings"]["lr"] for r in failed} == {1e30}
    assert all(r["error"] and r["checkpoint"] is None for r in failed)
    for row in ok:  # one checkpoint each, pointing at this machine's data file
        saved = ck.load_checkpoint(row["checkpoint"])
        assert saved.meta["train"]["data"] == os.path.abspath(data)
        assert saved.meta["train"]["hidden_size"] == row["settings"]["hidden_size"]
    resumed = Trainer.resume(ok[0]["checkpoint"])  # usable as any checkpoint
    assert resumed.state.finished
    table = S.format_table(S.sort_rows([{**r, "index": i} for i, r in enumerate(rows)], "forecast"))
    assert table[0].split()[:4] == ["#", "hidden_size", "lr", "val_rmse"] and "FAILED" in table[-1]


def test_help_of_train_and_sweep_imports_neither_numba_nor_dask():
    import subprocess
    import sys

    code = ("import sys\n"
            "from click.testing import CliRunner\n"
            "from lstm_numba_cli.main import cli\n"
            "for c in ('train', 'sweep'):\n"
            "    r = CliRunner().invoke(cli, [c, '--help'])\n"
            "    assert r.exit_code == 0 and '--scheduler' in r.output and '--workers' in r.output, r.output\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'numba', 'dask', 'distributed'}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]"]


# ----------------------------------------------------------------------------- four workers
@pytest.mark.slow
def test_four_workers_give_bitwise_the_in_process_weights(data, reference):
    params, _ = reference
    with distributed.LocalCluster(processes=True, n_workers=4, threads_per_worker=1,
                                  dashboard_address=":0") as c, distributed.Client(c) as client:
        trainer = Trainer(config(data), client=client)
        assert trainer.config.shards == 4
        trainer.fit()
    assert_bitwise(trainer.model.params, params)


@pytest.mark.slow
def test_cli_train_workers_starts_a_local_cluster_for_the_run(data, tmp_path):
    args = ["train", data, "--window", "12", "--horizon", "3", "--hidden-size", "8", "--layers", "2",
            "--dropout", "0.25", "--batch-size", "16", "--epochs", "2", "--seed", "3", "--shards", "4"]
    result = CliRunner().invoke(_cli(), [*args, "--workers", "2", "--out", str(tmp_path / "w.npz")])
    assert result.exit_code == 0, result.output
    assert "4 shards on 2 Dask workers" in result.output and "per-step overhead" in result.output
    here = CliRunner().invoke(_cli(), [*args, "-q", "--out", str(tmp_path / "here.npz")])
    assert here.exit_code == 0, here.output
    assert_bitwise(ck.load_checkpoint(tmp_path / "w.npz").params, ck.load_checkpoint(tmp_path / "here.npz").params)
