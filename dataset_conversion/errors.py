"""The one exception type of the converters: a problem the user can fix in the input."""


class ConversionError(ValueError):
    """Bad input for a dataset conversion. The message is one sentence naming the case and file."""
