"""`keras` and `keras.layers` for the network modules, imported on first use.

Registering a network only defines its builder, so `kseg.list_models()` and `kseg
models` need not import Keras and its backend (TensorFlow alone takes seconds and adds
its own import hooks to the process). The first attribute read, when a network is
built, imports the real module; every later read is a dict lookup in sys.modules.
"""

import importlib


class _LazyModule:
    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self):
        return f"<{self._name}, imported on first use>"


keras = _LazyModule("keras")
layers = _LazyModule("keras.layers")
