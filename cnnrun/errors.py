"""The two kinds of failure the CLI distinguishes.

UserError: bad input (config, file, argument, unreadable checkpoint) → exit 2.
RunFailed: the input was fine but the run went wrong (e.g. the loss became NaN) → exit 1.
Interrupted: Ctrl-C stopped a run after saving what it had → exit 130.
Both carry a one-paragraph message that says where the problem is and what to do.
"""


class CnnrunError(Exception):
    exit_code = 2


class UserError(CnnrunError):
    exit_code = 2


class ConfigValueError(UserError):
    """A config value that validated but does not fit what it meets later (val_split larger
    than the data found): ``key`` is its path, so the caller who knows the file can point at
    the key's line (config.loader.locate)."""

    def __init__(self, key: tuple, message: str):
        super().__init__(message)
        self.key = key


class RunFailed(CnnrunError):
    exit_code = 1


class Interrupted(CnnrunError):
    """Ctrl-C (130) or SIGTERM (143) during training; a checkpoint was saved first."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code
