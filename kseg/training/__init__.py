"""Training: configuration, the fit loop, callbacks, schedules, data parallelism and progress."""
