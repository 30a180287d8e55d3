"""kseg: semantic segmentation in pure Keras 3.

The Python API mirrors the command line, one function per verb:

    import kseg
    run = kseg.fit("unet", data="~/data/camvid", recipe="camvid")   # kseg fit
    scores = kseg.evaluate(run, splits=["val"])                     # kseg eval
    labels = kseg.predict(run, ["frame.png"])                       # kseg predict
    run = kseg.load_run("runs/unet")                                # history, config, best model
"""

# Importing kseg changes nothing in the process: no import hooks, no stderr redirection,
# no environment variables. The `kseg` command's quiet start-up is its own (kseg.cli.main.run).

__version__ = "0.1.0"

from kseg.registry import create_model, list_models, model_info, register_model  # noqa: E402

_API = ("fit", "evaluate", "predict", "load_run")
__all__ = ["create_model", "list_models", "model_info", "register_model", "__version__", *_API]


def __getattr__(name):
    # The API imports Keras on first use only, so `import kseg` and `kseg --help` stay fast.
    if name in _API:
        from kseg import api

        return getattr(api, name)
    raise AttributeError(f"module 'kseg' has no attribute {name!r}")
