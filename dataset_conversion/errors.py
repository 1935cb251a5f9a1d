"""The converters' exception type, a problem the user can fix in the input, and the file check
that raises it."""
from nnunet_prism.errors import NnunetPrismError
from nnunet_prism.image_io import ImageFileError, check_nifti_complete


class ConversionError(NnunetPrismError, ValueError):
    """Bad input for a dataset conversion. The message is one sentence naming the case and file."""


def check_complete(path, what: str = "") -> None:
    """``nnunet_prism.image_io.check_nifti_complete`` (a complete file without NaN or infinite
    voxels) with its error as a ConversionError whose message starts with ``what`` (e.g. "case 'X': ")."""
    try:
        check_nifti_complete(path)
    except ImageFileError as e:
        raise ConversionError(f"{what}{e}") from None
