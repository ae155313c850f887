"""Data loading and preparation for the training stack (pure NumPy, cheap to import).

Three kinds of data:

- **Series forecasting:** :func:`read_csv_columns` reads numeric columns from a CSV,
  :func:`prepare_forecast` splits in time, normalises with training statistics only, cuts
  sliding windows (:func:`make_windows`) and computes naive baselines.
- **Character language modelling:** :class:`CharVocab`, :func:`make_char_sequences`,
  :func:`batchify_stream` and :func:`iterate_bptt` (truncated BPTT over parallel streams).
- **Sequence classification:** :func:`load_labelled` reads ``.npz`` or long-format CSV.

:func:`iterate_minibatches` shuffles with a caller-owned ``numpy.random.Generator``.
Every error names the file, column and line it is about.
"""

from lstm_numba.training.data.labelled import (
                                             LabelledSequences,
                                             iterate_minibatches,
                                             load_labelled,
)
from lstm_numba.training.data.series import (
                                             ForecastData,
                                             Normalizer,
                                             SeriesWindows,
                                             make_windows,
                                             prepare_forecast,
                                             time_split,
)
from lstm_numba.training.data.tables import Columns, read_csv_columns
from lstm_numba.training.data.text import (
                                             CharVocab,
                                             batchify_stream,
                                             iterate_bptt,
                                             make_char_sequences,
)

__all__ = ["CharVocab", "Columns", "ForecastData", "LabelledSequences", "Normalizer", "SeriesWindows",
           "batchify_stream", "iterate_bptt", "iterate_minibatches", "load_labelled", "make_char_sequences",
           "make_windows", "prepare_forecast", "read_csv_columns", "time_split"]
