"""Losses, one module per family. They are pure functions or small modules and know nothing
of trainers. PRISM/PASSION (ACM MM 2024):

- :mod:`.distillation` pixel-wise self-distillation (temperature KL, softmax or per-region)
- :mod:`.prototype`    semantic (prototype) self-distillation and the knowledge gap D
"""
from nnunet_prism.losses.distillation import (DEFAULT_TEMPERATURE, deep_supervision_weights,
                                              kl_divergence_map, pixel_distillation_loss)
from nnunet_prism.losses.prototype import (PrototypeDistillation, class_masks,
                                           prototype_distillation)

__all__ = ["DEFAULT_TEMPERATURE", "deep_supervision_weights", "kl_divergence_map",
           "pixel_distillation_loss", "PrototypeDistillation", "class_masks",
           "prototype_distillation"]
