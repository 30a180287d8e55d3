"""Training: configuration, the plan of a fit, the fit loop, callbacks, schedules, data parallelism
and progress."""
