"""SavedModel export with the tasks' serving signatures, and loading a model (a
training run's directory or an export) as a set of signatures for prediction."""
