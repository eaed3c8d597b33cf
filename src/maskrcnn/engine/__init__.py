"""Training, evaluation and prediction: the loops around the model (the commands are in :mod:`maskrcnn.cli`)."""
