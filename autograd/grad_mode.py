"""Grad mode: whether ops record the backward graph (``no_grad``, ``enable_grad``, ``set_grad_enabled``,
``inference_mode``), each usable as a context manager and as a decorator."""
import functools
import threading

__all__ = ["no_grad", "enable_grad", "set_grad_enabled", "inference_mode", "is_grad_enabled",
           "is_inference_mode_enabled"]


class _State(threading.local):
    enabled = True
    inference = False


STATE = _State()


def is_grad_enabled():
    return STATE.enabled


def is_inference_mode_enabled():
    return STATE.inference


class _Mode:
    _value = True

    def __enter__(self):
        self._prev = STATE.enabled
        STATE.enabled = self._value

    def __exit__(self, *exc):
        STATE.enabled = self._prev
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.clone():
                return fn(*args, **kwargs)
        return wrapper

    def clone(self):
        return type(self)()


class no_grad(_Mode):
    """Ops inside record no graph: outputs do not require grad."""
    _value = False


class enable_grad(_Mode):
    """Turn recording back on inside a ``no_grad`` region."""
    _value = True


class set_grad_enabled(_Mode):
    """``set_grad_enabled(mode)``: takes effect at once (like PyTorch) and also works as a context manager."""

    def __init__(self, mode):
        self._value = bool(mode)
        self._prev = STATE.enabled
        STATE.enabled = self._value

    def __enter__(self):
        pass

    def __exit__(self, *exc):
        STATE.enabled = self._prev
        return False

    def __call__(self, fn):
        STATE.enabled = self._prev        # as a decorator it changes nothing until the function runs
        return super().__call__(fn)

    def clone(self):
        return set_grad_enabled(self._value)


class inference_mode(_Mode):
    """Like ``no_grad`` (tritorch keeps no extra bookkeeping that inference mode could skip)."""

    def __init__(self, mode=True):
        self._value = not mode
        self._mode = mode

    def __enter__(self):
        self._prev = STATE.enabled
        self._prev_inf = STATE.inference
        STATE.enabled = self._value and STATE.enabled
        STATE.inference = self._mode

    def __exit__(self, *exc):
        STATE.enabled = self._prev
        STATE.inference = self._prev_inf
        return False

    def clone(self):
        return inference_mode(self._mode)
