"""Which nnU-Net dataset a user means: one resolution of ``-d ID`` (or ``DatasetXXX_Name``) for
every command, with a one-line error instead of nnU-Net's multi-line RuntimeError."""
from __future__ import annotations

from nnunet_prism.errors import MissingFileError


def dataset_name(dataset) -> str:
    """``DatasetXXX_Name`` for a dataset id or name, found the way nnU-Net's own commands find it
    (nnUNet_raw, nnUNet_preprocessed, nnUNet_results); FileNotFoundError (one line) otherwise."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    try:
        return maybe_convert_to_dataset_name(dataset)
    except (RuntimeError, ValueError) as e:  # nnU-Net's messages span several lines
        why = ("is neither a dataset id nor a DatasetXXX_Name" if isinstance(e, ValueError) else
               "is the id of several datasets" if "More than one" in str(e) else "is the id of no dataset")
        raise MissingFileError(f"dataset '{dataset}' {why} in nnUNet_raw, nnUNet_preprocessed or nnUNet_results; "
                               f"give a dataset id or DatasetXXX_Name that exists") from None
