"""Start-up hook of ``tritriage trace``: install the launch recorder, then
run the ``sitecustomize`` this one shadows, if there is one."""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))

try:
    import tritriage_trace_hook

    tritriage_trace_hook.install()
except Exception as _e:  # noqa: BLE001 - the command must run untraced rather than not at all
    sys.stderr.write(f"tritriage trace: warning: launch recorder not installed: {type(_e).__name__}: {_e}\n")


def _chain():
    # site imports one module named sitecustomize: this one. Import the next
    # one on the path the way site would have, with this directory hidden.
    me = sys.modules.pop("sitecustomize", None)
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
    try:
        import sitecustomize  # noqa: F401
    except ImportError as e:
        if getattr(e, "name", None) != "sitecustomize":
            sys.stderr.write(f"Error in sitecustomize; set PYTHONVERBOSE for traceback:\n{type(e).__name__}: {e}\n")
    except Exception as e:  # noqa: BLE001 - what site itself would print
        sys.stderr.write(f"Error in sitecustomize; set PYTHONVERBOSE for traceback:\n{type(e).__name__}: {e}\n")
    finally:
        sys.path[:] = saved
        if "sitecustomize" not in sys.modules and me is not None:
            sys.modules["sitecustomize"] = me


_chain()
