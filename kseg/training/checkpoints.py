"""The model of a run: built from the registry, resumed from last.keras, or started from
another checkpoint (`--init-from`) or from pretrained encoder weights (`--encoder-weights`)."""

import inspect
import json
import tempfile
import zipfile
from pathlib import Path

from kseg.errors import KsegError
from kseg.runs import RunDir
from kseg.runs.readback import warnings_held

# Builder argument that takes a local weights file, per built-in network.
ENCODER_WEIGHTS_ARG = ("encoder_weights", "weights")


def create(cfg, spec):
    """The registered network of `cfg` for (H, W, cfg.channels) inputs, with its --model-arg and
    --encoder-weights (whose first conv is adapted to the channels, kseg.models.adapt)."""
    from kseg import registry
    from kseg.training.task import logit_channels

    kwargs = dict(cfg.model_kwargs)
    if cfg.encoder_weights:
        kwargs[_weights_arg(cfg.arch)] = cfg.encoder_weights
    try:
        return registry.create_model(cfg.arch, num_classes=logit_channels(cfg.task, spec),
                                     input_shape=(None, None, cfg.channels), **kwargs)
    except KsegError:  # the builder's own check (kseg.models.layers.check_args) said it
        raise
    except (TypeError, ValueError) as exc:
        # With --model-arg, a builder that does not check its arguments fails inside Keras
        # (filters=-1): the user's value, not a bug. Without one, it is a bug: re-raised.
        if isinstance(exc, ValueError) and not cfg.model_kwargs:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KsegError(f"{cfg.arch} rejected --model-arg {cfg.model_kwargs}: {first}") from None


def _weights_arg(arch):
    from kseg import registry

    params = inspect.signature(registry.get_entry(arch).builder).parameters
    for name in ENCODER_WEIGHTS_ARG:
        if name in params:
            return name
    raise KsegError(f"--encoder-weights: {arch} takes no pretrained weights "
                    f"(its builder has none of {', '.join(ENCODER_WEIGHTS_ARG)}).")


def save_checkpoint(model, path):
    """`model.save(path)` without the compile config: architecture, weights and optimizer state.

    kseg's losses and metrics live in kseg, and Keras rebuilds a saved compile config on
    load, so a checkpoint that held them would not load in a bare `import keras`
    process. Resuming never needs it: `load_checkpoint` reads weights and optimizer
    state into a model kseg compiled itself.

    Keras builds a .keras file's weights in memory (an h5 file in a BytesIO) before it
    zips them: for U-Net with its Adam state that is 280 MB on top of the training
    run's peak at every epoch. Saved as a folder (`zipped=False`) the same h5 file goes
    straight to disk; the .keras file is that folder zipped, stored uncompressed as Keras
    writes it, so `keras.saving.load_model` reads the result like its own.
    """
    path = Path(path)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".saving-") as tmp:
        folder = Path(tmp) / "model"
        model.save(folder, zipped=False)
        _drop_compile_config(folder / "config.json")
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
            for file in sorted(folder.rglob("*")):  # metadata.json, config.json, model.weights.h5, assets/
                if file.is_file():
                    archive.write(file, file.relative_to(folder).as_posix())


def _drop_compile_config(config_file):
    """Remove the top-level "compile_config" of a saved model's config.json: what Keras
    writes for a model that was never compiled (the .keras format, Keras 3.0 on)."""
    config = json.loads(config_file.read_text())
    if config.pop("compile_config", None) is not None:
        config_file.write_text(json.dumps(config))


def load_checkpoint(model, path):
    """Weights and optimizer state of `path` into the compiled `model`."""
    model.optimizer.build(model.trainable_variables)
    try:
        with warnings_held():
            model.load_weights(path)
    except ValueError as exc:
        raise KsegError(f"{path} does not fit {model.name} with {model.output_shape[-1]} classes "
                        f"({str(exc).splitlines()[0]}); use --name for a new run.") from None
    except Exception as exc:  # truncated or foreign files raise many types
        raise KsegError(f"{path}: cannot load ({type(exc).__name__}: {exc}); the run cannot continue "
                        f"from it: start again with --name.") from None


def init_from(model, source, num_classes):
    """Start from the weights of another checkpoint (a .keras file or a run directory)."""
    path = Path(source)
    if path.is_dir():
        path = RunDir(path).best_path
    if not path.is_file():
        raise KsegError(f"--init-from {source}: no such checkpoint (a .keras file or a run directory).")
    src = _load(path)
    src_classes = src.output_shape[-1]
    if src.name != model.name or src_classes != num_classes:
        raise KsegError(f"--init-from {path} is a {src.name!r} model with {src_classes} classes; "
                        f"this run trains {model.name!r} with {num_classes}.")
    if [w.shape for w in src.weights] != [w.shape for w in model.weights]:
        raise KsegError(f"--init-from {path}: its layers differ from {model.name}'s (other --model-arg?).")
    model.set_weights(src.get_weights())


def _load(path):
    import keras

    try:
        with warnings_held():
            return keras.saving.load_model(path, compile=False)
    except Exception as exc:  # a truncated or foreign file raises many types
        raise KsegError(f"--init-from {path}: cannot load ({type(exc).__name__}: {exc})") from None
