"""Parse a MATLAB v5 label file in a short-lived child process, where a crash of the parser cannot hurt.

scipy's `loadmat` can die with SIGSEGV or SIGBUS on a damaged file; run here, that kills only this process and
the reader reports the file as damaged. Run as a script (``python -I _matchild.py FILE numbers:NAME
strings:NAME ...``) it imports nothing of mmpiqa, parses, converts each asked-for variable to plain numbers or
strings and prints one JSON object on stdout: ``{"values": {...}}`` or ``{"error": "..."}``. The conversion is
also importable (`convert`) so it can be tested without a child.
"""

from __future__ import annotations

import json
import sys

import numpy as np

MEMORY_LIMIT = 4 * 2**30  # a damaged size field must not make the child take the machine's memory


def strings(arr: np.ndarray) -> list[str]:
    """A MATLAB cell array of strings (or a padded char matrix) as a flat list of str."""
    arr = np.asarray(arr)
    if arr.dtype.kind in "US":  # a char matrix, one padded row per name
        return [str(s).strip() for s in arr.reshape(-1)]
    if arr.dtype == object:
        out = []
        for k, cell in enumerate(arr.reshape(-1)):
            c = np.asarray(cell)
            if c.size == 0:
                out.append("")
            elif c.dtype.kind in "US":
                out.append(str(c.reshape(-1)[0]).strip())
            else:
                raise ValueError(f"entry {k + 1} is not a string ({c.dtype})")
        return out
    raise ValueError(f"expected a cell array of file names, found {arr.dtype} {arr.shape}")


def numbers(arr: np.ndarray) -> list[float]:
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"expected numbers, found {arr.dtype} {arr.shape}")
    return arr.reshape(-1).astype(np.float64).tolist()


def convert(mat: dict, wanted: list[tuple[str, str]]) -> dict:
    """{"values": {name: list}} for `wanted` (kind, name) pairs, or {"error": message} naming the variable."""
    missing = [name for _, name in wanted if name not in mat]
    if missing:
        found = sorted(k for k in mat if not k.startswith("__"))
        return {"error": f"variable(s) {missing} missing; the file holds {found}"}
    values = {}
    for kind, name in wanted:
        try:
            values[name] = (numbers if kind == "numbers" else strings)(mat[name])
        except ValueError as error:
            return {"error": f"{name}: {error}"}
    return {"values": values}


def main(argv: list[str]) -> int:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    except (ImportError, ValueError, OSError):  # not on this platform, or a lower hard limit already
        pass
    path, wanted = argv[0], [tuple(a.split(":", 1)) for a in argv[1:]]
    try:
        from scipy.io import loadmat

        mat = loadmat(path, squeeze_me=False, chars_as_strings=True)
        result = convert(mat, wanted)
    except MemoryError:
        result = {"error": "a size field asks for more memory than a label file can need"}
    except Exception as error:  # scipy raises ValueError/TypeError/MatReadError/... on damage
        result = {"error": f"{type(error).__name__}: {error}"}
    sys.stdout.write(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
