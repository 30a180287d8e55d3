"""Speed of the confusion matrix on full frames, for `kseg bench`.

Compared against model prediction speed it shows whether evaluation is bound by the
model or by the metric (it should be the model, by orders of magnitude).
"""

import numpy as np

from kseg.bench.timing import timed_calls


def measure_confusion(num_frames=16, size=(360, 480), num_classes=12, repeats=3, seed=0):
    """Time the confusion matrix of `num_frames` frames of `size`, numpy and keras paths.

    Labels are uniform over the K classes plus a void value K on about 5% of pixels.
    numpy path: `confusion_matrix` on uint8 label maps (what `kseg eval` does).
    keras path: `MeanIoU.update_state` on uint8 labels and float32 logits
    (N, H, W, K), eager, argmax included (what a training step adds per batch).

    Returns a dict: frames, size, num_classes, pixels, backend, numpy_seconds,
    numpy_fps, keras_seconds, keras_fps, agree (both paths gave the same matrix).
    """
    import keras

    from kseg.metrics.confusion import confusion_matrix
    from kseg.metrics.keras_metrics import MeanIoU

    h, w = size
    k = int(num_classes)
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, size=(num_frames, h, w), dtype=np.uint8)
    y_true[rng.random((num_frames, h, w)) < 0.05] = k  # void
    logits = rng.standard_normal((num_frames, h, w, k), dtype=np.float32)
    y_pred = logits.argmax(-1).astype(np.uint8)

    numpy_s = min(timed_calls(lambda: confusion_matrix(y_true, y_pred, k, ignore_index=k), repeats)[0])

    metric = MeanIoU(k, ignore_index=k)
    yt, yl = keras.ops.convert_to_tensor(y_true), keras.ops.convert_to_tensor(logits)

    def keras_update():
        metric.reset_state()
        metric.update_state(yt, yl)
        keras.ops.convert_to_numpy(metric.cm)  # wait for asynchronous backends

    keras_s = min(timed_calls(keras_update, repeats)[0])
    agree = bool(
        np.array_equal(
            np.rint(keras.ops.convert_to_numpy(metric.cm)).astype(np.int64),
            confusion_matrix(y_true, y_pred, k, ignore_index=k),
        )
    )
    return {
        "frames": int(num_frames),
        "size": [int(h), int(w)],
        "num_classes": k,
        "pixels": int(num_frames * h * w),
        "backend": keras.backend.backend(),
        "numpy_seconds": numpy_s,
        "numpy_fps": num_frames / numpy_s,
        "keras_seconds": keras_s,
        "keras_fps": num_frames / keras_s,
        "agree": agree,
    }
