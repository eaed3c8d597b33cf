"""Training, evaluation and prediction: the loops around the model (the commands: :mod:`maskrcnn.cli`)."""
