"""Read the architecture entry of an nnU-Net plan and build encoders and decoders from it.

Every network of the package starts here: ``read_plan_architecture`` turns what nnU-Net's
``ConfigurationManager`` gives (``network_arch_class_name``, ``network_arch_init_kwargs``,
``network_arch_init_kwargs_req_import``) into a ``PlanArchitecture``; ``build_encoder`` and
``build_decoder`` then make dynamic_network_architectures' own blocks from it, at any width.
"""
from __future__ import annotations

import inspect
import pydoc
from dataclasses import dataclass
from types import SimpleNamespace
from typing import List, Sequence, Tuple

from dynamic_network_architectures.building_blocks.plain_conv_encoder import PlainConvEncoder
from dynamic_network_architectures.building_blocks.residual_encoders import ResidualEncoder
from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder
from dynamic_network_architectures.initialization.weight_init import InitWeights_He, init_last_bn_before_add_to_0
from torch import nn

#: nnU-Net architecture class (last part of the dotted name in the plans) -> encoder family.
ENCODER_FAMILIES = {"PlainConvUNet": PlainConvEncoder, "ResidualEncoderUNet": ResidualEncoder}

#: Plan keys that configure the decoder or the whole network, not the encoder.
_NOT_ENCODER_KEYS = {"n_conv_per_stage_decoder", "deep_supervision", "num_classes", "input_channels"}

#: Encoder arguments that count channels and therefore scale with the encoder width.
_CHANNEL_KEYS = ("features_per_stage", "stem_channels", "bottleneck_channels")

#: What UNetDecoder reads from the encoder it is given.
_DECODER_READS = ("strides", "conv_op", "norm_op", "norm_op_kwargs", "nonlin", "nonlin_kwargs",
                  "dropout_op", "dropout_op_kwargs", "conv_bias", "kernel_sizes")


@dataclass(frozen=True)
class PlanArchitecture:
    """One configuration's architecture, imports resolved.

    encoder_class: PlainConvEncoder or ResidualEncoder (the family of the plan's network)
    encoder_kwargs: the plan's encoder arguments, without ``input_channels`` and ``return_skips``
    n_conv_per_stage_decoder, nonlin_first: the decoder's own plan arguments
    """
    class_name: str
    encoder_class: type
    encoder_kwargs: dict
    n_conv_per_stage_decoder: object
    nonlin_first: bool

    @property
    def features_per_stage(self) -> List[int]:
        features = self.encoder_kwargs["features_per_stage"]
        if isinstance(features, int):
            return [features] * self.encoder_kwargs["n_stages"]
        return list(features)

    @property
    def conv_op(self) -> type:
        return self.encoder_kwargs["conv_op"]


def read_plan_architecture(arch_class_name: str, arch_kwargs: dict,
                           arch_kwargs_req_import: Sequence[str]) -> PlanArchitecture:
    """PlanArchitecture from the three architecture fields of an nnU-Net configuration.
    Raises ValueError for an architecture class this package cannot build."""
    short_name = arch_class_name.rsplit(".", 1)[-1]
    if short_name not in ENCODER_FAMILIES:
        raise ValueError(f"cannot build a multi-encoder network from plans with architecture '{arch_class_name}'; "
                         f"supported: {', '.join(sorted(ENCODER_FAMILIES))}")
    kwargs = dict(arch_kwargs)
    for key in arch_kwargs_req_import:
        if kwargs.get(key) is not None:
            located = pydoc.locate(kwargs[key])
            if located is None:
                raise ValueError(f"plans name '{kwargs[key]}' for '{key}', which cannot be imported")
            kwargs[key] = located
    encoder_class = ENCODER_FAMILIES[short_name]
    encoder_kwargs = {k: v for k, v in kwargs.items() if k not in _NOT_ENCODER_KEYS}
    accepted = set(inspect.signature(encoder_class.__init__).parameters)
    unknown = sorted(set(encoder_kwargs) - accepted)
    if unknown:
        raise ValueError(f"plans for '{arch_class_name}' contain arguments {unknown} that "
                         f"{encoder_class.__name__} does not take")
    return PlanArchitecture(class_name=arch_class_name, encoder_class=encoder_class, encoder_kwargs=encoder_kwargs,
                            n_conv_per_stage_decoder=kwargs["n_conv_per_stage_decoder"],
                            nonlin_first=bool(kwargs.get("nonlin_first", False)))


def scale_channels(channels, width: float):
    """Channel count(s) times ``width``, rounded, at least 1; None stays None."""
    if channels is None:
        return None
    if isinstance(channels, int):
        return max(1, int(round(channels * width)))
    return [scale_channels(c, width) for c in channels]


def build_encoder(arch: PlanArchitecture, input_channels: int, width: float = 1.0) -> nn.Module:
    """The plan's encoder (returning skips, highest resolution first) with every channel count
    scaled by ``width``."""
    kwargs = dict(arch.encoder_kwargs)
    for key in _CHANNEL_KEYS:
        if key in kwargs:
            kwargs[key] = scale_channels(kwargs[key], width)
    return arch.encoder_class(input_channels=input_channels, return_skips=True, **kwargs)


def decoder_interface(encoder: nn.Module, output_channels: Sequence[int]) -> SimpleNamespace:
    """What UNetDecoder reads from an encoder, taken from ``encoder`` but with skip widths
    ``output_channels``. A plain namespace, so the decoder does not register the encoder's
    parameters a second time under ``decoder.encoder``."""
    return SimpleNamespace(output_channels=list(output_channels),
                           **{name: getattr(encoder, name) for name in _DECODER_READS})


def build_decoder(arch: PlanArchitecture, encoder_interface, num_classes: int,
                  deep_supervision: bool) -> UNetDecoder:
    """dynamic_network_architectures' UNetDecoder for the plan, reading skip widths and conv
    settings from ``encoder_interface`` (an encoder or ``decoder_interface(...)``)."""
    return UNetDecoder(encoder_interface, num_classes, arch.n_conv_per_stage_decoder, deep_supervision,
                       nonlin_first=arch.nonlin_first)


def stage_sizes(input_size: Sequence[int], strides: Sequence[Sequence[int]]) -> List[Tuple[int, ...]]:
    """Spatial size of every encoder stage's output for an input of ``input_size``."""
    sizes = []
    for stride in strides:
        input_size = tuple(i // s for i, s in zip(input_size, stride))
        sizes.append(input_size)
    return sizes


def initialize_like_nnunet(module: nn.Module) -> None:
    """nnU-Net's initialisation, for ``network.apply``: He for convs; residual blocks start as identity."""
    InitWeights_He(1e-2)(module)
    init_last_bn_before_add_to_0(module)


def resolve_width(num_modalities: int, width, default, name: str = "width") -> float:
    """Channel-width factor of a per-modality network: ``width``, or ``default(num_modalities)``
    when None; ValueError for no modality or a non-positive width."""
    if num_modalities < 1:
        raise ValueError(f"need at least one modality, got {num_modalities}")
    value = default(num_modalities) if width is None else float(width)
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {width}")
    return value
