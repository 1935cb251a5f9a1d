"""Imported by nnU-Net's trainer lookup (uniquely named so it cannot shadow anything): exports
every nnunet_prism trainer found by discovery (``nnunet_prism.training.registry``), and makes a
user error raised while nnU-Net builds one of them (a bad hyperparameter, say) one line."""
from nnunet_prism.errors import install_excepthook as _install_excepthook
from nnunet_prism.training.registry import trainer_classes as _trainer_classes

_install_excepthook()  # nnUNetv2_train: a bad hyperparameter is one line, not a traceback

globals().update({_cls.__name__: _cls for _cls in _trainer_classes()})
__all__ = [_cls.__name__ for _cls in _trainer_classes()]
