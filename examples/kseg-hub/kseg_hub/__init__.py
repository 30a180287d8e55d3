"""keras-hub's segmenters and backbones as kseg models (see kseg_hub.models for the names).

`kseg_hub.models` registers the networks (pure data, imports no keras_hub);
`kseg_hub.build` builds them with keras_hub; `kseg_hub.presets` reads local preset
directories. Nothing here downloads: random weights, or a preset directory on disk.
"""

__version__ = "0.1.0"
