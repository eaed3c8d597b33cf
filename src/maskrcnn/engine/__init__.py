"""Training, evaluation and prediction: the loops and commands around the model."""
