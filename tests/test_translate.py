"""The translation task on tiny corpora: learning, an exact solution, bitwise resume, the
checkpoint's decoding data and the command line's errors."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from lstm_numba_cli.main import cli
from test_cli_train import assert_one_line_error

from lstm_numba.training.config import TrainConfig
from lstm_numba.training.data.pairs import TokenVocab, detokenize, read_pairs, tokenize
from lstm_numba.training.trainer import Callbacks, Trainer

#: Each test here compiles kernels no other default test does (about 4 minutes of the
#: default suite on a 2-core machine together): they run in CI's slow pass.
pytestmark = pytest.mark.slow

# A tiny mapping: reverse two words and translate them.
WORDS = {"one": "un", "two": "deux", "three": "trois"}
PAIRS = [(f"{a} {b}", f"{WORDS[b]} {WORDS[a]}") for a in WORDS for b in WORDS]
TINY = dict(task="translate", hidden_size=5, embedding_dim=4, batch_size=3, lr=3e-2, seed=1, schedule="none",
            val_fraction=0.1)


def write_pairs(path, pairs=PAIRS):
    path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    return str(path)


class Killed(Exception):
    pass


class KillAfterFirstEpoch(Callbacks):
    def epoch_end(self, trainer, record):
        raise Killed


def invoke(args):
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="lstm-numba")


def test_tokens_round_trip_and_unknown_words_are_named():
    text = "quatre-vingt-dix mille et un"
    assert tokenize(text) == ["quatre", "-", "vingt", "-", "dix", "mille", "et", "un"]
    assert detokenize(tokenize(text)) == text
    vocab = TokenVocab.from_texts(["one two"])
    with pytest.raises(ValueError, match="outside the vocabulary: 'five', 'four'"):
        vocab.encode("four two five", "source")


@pytest.mark.slow  # compiles the float32 attention kernels and trains
def test_tiny_mapping_is_learned_exactly(tmp_path):
    trainer = Trainer(TrainConfig(data=write_pairs(tmp_path / "p.tsv"), epochs=60, **TINY))
    trainer.fit()
    losses = [r["train_loss"] for r in trainer.state.history]
    assert losses[-1] < 0.2 * losses[0]
    task = trainer.task
    got = [task.tgt_vocab.decode(ids) for ids in task.translate_ids(trainer.model, task.train_src)]
    assert got == [t for _, t in task.train_pairs]
    beams = [task.tgt_vocab.decode(ids) for ids in task.translate_ids(trainer.model, task.train_src, beam=3)]
    assert beams == got


@pytest.mark.slow
def test_resume_ends_with_bitwise_the_same_weights(tmp_path):
    data = write_pairs(tmp_path / "p.tsv")
    whole = Trainer(TrainConfig(data=data, epochs=3, **TINY))
    whole.fit(checkpoint=tmp_path / "whole.npz")
    first = Trainer(TrainConfig(data=data, epochs=3, **TINY))
    with pytest.raises(Killed):  # as if killed after the checkpoint of epoch 1
        first.fit(checkpoint=tmp_path / "cut.npz", callbacks=KillAfterFirstEpoch())
    resumed = Trainer.resume(tmp_path / "cut.npz")
    assert resumed.state.epoch == 1
    resumed.fit(checkpoint=tmp_path / "cut.npz")
    for key, value in whole.model.params.items():
        assert np.array_equal(value, resumed.model.params[key]), key
    # the checkpoint translates from the command line
    result = invoke(["translate", tmp_path / "cut.npz", "one two", "three one"])
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) == 2
    bad = invoke(["translate", tmp_path / "cut.npz", "one seven"])
    assert_one_line_error(bad, "outside the vocabulary", "'seven'")


@pytest.mark.parametrize("content, fragment", [("", "at least 2"), ("just one column\n", "line 1"),
                                               ("a\tb\nc\n", "line 2")])
def test_bad_tsv_is_one_line_naming_the_file(tmp_path, content, fragment):
    path = tmp_path / "bad.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=fragment):
        read_pairs(path)
    assert_one_line_error(invoke(["train", path, "--task", "translate", "--out", tmp_path / "x.npz"]),
                          "bad.tsv", fragment)


def test_translate_refuses_a_checkpoint_of_another_task(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("abcabcabc " * 40, encoding="utf-8")
    out = tmp_path / "lm.npz"
    assert invoke(["train", text, "--hidden-size", "4", "--epochs", "1", "--batch-size", "2", "--window", "4",
                   "--out", out, "--quiet"]).exit_code == 0
    assert_one_line_error(invoke(["translate", out, "one"]), "charlm model", "translate needs")
