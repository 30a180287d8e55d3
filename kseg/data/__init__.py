"""Datasets: description (spec), readers, checks, patches, augmentation, frames.

Submodules are imported on use; `kseg.data.patches` imports Keras, the rest do not,
so `kseg data check` starts fast.
"""

from kseg.data.dataset_spec import CAMVID, DatasetSpec, load_spec
from kseg.data.readers import Dataset, Pair, open_dataset

__all__ = ["CAMVID", "Dataset", "DatasetSpec", "Pair", "load_spec", "open_dataset"]
