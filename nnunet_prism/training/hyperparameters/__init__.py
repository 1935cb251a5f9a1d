"""One hyperparameter schema for every trainer of the package, split by job:

* ``schema``      ``Hyperparameter`` (type, range, default, meaning), its checks and the merge of
                  a trainer's schema along its class hierarchy (``HYPERPARAMETERS``, ``DEFAULT_OVERRIDES``);
* ``sources``     the user's values: ``nnUNet_prism_hparams`` (JSON file or inline) and ``--hp``;
* ``resolution``  defaults, top-level values, the trainer's section and presets -> the values in force;
* ``record``      ``<fold>/hyperparameters.json`` with the history of the fold's runs, the resume check;
* ``mixin``       ``HyperparameterMixin``: the values as trainer attributes, settled after a subclass's
                  ``__init__``, recorded when training starts;
* ``table``       the generated table of ``docs/hyperparameters.md``
                  (``python -m nnunet_prism.training.hyperparameters docs/hyperparameters.md``).

Every value is checked before nnU-Net starts; a bad one is a ``HyperparameterError`` whose
message is one line naming the value. Unknown names and sections naming no trainer are errors.
The names below are the package's interface (``table`` is imported on its own: it needs the trainers).
"""
from nnunet_prism.training.hyperparameters.mixin import HyperparameterMixin
from nnunet_prism.training.hyperparameters.record import (ALLOW_CHANGES_ENV_VAR, FILENAME, changed_values,
                                                          check_resume, read_record, write_record)
from nnunet_prism.training.hyperparameters.resolution import (PRESET, collect_presets, loaded_trainer_names,
                                                              preset_values, resolve, trainer_sections, user_values)
from nnunet_prism.training.hyperparameters.schema import (Hyperparameter, HyperparameterError, collect_defaults,
                                                          collect_schema)
from nnunet_prism.training.hyperparameters.sources import ENV_VAR, load_overrides, parse_assignments

__all__ = ["ALLOW_CHANGES_ENV_VAR", "ENV_VAR", "FILENAME", "PRESET", "Hyperparameter", "HyperparameterError",
           "HyperparameterMixin", "changed_values", "check_resume", "collect_defaults", "collect_presets",
           "collect_schema", "load_overrides", "loaded_trainer_names", "parse_assignments", "preset_values",
           "read_record", "resolve", "trainer_sections", "user_values", "write_record"]
