"""Library chatter goes to the campaign's log file, not over the progress bars.

pymatgen, e3nn, MACE and CHGNet print warnings (missing electronegativities, weights-only notices, tensor
warnings) and banners ("CHGNet v0.3.0 initialized ...") that a user cannot act on. :func:`route_library_output`
sends Python warnings of this process to ``<campaign_dir>/matloop.log`` (one line each) and
:func:`quiet_stdout` sends a block's stdout there too (model loading). The CLI names the file in
``MATLOOP_LOG_FILE``, so worker processes (started after it) route theirs to the same file.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

LOG_ENV = "MATLOOP_LOG_FILE"
_routed: set[str] = set()


def route_library_output(log_file: str | Path | None = None) -> Path | None:
    """Send Python warnings to ``log_file`` (default: ``MATLOOP_LOG_FILE``; nothing when neither is set).
    Idempotent per process and file; returns the file in use."""
    path = log_file or os.environ.get(LOG_ENV)
    if not path:
        return None
    path = Path(path)
    if str(path) not in _routed:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s pid %(process)d %(name)s: %(message)s"))
        logging.captureWarnings(True)
        warnings_log = logging.getLogger("py.warnings")
        warnings_log.handlers = [h for h in warnings_log.handlers if not isinstance(h, logging.FileHandler)]
        warnings_log.addHandler(handler)
        warnings_log.propagate = False  # not to the console handlers of the root logger
        _routed.clear()
        _routed.add(str(path))
    return path


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Inside the block, stdout goes to the routed log file (when there is one)."""
    path = route_library_output()
    if path is None:
        yield
        return
    with open(path, "a") as fh, contextlib.redirect_stdout(fh):
        yield
