"""The convolutional sandbox's models: shapes, the CIFAR ResNet-18 layout, plain CNNs, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradclip.sandbox.convolutional.models import (
    MODELS,
    build_model,
    deep_cnn,
    head_parameters,
    resnet18,
    small_cnn,
)


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (2, 1, 8, 8), (3, 1, 16, 16), (1, 4, 5, 7), (2, 3, 1, 1)])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_maps_any_image_size_and_channel_count_to_logits(name, shape):
    torch.manual_seed(0)
    model = build_model(name, in_channels=shape[1], num_classes=7).eval()
    out = model(torch.randn(shape))
    assert out.shape == (shape[0], 7)
    assert torch.isfinite(out).all()


def test_resnet18_has_the_parameter_count_of_the_reference_cifar_resnet18():
    # 11,173,962: the CIFAR ResNet-18 (3x3 stem, no max-pool, 1x1 projection shortcuts) for 10 classes,
    # as counted for the widely used kuangliu/pytorch-cifar implementation.
    assert sum(p.numel() for p in resnet18(in_channels=3, num_classes=10).parameters()) == 11_173_962


def test_resnet18_stem_is_3x3_stride_1_without_max_pool_and_keeps_resolution_in_stage_1():
    model = resnet18(in_channels=1)
    stem = model.stem[0]
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1) and stem.in_channels == 1
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    feats = model.stages[:2](model.stem(torch.randn(1, 1, 16, 16)))
    assert feats.shape == (1, 64, 16, 16)  # first stage: stride 1
    assert model.stages(model.stem(torch.randn(1, 1, 16, 16))).shape == (1, 512, 2, 2)


def test_plain_cnns_have_no_batch_norm_and_deep_cnn_has_depth_conv_layers():
    for model in (small_cnn(), deep_cnn(depth=12)):
        assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    convs = [m for m in deep_cnn(depth=12).modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 12


def test_every_parameter_gets_a_gradient():
    model = resnet18(in_channels=1, num_classes=3)
    model(torch.randn(4, 1, 8, 8)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_head_parameters_are_the_final_linear_layer():
    model = small_cnn(num_classes=5)
    head = head_parameters(model)
    assert [tuple(p.shape) for p in head] == [(5, 64), (5,)]
    assert head_parameters(nn.Linear(2, 2)) == []


def test_bad_model_arguments_name_the_argument_and_the_choices():
    with pytest.raises(ValueError, match=r"unknown model 'resnet50'; choose from \['deep_cnn', 'resnet18'"):
        build_model("resnet50", in_channels=3, num_classes=10)
    with pytest.raises(ValueError, match="in_channels must be an integer >= 1, got 0"):
        build_model("resnet18", in_channels=0, num_classes=10)
    with pytest.raises(ValueError, match=r"num_classes must be an integer >= 1, got 2\.5"):
        build_model("small_cnn", in_channels=1, num_classes=2.5)
    with pytest.raises(ValueError, match="depth must be an integer >= 1, got 0"):
        deep_cnn(depth=0)
