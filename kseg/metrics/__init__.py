"""Segmentation metrics: one confusion matrix, every score derived from it.

numpy (evaluation): `confusion_matrix`, `ConfusionAccumulator`, `scores`,
`cross_entropy_sum`, `split_loss`, `SoftDiceAccumulator`. Keras (training logs, any backend):
`kseg.metrics.keras_metrics` (imported lazily, so numpy-only users skip keras). The
training losses live in kseg.losses.
Definitions: docs/metrics.md.
"""

from kseg.metrics.confusion import ConfusionAccumulator, confusion_matrix
from kseg.metrics.scores import SCORE_NAMES, per_class_counts, scores
from kseg.metrics.soft_dice import SoftDiceAccumulator
from kseg.metrics.split_loss import cross_entropy_sum, split_loss

__all__ = [
    "SCORE_NAMES",
    "ConfusionAccumulator",
    "SoftDiceAccumulator",
    "confusion_matrix",
    "cross_entropy_sum",
    "per_class_counts",
    "scores",
    "split_loss",
    "training_metrics",
]


def training_metrics(num_classes, ignore_index=None, multilabel=False):
    """[PixelAccuracy, MeanIoU, SoftDice] for `model.compile` (see keras_metrics); their
    multi-label versions (multilabel_keras) with `multilabel`."""
    if multilabel:
        from kseg.metrics.multilabel_keras import training_metrics as _training_metrics
    else:
        from kseg.metrics.keras_metrics import training_metrics as _training_metrics

    return _training_metrics(num_classes, ignore_index)

