"""Training: the base trainer and its step hooks (``base``), the trainers themselves
(``trainers/``, found by ``registry``) and the machinery they share: hyperparameters, modality
masks, seeding, progress curves, pseudo Dice, DDP reductions and GMD's gradient code (``gmd/``).
nnU-Net imports the trainers through ``nnunet_prism/ext_trainer_shim``."""
