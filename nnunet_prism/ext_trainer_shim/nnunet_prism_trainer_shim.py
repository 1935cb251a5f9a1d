"""Imported by nnU-Net's trainer lookup (uniquely named so it cannot shadow anything): exports
every nnunet_prism trainer found by discovery (``nnunet_prism.training.registry``). (The base
trainer's module makes a user error raised while nnU-Net builds one of them one line.)"""
from nnunet_prism.training.registry import trainer_classes as _trainer_classes

globals().update({_cls.__name__: _cls for _cls in _trainer_classes()})
__all__ = [_cls.__name__ for _cls in _trainer_classes()]
