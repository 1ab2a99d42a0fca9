"""Grad mode: whether ops record the backward graph (``no_grad``, ``enable_grad``, ``set_grad_enabled``,
``inference_mode``), each usable as a context manager and as a decorator (``@no_grad()``, or ``@no_grad`` bare
for ``no_grad``/``enable_grad``/``inference_mode``), generator functions included. The state is per thread."""
import functools
import inspect
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
    """Base of the grad-mode context managers: ``__enter__`` switches, ``__exit__`` restores; calling an instance
    on a function decorates it (each call, and each resumption of a generator, runs in the mode)."""

    _value = True

    def __new__(cls, *args, **kwargs):
        if cls is not set_grad_enabled and len(args) == 1 and not kwargs and callable(args[0]) \
                and not isinstance(args[0], bool):
            return cls()(args[0])          # used bare: @no_grad
        return super().__new__(cls)

    def __enter__(self):
        self._prev = STATE.enabled
        STATE.enabled = self._value

    def __exit__(self, *exc):
        STATE.enabled = self._prev
        return False

    def clone(self):
        return type(self)()

    def __call__(self, fn):
        if inspect.isclass(fn):
            raise RuntimeError(f"{type(self).__name__} cannot decorate a class")
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def gen_wrapper(*args, **kwargs):
                gen = fn(*args, **kwargs)
                try:
                    with self.clone():
                        value = next(gen)
                    while True:
                        try:
                            sent = yield value
                        except GeneratorExit:
                            with self.clone():
                                gen.close()
                            raise
                        except BaseException as e:
                            with self.clone():
                                value = gen.throw(e)
                        else:
                            with self.clone():
                                value = gen.send(sent)
                except StopIteration as e:
                    return e.value
            return gen_wrapper

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.clone():
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_Mode):
    """Ops inside record no graph: their outputs do not require grad."""
    _value = False


class enable_grad(_Mode):
    """Turn recording back on inside a ``no_grad`` region (not inside ``inference_mode``)."""
    _value = True

    def __enter__(self):
        self._prev = STATE.enabled
        STATE.enabled = not STATE.inference


class set_grad_enabled(_Mode):
    """``set_grad_enabled(mode)``: takes effect at once (like PyTorch), and restores the previous mode when used
    as a context manager; as a decorator it changes nothing until the function runs."""

    def __init__(self, mode):
        if not isinstance(mode, bool):
            raise TypeError(f"set_grad_enabled(): argument 'mode' must be bool, not {type(mode).__name__}")
        self._value = mode
        self._prev = STATE.enabled
        STATE.enabled = mode

    def __enter__(self):
        pass

    def __call__(self, fn):
        STATE.enabled = self._prev
        return super().__call__(fn)

    def clone(self):
        return _SetGrad(self._value)


class _SetGrad(_Mode):
    def __init__(self, value):
        self._value = value


class inference_mode(_Mode):
    """``no_grad`` that also marks the region as inference (``is_inference_mode_enabled()``); ``enable_grad``
    inside it does not turn recording back on. ``inference_mode(False)`` changes nothing."""

    def __init__(self, mode=True):
        self._mode = bool(mode)

    def __enter__(self):
        self._prev = STATE.enabled
        self._prev_inf = STATE.inference
        if self._mode:
            STATE.enabled = False
            STATE.inference = True

    def __exit__(self, *exc):
        STATE.enabled = self._prev
        STATE.inference = self._prev_inf
        return False

    def clone(self):
        return inference_mode(self._mode)
