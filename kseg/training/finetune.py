"""Fine-tuning a pretrained encoder: frozen for the first epochs (`--freeze-encoder-epochs`),
then trained at a fraction of the learning rate (`--encoder-lr-mult`).

Keras 3 optimizers have one learning rate. kseg scales the encoder's whole step instead:
each train step the optimizer's `apply` is wrapped so that, for every encoder variable,

    w_new = w_old + m * (w_optimizer - w_old),    m = 0 while frozen, then the multiplier

where w_optimizer is what the optimizer wrote (Adam's step and AdamW's decoupled decay
together). For Adam and AdamW that is exactly a learning rate of m * lr for the encoder.
m is a non-trainable variable set at each epoch's start by `EncoderRate`, read inside the
compiled step, so nothing is traced again at the thaw and a resumed run gets the m of its
epoch. The encoder is the nested `encoder` model of kseg.models.encoder.

While frozen the weights stay exactly as loaded; gradients are still computed, so a
frozen epoch costs what a trained one does, and the encoder's batch-norm statistics keep
following the new data (as fastai's freeze leaves them). Keras' `trainable = False` would
save the encoder's backward pass but needs a new compiled step and a new optimizer at the
thaw, which one resumable `fit` does not have.
"""

import keras

from kseg.errors import KsegError


def wants_encoder_rate(cfg):
    return cfg.freeze_encoder_epochs > 0 or cfg.encoder_lr_mult != 1.0


def encoder_variables(model):
    """The trainable variables of `model`'s nested `encoder` model."""
    from kseg.models.encoder import encoder_layers

    return [v for layer in encoder_layers(model) for v in layer.trainable_variables]


def scale_encoder_steps(model, cfg):
    """Wrap `model.optimizer.apply` (after compile) so the encoder's step is scaled by the
    multiplier; returns that multiplier's variable."""
    variables = encoder_variables(model)
    if not variables:
        raise KsegError(f"--freeze-encoder-epochs / --encoder-lr-mult: {model.name} has no pretrained-style "
                        f"encoder (a nested 'encoder' model, as unet-resnet50 or fpn-efficientnetv2b0 have).")
    if cfg.distribute:
        raise KsegError("--freeze-encoder-epochs / --encoder-lr-mult do not work with --distribute yet; "
                        "drop one of them.")
    multiplier = keras.Variable(0.0 if cfg.freeze_encoder_epochs else cfg.encoder_lr_mult, dtype="float32",
                                trainable=False, name="encoder_rate")
    optimizer = model.optimizer
    apply = optimizer.apply

    def scaled_apply(grads, trainable_variables=None):
        before = [keras.ops.copy(v.value) for v in variables]  # (read before the update)
        result = apply(grads, trainable_variables)
        for v, old in zip(variables, before, strict=True):
            v.assign(old + keras.ops.cast(multiplier, v.dtype) * (v.value - old))
        return result

    scaled_apply.encoder_rate = multiplier
    optimizer.apply = scaled_apply
    return multiplier


class EncoderRate(keras.callbacks.Callback):
    """Sets the encoder's step multiplier at each epoch's start: 0 for the first
    `freeze_epochs` epochs (0-based epoch < freeze_epochs), then `multiplier`."""

    def __init__(self, rate, freeze_epochs, multiplier):
        super().__init__()
        self.rate, self.freeze_epochs, self.multiplier = rate, freeze_epochs, multiplier

    def on_epoch_begin(self, epoch, logs=None):
        self.rate.assign(0.0 if epoch < self.freeze_epochs else self.multiplier)


def callbacks(model, cfg):
    """`[EncoderRate]` where `scale_encoder_steps` wrapped the model's optimizer, else []."""
    rate = getattr(getattr(model, "optimizer", None) and model.optimizer.apply, "encoder_rate", None)
    return [EncoderRate(rate, cfg.freeze_encoder_epochs, cfg.encoder_lr_mult)] if rate is not None else []
