"""Errors a user can cause and fix: each names the file or setting and the problem.

The command lines print such an error as one line and exit with status 2; anything
else that goes wrong is a bug in biomodels and keeps its traceback.
"""


class BiomodelsError(Exception):
    """Base class of every user-facing error."""


class InputError(BiomodelsError):
    """A file the user gave is missing, unreadable or inconsistent."""

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):
        # made again from its path and problem when unpickled (an error raised in a
        # cluster's worker travels to the driver pickled)
        return type(self), (self.path, self.problem)


class CheckpointError(InputError):
    """A checkpoint that cannot be read or does not fit the model."""


class ConfigError(BiomodelsError):
    """A task name, flag value or configuration override is wrong."""


class ServingError(BiomodelsError):
    """A model server refused a request, answered with an error, or could not be reached."""
