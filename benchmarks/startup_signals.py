"""The benchmark scripts' handler for a signal that arrives while torch loads (seconds), installed before `import torch`:
Ctrl-C, SIGTERM or SIGHUP then prints one line and exits with 128 + the signal number, as grad_cam_experiment.py does
(that file keeps its own copy of these lines so that it stays one self-contained, pasteable file)."""

import os
import signal
import sys


def stop_while_starting() -> None:
    for number in (signal.SIGINT, signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])):
        signal.signal(number, lambda signum, _: (
            print("interrupted while starting; nothing was written", file=sys.stderr), os._exit(128 + signum)))
