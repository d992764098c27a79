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


if __name__ == "__main__":  # --help printed nothing and exited 0: this is a module, not a script
    sys.exit(f"error: {os.path.basename(__file__)} is imported by the benchmark scripts, not run; see benchmarks/bench.py "
             "--help")
