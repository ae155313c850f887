"""Speech: eSpeak NG synthesis through ctypes, log-mel features, and a tiny CTC acoustic
model whose loss falls."""

import numpy as np
import pytest

from lstm_numba.nn.acoustic import CTCAcousticModel
from lstm_numba.nn.ctc import ctc_loss
from lstm_numba.nn.ctc_decode import greedy_decode
from lstm_numba.training.optim import Adam

pytest.importorskip("espeakng_loader")
pytest.importorskip("librosa")


def test_synthesis_rate_and_length():
    from lstm_numba.training.data.speech import Speaker, log_mel, number_words

    speaker = Speaker.shared()
    assert speaker.rate == 22050
    assert number_words(342) == "three hundred and forty-two"
    short = speaker.say("seven", voice="en-us", rate=175)
    long = speaker.say(number_words(412306), voice="en", variant="f2", rate=175)
    assert 0.2 * 22050 < short.size < 1.5 * 22050          # one word: well under 1.5 s
    assert long.size > 2.5 * short.size                     # nine words take longer
    assert np.abs(long).max() > 0.05                        # not silence
    slow = speaker.say("seven", voice="en-us", rate=100)
    assert slow.size > 1.3 * short.size                     # the rate parameter reaches eSpeak
    features = log_mel(short, speaker.rate)
    assert features.shape[1] == 40
    assert abs(features.shape[0] - short.size / 22050 * 100) <= 2   # 10 ms frames


@pytest.mark.slow
def test_tiny_ctc_model_learns_two_words():
    # Two "utterances" of random but fixed frames; the model must learn their labels.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 3)).astype(np.float64)
    targets = [[1, 2], [2, 2]]
    model = CTCAcousticModel(3, 3, hidden_size=5, num_layers=1, dtype="float64", seed=0)
    opt = Adam(model.params, lr=0.05)
    losses = []
    for _ in range(60):
        logits = model.forward(x)
        loss, dlogits = ctc_loss(np.ascontiguousarray(logits.transpose(1, 0, 2)), targets)
        losses.append(loss)
        opt.step(model.backward(np.ascontiguousarray(dlogits.transpose(1, 0, 2))))
    assert losses[-1] < 0.2 * losses[0]
    logits = model.forward(x, need_grad=False)
    assert [greedy_decode(row) for row in logits] == targets
