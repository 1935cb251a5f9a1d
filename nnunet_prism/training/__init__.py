"""Trainers, found by discovery (``registry.trainer_classes``): a new module here with an
``nnUNetTrainer*`` subclass of ``nnUNetTrainerPrismBase`` is exported below, so nnU-Net (through
``nnunet_prism.ext_trainer_shim``) and ``nnunet_prism doctor`` find it without editing a list."""
from nnunet_prism.training.registry import trainer_classes as _trainer_classes

globals().update({_cls.__name__: _cls for _cls in _trainer_classes()})
__all__ = [_cls.__name__ for _cls in _trainer_classes()]
