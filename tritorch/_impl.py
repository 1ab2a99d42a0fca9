"""The op layer's entry points that the core itself calls: ``Tensor.to`` copies, the factories fill, autograd sums a
broadcast gradient and scatters into a view's base.

The core (``_tensor.py``, ``_creation.py``, ``autograd/``) sits below kernels/ and imports none of it: each kernels/
module that implements one of these names hands it over when it is imported, with ``@provide`` (as ``register``
publishes the public ops), and the core calls ``_impl.NAME(...)``. ``tritorch/__init__.py`` imports every kernels/
module before any op can run.

    to(t, device, dtype, copy)          kernels/copy.py        Tensor.to
    scalar_value(value, dtype)          kernels/creation.py    a fill value as the dtype holds it
    fill(t, value)                      kernels/creation.py    full, ones, zeros
    arange_into / linspace_into / eye_into                     arange, linspace, eye
    fill_random(t, kind, a, b, gen), check_int_range, UNIFORM, NORMAL, RANDINT      kernels/random.py
    sum_to(g, shape)                    kernels/_common.py     a broadcast gradient summed back to its input's shape
    as_strided, view_scatter            kernels/views.py       the gradient of an in-place write through a view
"""


def provide(fn):
    """Hand ``fn`` to the core under its own name (a decorator; returns ``fn``)."""
    globals()[fn.__name__] = fn
    return fn
