"""Image classifiers for the convolutional sandbox: ResNet-18 (CIFAR variant), a small and a deep plain CNN.

``resnet18`` is He et al.'s ResNet-18 as used for 32x32 images: a 3x3 stride-1 stem without max-pool
(the ImageNet 7x7/2 stem plus pool would shrink a 32x32 image to 8x8 before the first block), four
stages of two basic blocks, then adaptive average pooling, so any input size >= 1 pixel and any number
of channels works. ``small_cnn`` is two conv layers and a linear head (fast, for tests and demos).
``deep_cnn`` stacks plain 3x3 convolutions without batch norm or skip connections: its gradients
vary over orders of magnitude between layers and steps, which is where clipping matters.
All models take ``(N, C, H, W)`` float images and return ``(N, num_classes)`` logits.

References: K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image Recognition",
CVPR 2016, arXiv:1512.03385.
"""

from __future__ import annotations

from collections.abc import Callable

from gradclip._extras import missing_extra

try:
    import torch
except ModuleNotFoundError as err:  # torch is an extra: say which one
    missing_extra(err, __name__)

from torch import Tensor, nn

__all__ = ["MODELS", "BasicBlock", "ResNet", "build_model", "deep_cnn", "head_parameters", "resnet18"]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus the input: ``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()  # identity when the shape is kept
        if stride != 1 or in_planes != planes:
            # 1x1 projection (option B of the paper) to match channels and resolution
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))  # (N, planes, H/stride, W/stride)
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Stem, four stages of ``BasicBlock`` (64, 128, 256, 512 channels, strides 1, 2, 2, 2), pool, linear."""

    def __init__(self, blocks: tuple[int, ...], *, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU()
        )
        stages, in_planes = [], 64
        for i, n in enumerate(blocks):
            planes = 64 * 2**i
            strides = [1 if i == 0 else 2] + [1] * (n - 1)
            stages += [BasicBlock(in_planes if j == 0 else planes, planes, s) for j, s in enumerate(strides)]
            in_planes = planes
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)  # any input size: (N, 512, h, w) -> (N, 512, 1, 1)
        self.head = nn.Linear(in_planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stages(self.stem(x))  # (N, 512, H/8, W/8), at least 1x1
        return self.head(self.pool(x).flatten(1))  # (N, num_classes)


def resnet18(*, in_channels: int = 3, num_classes: int = 10) -> ResNet:
    """ResNet-18, CIFAR variant (3x3 stem, no max-pool), 11.2M parameters for 10 classes."""
    return ResNet((2, 2, 2, 2), in_channels=in_channels, num_classes=num_classes)


class _PlainCNN(nn.Module):
    """``features`` (conv/ReLU/pool layers), global average pooling, a linear ``head``."""

    def __init__(self, features: nn.Sequential, width: int, num_classes: int) -> None:
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))  # (N, num_classes)


def small_cnn(*, in_channels: int = 3, num_classes: int = 10, width: int = 32) -> nn.Module:
    """conv3x3(width)-ReLU-pool, conv3x3(2 width)-ReLU, average pool, linear; no batch norm."""
    features = nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
    )  # fmt: skip
    return _PlainCNN(features, 2 * width, num_classes)


def deep_cnn(*, in_channels: int = 3, num_classes: int = 10, depth: int = 12, width: int = 32) -> nn.Module:
    """``depth`` plain conv3x3-ReLU layers (no batch norm, no skips), halving the size every 4 layers."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    layers: list[nn.Module] = []
    channels = in_channels
    for i in range(depth):
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        channels = width
        if i % 4 == 3 and i != depth - 1:
            layers.append(nn.MaxPool2d(2, ceil_mode=True))  # ceil: a 1x1 map stays 1x1
    return _PlainCNN(nn.Sequential(*layers), width, num_classes)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet18": resnet18,
    "small_cnn": small_cnn,
    "deep_cnn": deep_cnn,
}


def build_model(name: str, *, in_channels: int, num_classes: int) -> nn.Module:
    """The model called ``name`` (a key of `MODELS`) for the given image channels and classes."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    for arg, value in (("in_channels", in_channels), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be an integer >= 1, got {value!r}")
    return MODELS[name](in_channels=in_channels, num_classes=num_classes)


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The final classifier's parameters (AGC leaves them unclipped, as Brock et al. 2021 do)."""
    head = getattr(model, "head", None)
    return list(head.parameters()) if isinstance(head, nn.Module) else []
