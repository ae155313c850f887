"""Training tasks: the data, the model shape, the loss and the validation metrics of each
kind of run the trainer (:mod:`lstm_numba.training.trainer`) knows.

- :class:`ForecastTask`: a numeric CSV (or the embedded CO2 series) cut into sliding
  windows; the model reads ``window`` steps and predicts the next ``horizon`` values of
  the target column (one multi-output head), trained with MSE. Validation reports RMSE
  and MAE in original units beside the naive forecasts (last value, and seasonal naive
  when a period is known).
- :class:`ClassifyTask`: labelled sequences (``.npz`` or long CSV) classified from the
  last valid step, trained with softmax cross-entropy; validation reports accuracy.
- :class:`CharLMTask`: a UTF-8 text (or the embedded Alice text) as B parallel streams
  of characters, trained by truncated BPTT over ``window``-step chunks with the state
  carried across chunks (and reset at each epoch start); validation reports bits per
  character.

A task is built from a resolved :class:`~lstm_numba.training.config.TrainConfig`. ``data_state()``
is what a checkpoint must remember to use the model later (normaliser, vocabulary,
column names) and ``from_state`` rebuilds the inference side without the data.
"""
