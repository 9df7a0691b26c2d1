"""The study engine's one error type."""

__all__ = ["StudyError"]


class StudyError(RuntimeError):
    """A study cannot go on: a failed command, a missing prerequisite, or a results folder made with other settings."""
