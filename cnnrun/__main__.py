"""``python -m cnnrun`` and the ``cnnrun`` command: SIGTERM and Ctrl-C are handled from the
first instruction, before the CLI's imports, so a signal at any moment ends in one line and
exit 143 or 130 (during training the trainer's own handler saves ``last`` first)."""

import signal
import sys

STOPPED = "error: stopped by {} before training began or after it ended; nothing was half-written."


class Terminated(SystemExit):
    """SIGTERM outside training (the trainer's own handler saves ``last`` first)."""


def _terminated(signum, frame):
    raise Terminated(143)  # unwinds through every finally: workers and shared blocks close


def main() -> None:
    try:
        signal.signal(signal.SIGTERM, _terminated)
    except ValueError:  # not the main thread
        pass
    try:
        from .cli.app import app
        app()
    except KeyboardInterrupt:
        print(STOPPED.format("Ctrl-C"), file=sys.stderr)
        sys.exit(130)
    except Terminated:  # a run the trainer stopped has said so itself, and exits 143 as well
        print(STOPPED.format("SIGTERM"), file=sys.stderr)
        raise


if __name__ == "__main__":
    main()
