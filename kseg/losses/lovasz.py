"""Lovász-softmax (Berman, Rannen Triki and Blaschko, CVPR 2018), "present" classes variant.

For each class c, over the batch's kept pixels (flattened, not per image):

    e_i = |y_ic - p_ic|                     errors, sorted in decreasing order
    g   = gradient of the Lovász extension of the Jaccard loss at the sorted labels
    L_c = sum_i e_(i) g_i

and the loss averages L_c over the classes present in the labels, weighted by the class
weights (kseg.losses.terms.present_class_mean), as the reference `classes="present"`.

Void pixels are not filtered out (shapes stay static for XLA and every backend): their
error is set to 0 and their label to 0. Errors are >= 0, so they sort after every pixel
with a positive error, and a pixel with error 0 adds 0 whatever its g; the loss and its
gradient are those of the filtered pixels. Ties do not matter either: swapping two equal
errors leaves sum e g unchanged. The sort is `keras.ops.argsort` on all K classes at
once, then `take_along_axis`; gradients flow through the gathered errors (the order is
piecewise constant).
"""

from keras import ops

from kseg.losses.terms import present_class_mean


def lovasz_grad(fg_sorted):
    """Gradient of the Lovász extension of the Jaccard loss, (K, N) -> (K, N).

    fg_sorted: 0/1 labels of each class in decreasing order of that class's errors.
    jaccard[k] = 1 - |fg \\ first k+1| / |fg U first k+1|; g = its first differences.
    union >= k+1 >= 1, so no division by zero, even for an absent class.
    """
    gts = ops.sum(fg_sorted, axis=-1, keepdims=True)  # (K, 1) pixels of the class
    intersection = gts - ops.cumsum(fg_sorted, axis=-1)
    union = gts + ops.cumsum(1.0 - fg_sorted, axis=-1)
    jaccard = 1.0 - intersection / union  # (K, N)
    return ops.concatenate([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], axis=-1)


def lovasz_softmax(batch, class_weights=None):
    """Lovász-softmax loss of a kseg.losses.terms.Batch; float32 scalar."""
    m = ops.expand_dims(batch.mask, -1)  # (N, 1), 0 on void
    fg = ops.transpose(batch.onehot * m)  # (K, N)
    errors = ops.transpose(ops.abs(batch.onehot - batch.probs) * m)  # (K, N), 0 on void
    order = ops.argsort(-errors, axis=-1)  # (K, N) decreasing errors per class
    errors_sorted = ops.take_along_axis(errors, order, axis=-1)
    fg_sorted = ops.stop_gradient(ops.take_along_axis(fg, order, axis=-1))
    per_class = ops.sum(errors_sorted * lovasz_grad(fg_sorted), axis=-1)  # (K,)
    return present_class_mean(per_class, ops.sum(fg, axis=-1), class_weights)
