"""Real programs under the shim (issue 7): the suite lives in tests/apps/.

This module only collects it for tests/run.py, which discovers tests/test_*.py: every
function test_* of tests/apps/app_*.py becomes a test named test_apps.test_*, in file
order (run.py sorts by the line a function starts on; the files are chained so that
each file's tests stay together)."""
import importlib.util
import os
import sys
import types

_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps")
sys.path.insert(0, _DIR)


def _load():
    for name in sorted(os.listdir(_DIR)):
        if not (name.startswith("app_") and name.endswith(".py")):
            continue
        spec = importlib.util.spec_from_file_location(name[:-3], os.path.join(_DIR, name))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        yield mod


class _Test:
    """The test function, with the place in the suite that run.py sorts by."""

    def __init__(self, fn, order):
        self.fn, self.__doc__, self.__name__ = fn, fn.__doc__, fn.__name__
        self.__code__ = types.SimpleNamespace(co_firstlineno=order)
        if hasattr(fn, "timeout"):
            self.timeout = fn.timeout

    def __call__(self, ctx):
        return self.fn(ctx)


def _export():
    order = 0
    for mod in _load():
        fns = [(getattr(mod, a).__code__.co_firstlineno, a) for a in dir(mod)
               if a.startswith("test_") and callable(getattr(mod, a))]
        for _, attr in sorted(fns):
            fn = getattr(mod, attr)
            assert attr not in globals(), f"two app tests named {attr}"

            order += 1
            globals()[attr] = _Test(fn, order)


_export()
