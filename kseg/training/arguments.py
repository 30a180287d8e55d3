"""The arguments of `kseg.training.loop.run_fit` besides its FitConfig, checked before any
folder is made: a refused start leaves nothing behind."""

import os

from kseg.errors import KsegError


def check_fit_arguments(runs, name, max_steps, resume, progress):
    """The other arguments of `fit`, checked before any folder is made; returns `runs`.
    A --name is one folder name: "../x" or "a/b" would put the run outside `runs`."""
    if not isinstance(runs, (str, os.PathLike)) or not str(runs):
        raise KsegError(f"runs must be a folder path. Received: {runs!r:.80}")
    if name is not None and (not isinstance(name, str) or name in ("", ".", "..")
                             or any(sep in name for sep in ("/", "\\", "\0"))):
        raise KsegError(f"--name must be a folder name without '/' (the run goes into {runs}/NAME). "
                        f"Received: {name!r:.80}")
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int)
                                  or max_steps < 1):
        raise KsegError(f"max_steps must be a whole number >= 1 or None. Received: {max_steps!r:.80}")
    for key, value in (("resume", resume), ("progress", progress)):
        if value is not None and not isinstance(value, bool):
            raise KsegError(f"{key} must be True or False. Received: {value!r:.80}")
    return runs


def check_callbacks(callbacks):
    """The user's Keras callbacks as a list, refused before any folder is made unless each
    one is a `keras.callbacks.Callback` (a string would fail inside model.fit)."""
    import keras

    if isinstance(callbacks, keras.callbacks.Callback):
        callbacks = [callbacks]
    if isinstance(callbacks, (str, bytes, dict)) or not hasattr(callbacks, "__iter__"):
        raise KsegError(f"callbacks must be a list of keras.callbacks.Callback. Received: {callbacks!r:.80}")
    callbacks = list(callbacks)
    for item in callbacks:
        if not isinstance(item, keras.callbacks.Callback):
            raise KsegError(f"callbacks must be a list of keras.callbacks.Callback; {item!r:.80} "
                            f"({type(item).__name__}) is not one.")
    return callbacks
