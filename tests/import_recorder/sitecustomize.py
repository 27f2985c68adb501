"""Records which top-level packages a workflow job's own code imports (tests/env_imports.py).

Put this folder on ``PYTHONPATH`` and set ``SCDSEC_IMPORT_RECORD`` to a folder: every Python
process that runs a Snakemake ``script:`` (``.snakemake/scripts/tmp*.<name>.py``) then appends
to ``<record>/<name>.txt`` the top-level name of each module imported by a file of the script
itself or of the ``scdsec`` package (not by the libraries they use: their requirements come from
package metadata). Other processes are left alone.
"""

from __future__ import annotations

import atexit
import builtins
import os
import sys
from pathlib import Path

_RECORD = os.environ.get("SCDSEC_IMPORT_RECORD")
_SCRIPT = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""


class _Recorder:
    """Notes the modules that the own files import: every ``import`` statement that succeeds
    (through ``builtins.__import__``, also when the module is already loaded; an optional
    import that fails, such as scvi-tools where it is not installed, is not noted)."""

    def __init__(self, own_files: tuple[str, ...]):
        self.own_files = own_files
        self.names: set[str] = set()
        self._import = builtins.__import__

    def _note(self, name: str, depth: int) -> None:
        frame = sys._getframe(depth)
        while frame is not None and frame.f_code.co_filename.startswith("<frozen"):
            frame = frame.f_back
        if frame is not None and frame.f_code.co_filename.startswith(self.own_files):
            self.names.add(name.split(".", 1)[0])

    def __import__(self, name, globals=None, locals=None, fromlist=(), level=0):
        module = self._import(name, globals, locals, fromlist, level)
        if level == 0:
            self._note(name, 2)
        return module

    def write(self):
        record = Path(_RECORD) / (_SCRIPT.split(".", 1)[1].removesuffix(".py") + ".txt")
        with open(record, "a") as out:
            out.writelines(f"{name}\n" for name in sorted(self.names))


if _RECORD and "/.snakemake/scripts/" in os.path.abspath(sys.argv[0] if sys.argv else ""):
    from importlib.util import find_spec  # finds the package without importing it

    _package = os.path.dirname(find_spec("scdsec").origin)
    _recorder = _Recorder((os.path.abspath(sys.argv[0]), _package + os.sep))
    builtins.__import__ = _recorder.__import__
    atexit.register(_recorder.write)
