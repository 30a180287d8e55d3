"""kseg: semantic segmentation in pure Keras 3."""

import os

# TensorFlow's C++ start-up chatter hides kseg's own output; users can still override it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

from kseg.registry import create_model, list_models, model_info, register_model  # noqa: E402

__all__ = ["create_model", "list_models", "model_info", "register_model", "__version__"]
