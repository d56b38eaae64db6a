"""Refuse, at once, work that would start worker processes from a script's import time.

Worker processes started with spawn or forkserver re-import the parent's script (as `__mp_main__`)
before they run anything. A script that calls such work at its top level, without
`if __name__ == "__main__":`, would have every worker call it again: it then waits forever on a
lock its parent holds (the synthetic cache) or breaks the pool and re-runs the parent's work from
inside the workers (ingestion: `BrokenProcessPool` after each worker has re-prepared the output
directory). `refuse_unguarded_main` turns that into a MainGuardError naming the script, the line
and the fix, before anything is written.
"""

from __future__ import annotations

import sys


class MainGuardError(RuntimeError):
    """Worker processes were asked for at a script's import time; the message says to add the guard."""


def message(what: str, script: str, where: str, consequence: str, alternative: str = "") -> str:
    tail = f" ({alternative})" if alternative else ""
    return (f"{what} was called at the top level of {script} ({where}). {consequence} Put the "
            f"script's code under `if __name__ == \"__main__\":`{tail}")


def _module_frame(module_name: str):
    """The frame running the top level of the module called `module_name`, if one is on the stack."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == module_name:
            return frame
        frame = frame.f_back
    return None


def refuse_unguarded_main(what: str, consequence: str, alternative: str = "") -> None:
    """MainGuardError when worker processes would re-run this very call. `what`: the call
    ("run_ingest(workers=4)"); `consequence`: what its workers would do; `alternative`: another
    way out, if any (all for the message).

    In a worker: called while `__mp_main__` (the parent's script, re-imported during the worker's
    bootstrap, before multiprocessing.parent_process() is set) runs its top level. In the parent:
    called from the top level of a `__main__` that spawn would re-import (a script path or a plain
    module; not -c, a REPL or a package's __main__.py, which spawn skips), outside its
    `if __name__ == "__main__":` block."""
    frame = _module_frame("__mp_main__")
    if frame is not None:
        raise MainGuardError(message(what, frame.f_code.co_filename, "re-imported by a worker "
                                     "process as __mp_main__", consequence, alternative))
    frame = _module_frame("__main__")
    if frame is None or inside_main_guard(frame.f_code.co_filename, frame.f_lineno) is not False:
        return
    from multiprocessing import spawn

    data = spawn.get_preparation_data("probe")
    name = data.get("init_main_from_name")
    if "init_main_from_path" in data or (name and name != "__main__" and not name.endswith(".__main__")):
        raise MainGuardError(message(what, frame.f_code.co_filename,
                                     f"line {frame.f_lineno}, at import time", consequence, alternative))


def inside_main_guard(path: str, lineno: int) -> bool | None:
    """Whether line `lineno` of the script lies inside an `if __name__ == "__main__":` block
    (a worker's re-import skips it); None when the source cannot be read (then nothing is refused)."""
    import ast

    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return None

    def is_main_test(test) -> bool:
        if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
            return False
        sides = [test.left, test.comparators[0]]
        return (any(isinstance(x, ast.Name) and x.id == "__name__" for x in sides)
                and any(isinstance(x, ast.Constant) and x.value == "__main__" for x in sides))

    return any(isinstance(node, ast.If) and is_main_test(node.test)
               and any(n.lineno <= lineno <= (n.end_lineno or n.lineno) for n in node.body)
               for node in ast.walk(tree))
