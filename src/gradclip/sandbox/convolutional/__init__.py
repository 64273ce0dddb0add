"""Convolutional sandbox: torch image classifiers (ResNet-18, plain CNNs), ConvTrainer, and its CLI.

``python -m gradclip.sandbox.convolutional resnet18 --epochs 5 --batch-size 128 --grad-clip 5.0``
trains ResNet-18 on the embedded digits; see `cli` for every option.
"""

from gradclip.sandbox.convolutional.clipping import CLIP_MODES, make_clipper
from gradclip.sandbox.convolutional.data import (
    ImageSplit,
    load_cifar10,
    load_data,
    load_digits,
    load_image_folder,
)
from gradclip.sandbox.convolutional.models import MODELS, build_model, deep_cnn, resnet18, small_cnn
from gradclip.sandbox.convolutional.trainer import ConvTrainer, Metrics

__all__ = [
    "CLIP_MODES",
    "MODELS",
    "ConvTrainer",
    "ImageSplit",
    "Metrics",
    "build_model",
    "deep_cnn",
    "load_cifar10",
    "load_data",
    "load_digits",
    "load_image_folder",
    "make_clipper",
    "resnet18",
    "small_cnn",
]
