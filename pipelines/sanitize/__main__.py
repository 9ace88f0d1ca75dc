"""`python -m pipelines.sanitize`: the bulk job (pipelines/sanitize/cli.py has the flags).

Also the flex template's Python file (infra/Dockerfile, FLEX_TEMPLATE_PYTHON_PY_FILE), run as a
script with the project on PYTHONPATH.
"""

import os
import sys

from pipelines.sanitize.cli import main

if __name__ == "__main__":
    try:
        exit_code = main()
    except SystemExit as error:
        if isinstance(error.code, str):
            print(error.code, file=sys.stderr)
        exit_code = error.code if isinstance(error.code, int) else 1
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is written and closed by now. Skipping the interpreter's teardown avoids an
    # intermittent std::terminate ("terminate called without an active exception", SIGABRT) from
    # native thread pools (TensorFlow's, started in Beam's worker threads when the model runs in
    # this process) being destroyed at exit, which turned a finished job into a failed command.
    os._exit(exit_code)
