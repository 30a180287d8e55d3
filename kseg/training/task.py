"""The task a run trains: `binary` (one sigmoid logit), `multiclass` (softmax over one logit
per class) or `multilabel` (a sigmoid per class, for overlapping classes: kseg.data.multilabel_masks).

`--task auto` (the default) is binary for a dataset of two classes (kseg.data.encoding
infers background/foreground from 0/1 and 0/255 masks) and multiclass otherwise. A
binary network ends in ONE logit z per pixel, p(foreground) = sigmoid(z); the losses
take their binary modes (kseg.losses.segmentation_loss), and everything after the network (metrics,
eval, predict, report) reads z as the two-class logits [0, z], whose softmax is
[1 - sigmoid(z), sigmoid(z)]: the same scores, files and tables as any two-class run.
"""

from kseg.errors import KsegError


def resolve_task(task, spec):
    """"binary", "multiclass" or "multilabel" for `--task task` on a dataset of `spec`'s classes."""
    if spec.multilabel or task == "multilabel":
        if task not in ("auto", "multilabel") or not spec.multilabel:
            why = "its classes overlap (multi-label masks)" if spec.multilabel else "one class a pixel"
            raise KsegError(f"--task {task} does not fit {spec.name!r}: {why}; use --task auto")
        return "multilabel"
    if task == "auto":
        return "binary" if spec.num_classes == 2 else "multiclass"
    if task == "binary" and spec.num_classes != 2:
        raise KsegError(f"--task binary needs a dataset of two classes (background and foreground); "
                        f"{spec.name!r} has {spec.num_classes}: use --task multiclass")
    return task


def logit_channels(task, spec):
    """The network's output channels: 1 for a binary task, else one per class."""
    return 1 if resolve_task(task, spec) == "binary" else spec.num_classes


def check_task_options(cfg, spec):
    """Options that pick pixels by class index, which a multi-label label is not."""
    if not spec.multilabel:
        return
    for key, flag in (("class_weights", "--class-weights"), ("class_uniform", "--class-uniform")):
        if getattr(cfg, key):
            raise KsegError(f"{flag} weighs or picks pixels by their one class; a multi-label set's "
                            f"pixels may have several: drop {flag}")
