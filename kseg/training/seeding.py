"""Seeds and TensorFlow op determinism, as `kseg fit` sets them."""

from kseg import compat


def seed_everything(seed, deterministic=None, jit=None):
    """Seed Python, numpy and the backend; set TensorFlow op determinism.

    `deterministic=None` turns TF op determinism on only when no GPU is visible and XLA
    was not asked for: on a GPU it picks slower kernels and fails on ops that have no
    deterministic one, and Keras silently drops `jit_compile=True` while it is on. The
    flag is process-wide, so it is set either way, not only turned on.
    """
    import keras

    keras.utils.set_random_seed(seed)
    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    if deterministic is None:
        deterministic = not (jit or tf.config.list_physical_devices("GPU"))
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    else:
        compat.disable_op_determinism()
