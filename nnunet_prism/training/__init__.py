"""Trainers, found by discovery (``registry.trainer_classes``): a new module here with an
``nnUNetTrainer*`` subclass of ``nnUNetTrainerPrismBase`` is exported below, so nnU-Net (through
``nnunet_prism.ext_trainer_shim``) and ``nnunet_prism doctor`` find it without editing a list."""
from nnunet_prism.training.hyperparameters import install_one_line_errors as _install_one_line_errors
from nnunet_prism.training.registry import trainer_classes as _trainer_classes

_install_one_line_errors()  # nnUNetv2_train: a bad hyperparameter is one line, not a traceback

globals().update({_cls.__name__: _cls for _cls in _trainer_classes()})
__all__ = [_cls.__name__ for _cls in _trainer_classes()]
