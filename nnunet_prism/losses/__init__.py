"""Losses, one module per family. They are pure functions or small modules and know nothing
of trainers. PRISM/PASSION (ACM MM 2024):

- :mod:`.distillation` pixel-wise self-distillation (temperature KL, softmax or per-region)
- :mod:`.prototype`    semantic (prototype) self-distillation and the knowledge gap D
- :mod:`.preference`   relative preference RP, omega, the coefficients E^m and the combined loss
"""
from nnunet_prism.losses.distillation import (DEFAULT_TEMPERATURE, deep_supervision_weights,
                                              kl_divergence_map, pixel_distillation_loss)
from nnunet_prism.losses.preference import (DEFAULT_GAMMA, DEFAULT_LAMBDA_PIXEL,
                                            DEFAULT_LAMBDA_PROTO, PreferenceState,
                                            initial_coefficients, preference_mask,
                                            prism_distillation_loss, relative_preference)
from nnunet_prism.losses.prototype import (PrototypeDistillation, class_masks,
                                           prototype_distillation)

__all__ = [
    "DEFAULT_TEMPERATURE", "DEFAULT_GAMMA", "DEFAULT_LAMBDA_PIXEL", "DEFAULT_LAMBDA_PROTO",
    "deep_supervision_weights", "kl_divergence_map", "pixel_distillation_loss",
    "PrototypeDistillation", "class_masks", "prototype_distillation",
    "relative_preference", "preference_mask", "initial_coefficients", "PreferenceState",
    "prism_distillation_loss",
]
