"""The study's own error type."""


class StudyError(RuntimeError):
    """A study cannot start or go on: a prior file or data set is missing, sizes do not match,
    or a pack does not fit the device."""
