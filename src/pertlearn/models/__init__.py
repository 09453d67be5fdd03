"""Models. Binary models map ``(N, ...)`` inputs to scores of shape ``(N,)`` (label = sign);
multi-class models map them to logits of shape ``(N, K)``. Any ``nn.Module`` following one of
these conventions can be used as f or g; image networks of your own are named in configs once
registered with :func:`register_network`."""

from pertlearn.models.cnn import (
    ICLRResNet,
    ImageMLP,
    Normalize,
    SmallCNN,
    WideResNet,
    build_image_model,
    image_model_names,
    image_model_options,
    register_network,
)
from pertlearn.models.two_layer import OneHiddenNet, TwoLayerNet

__all__ = [
    "ICLRResNet",
    "ImageMLP",
    "Normalize",
    "OneHiddenNet",
    "SmallCNN",
    "TwoLayerNet",
    "WideResNet",
    "build_image_model",
    "image_model_names",
    "image_model_options",
    "register_network",
]
