"""Spoken English number phrases made on the machine: eSpeak NG (from the
``espeakng-loader`` wheel, called through ctypes) speaks ``num2words`` text, and
``librosa`` turns the audio into log-mel features. Everything needs the ``speech`` extra.

The synthesiser runs in synchronous mode: ``espeak_Synth`` returns once the callback has
received every int16 sample, at the library's own rate (22,050 Hz).
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

from lstm_numba.formats import require

__all__ = ["Speaker", "FEATURE_RATE", "FEATURE_SETTINGS", "log_mel", "number_words",
           "ALPHABET", "VOICES", "VARIANTS"]

#: The English voices and the voice variants combined with them.
VOICES = ("en", "en-us", "en-gb-x-rp", "en-029", "en-gb-scotland", "en-us-nyc", "en-gb-x-gbclan")
VARIANTS = ("", "Alex", "Annie", "Andy", "Denis", "f1", "f2", "f3", "f4", "m1", "m2", "m3",
            "m4", "m5", "m6", "m7", "klatt", "klatt2", "Mr_serious", "Tweaky", "belinda",
            "edward", "iven", "john", "linda", "quincy", "robert", "steph")

#: Characters of the transcripts; class 0 of the CTC head is the blank.
ALPHABET = " -abcdefghijklmnopqrstuvwxyz"

#: Features: 40 log-mel bands over 25 ms windows every 10 ms, at 16 kHz.
FEATURE_RATE = 16000
FEATURE_SETTINGS = {"sample_rate": FEATURE_RATE, "n_mels": 40, "win_length": 400,
                    "hop_length": 160, "n_fft": 512}

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_PARAMETERS = {"rate": 1, "volume": 2, "pitch": 3, "range": 4}
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                   ctypes.c_void_p)


def number_words(n: int) -> str:
    """``n`` in English words as eSpeak is asked to say it: "four hundred and twelve"."""
    num2words = require("num2words", "speech", "Spoken number phrases").num2words
    return num2words(int(n)).replace(",", "")


class Speaker:
    """One loaded eSpeak NG library; ``say`` returns float32 audio in [-1, 1] at ``rate``."""

    _instance = None

    def __init__(self):
        loader = require("espeakng_loader", "speech", "Speech synthesis")
        lib = ctypes.cdll.LoadLibrary(os.fspath(loader.get_library_path()))
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        data = os.fspath(loader.get_data_path()).encode()
        self.rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if self.rate <= 0:
            raise RuntimeError(f"eSpeak NG failed to initialise from {data.decode()}")
        self._chunks: list[np.ndarray] = []
        self._callback = _SYNTH_CALLBACK(self._receive)  # kept alive with the object
        lib.espeak_SetSynthCallback(self._callback)
        self._lib = lib

    @classmethod
    def shared(cls) -> "Speaker":
        """The process's one speaker (the library keeps global state)."""
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def _receive(self, samples, count, _events):
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
        return 0

    def say(self, text: str, voice: str = "en", variant: str = "", rate: int = 175,
            pitch: int = 50, pitch_range: int = 50) -> np.ndarray:
        """Synthesise ``text``; ``rate`` in words per minute (80-450), ``pitch`` and
        ``pitch_range`` 0-100."""
        name = f"{voice}+{variant}" if variant else voice
        if self._lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise ValueError(f"eSpeak NG has no voice {name!r}")
        for key, value in (("rate", rate), ("pitch", pitch), ("range", pitch_range)):
            self._lib.espeak_SetParameter(_PARAMETERS[key], int(value), 0)
        self._chunks = []
        encoded = text.encode()
        self._lib.espeak_Synth(encoded, len(encoded) + 1, 0, 0, 0, 0, None, None)
        self._lib.espeak_Synchronize()
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return audio.astype(np.float32) / 32768.0


def add_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``audio`` plus white noise at ``snr_db`` decibels below its mean power."""
    power = float(np.mean(audio.astype(np.float64) ** 2)) or 1e-12
    noise = rng.normal(scale=np.sqrt(power / 10 ** (snr_db / 10)), size=audio.shape)
    return (audio + noise).astype(np.float32)


def log_mel(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """(frames, 40) float32 log-mel features of mono ``audio``, resampled to 16 kHz first."""
    librosa = require("librosa", "speech", "Speech features")
    if sample_rate != FEATURE_RATE:
        audio = librosa.resample(audio, orig_sr=sample_rate, target_sr=FEATURE_RATE)
    mel = librosa.feature.melspectrogram(
        y=audio, sr=FEATURE_RATE, n_fft=FEATURE_SETTINGS["n_fft"],
        win_length=FEATURE_SETTINGS["win_length"], hop_length=FEATURE_SETTINGS["hop_length"],
        n_mels=FEATURE_SETTINGS["n_mels"])
    return np.log(mel.T + 1e-6).astype(np.float32)
