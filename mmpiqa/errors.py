"""The one family of errors a user can fix: bad config, data, weights, checkpoint or output folder.

Every such error derives from `InputError`; its message names the file (and line, row or field) and says what to
do. The `mmpiqa` command prints it as one ``error: ...`` line and exits 2 (``--debug`` or ``MMPIQA_DEBUG=1`` shows
the traceback); anything else is a bug and keeps its traceback. The concrete types also derive from the builtin a
caller would expect (`ValueError`, `OSError`, ...), so ``except ValueError`` keeps working.

    InputError
      ConfigError          mmpiqa.config       a config field, --set or config file
      DatasetFormatError   mmpiqa.data.readers a label file or dataset layout
      ImageReadError       mmpiqa.data.images  an image file
      CheckpointError      mmpiqa.model.checkpoint   a prompt checkpoint or run folder
        CheckpointMismatch                     learned on another backbone or config
      WeightsUnavailable, UnsupportedBackbone  mmpiqa.model.backbone
      WriteError           mmpiqa.files           an output file could not be written (disk full, read-only, ...)
      TrainingDiverged     mmpiqa.train.trainer   the loss became non-finite (lower the learning rate)
      MissingFileError     here                a file or folder the user named does not exist
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class InputError(Exception):
    """Something the user gave (or the disk holds) is wrong; the message names it and the fix."""


class MissingFileError(InputError, FileNotFoundError):
    """A file or folder the user named (weights, run folder, checkpoint) is not there."""


def not_a_file(path: str | os.PathLike) -> str | None:
    """Why `path` cannot be read as a regular file ('does not exist', 'is a FIFO', ...), or None when it can.

    Checked before opening, so a named pipe never blocks a reader and is never reported as missing."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        return "is a broken symbolic link" if p.is_symlink() else "does not exist"
    except OSError as error:
        return f"cannot be examined ({error.strerror or error})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if stat.S_ISFIFO(mode):
        return "is a FIFO (named pipe), not a regular file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file"
    return "is a device, not a regular file"
