"""The trainers, one module per method (``nnUNetTrainer<Method>.py``). A new module here with an
``nnUNetTrainer*`` subclass of ``nnUNetTrainerPrismBase`` is found by discovery
(``nnunet_prism.training.registry``) without editing a list; the machinery they share lives one
level up in ``nnunet_prism.training``."""
