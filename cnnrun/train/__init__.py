"""A training run: the trainer and its callbacks, checkpoints, run directories, progress,
evaluation, and the optimizers and schedules (optim/)."""
