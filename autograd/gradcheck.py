"""``gradcheck`` / ``gradgradcheck``: compare the analytical Jacobian (one backward pass per output element) with
central finite differences, PyTorch's signatures and tolerances.

Inputs should be float64 (the finite differences are taken in the inputs' dtype; float32 gives a warning, as in
PyTorch). Every tensor input with ``requires_grad=True`` is checked against every floating-point output.
"""
import warnings

import numpy as np

from tritorch import _creation
from tritorch._tensor import Tensor
from .engine import grad

__all__ = ["gradcheck", "gradgradcheck", "GradcheckError"]


class GradcheckError(RuntimeError):
    """A gradient check failed."""


def _as_tuple(x):
    return tuple(x) if isinstance(x, (list, tuple)) else (x,)


def _is_tensor(x):
    return isinstance(x, Tensor)


def _host(t):
    return np.asarray(t.detach()._to_host_array(), dtype=np.float64)


def _outputs(func, inputs):
    return tuple(o for o in _as_tuple(func(*inputs)))


def _diff_outputs(outs):
    return [o for o in outs if _is_tensor(o) and o.dtype.is_floating_point]


def _numerical_jacobians(func, inputs, idx, eps):
    """J[i][j]: d out_j / d input_{idx[i]} by central differences, as (in numel, out numel) arrays. Grad mode
    stays on and the perturbed inputs require grad: the function may itself differentiate (gradgradcheck)."""
    base = _diff_outputs(_outputs(func, inputs))
    jac = []
    for i in idx:
        x = inputs[i]
        arr = np.array(_host(x), dtype=x.dtype.np, order="C")
        flat = arr.reshape(-1)
        cols = [np.zeros((flat.size, o.numel())) for o in base]
        for k in range(flat.size):
            vals = []
            orig = flat[k]
            for step in (eps, -eps):
                flat[k] = orig + step
                args = list(inputs)
                args[i] = Tensor._wrap_numpy(arr.copy(), x.device, x.dtype).requires_grad_(True)
                vals.append([_host(o).reshape(-1) for o in _diff_outputs(_outputs(func, args))])
            flat[k] = orig
            for j in range(len(base)):
                cols[j][k] = (vals[0][j] - vals[1][j]) / (2 * eps)
        jac.append(cols)
    return jac


def _analytical_jacobians(func, inputs, idx):
    """J[i][j] by backward passes: one per output element, with a one-hot ``grad_outputs``."""
    outs = _diff_outputs(_outputs(func, inputs))
    diff_in = [inputs[i] for i in idx]
    jac = [[np.zeros((inputs[i].numel(), o.numel())) for o in outs] for i in idx]
    for j, o in enumerate(outs):
        if not o.requires_grad:
            continue
        for k in range(o.numel()):
            onehot = np.zeros(o.numel())
            onehot[k] = 1.0
            go = _creation.tensor(onehot.reshape(o._shape), dtype=o.dtype, device=o.device)
            gs = grad([o], diff_in, [go], retain_graph=True, allow_unused=True)
            for i, g in enumerate(gs):
                if g is None:
                    continue
                if g._shape != diff_in[i]._shape:
                    raise GradcheckError(f"Analytical gradient has incorrect size: got {list(g._shape)}, expected "
                                         f"{list(diff_in[i]._shape)}")
                if g.dtype is not diff_in[i].dtype:
                    raise GradcheckError(f"Gradient has dtype mismatch: got {g.dtype}, expected {diff_in[i].dtype}")
                jac[i][j][:, k] = _host(g).reshape(-1)
    return jac, outs


def _fail(msg, raise_exception):
    if raise_exception:
        raise GradcheckError(msg)
    return False


def gradcheck(func, inputs, *, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, nondet_tol=0.0,
              check_undefined_grad=True, check_grad_dtypes=False, check_batched_grad=False,
              check_batched_forward_grad=False, check_forward_ad=False, check_backward_ad=True, fast_mode=False,
              masked=None):
    """Check the gradients of ``func(*inputs)`` w.r.t. the inputs that require grad against finite differences:
    ``|analytical - numerical| <= atol + rtol * |numerical|`` elementwise. Returns True, or raises
    ``GradcheckError`` (``raise_exception=False``: returns False)."""
    if check_forward_ad or check_batched_grad or check_batched_forward_grad:
        raise NotImplementedError("gradcheck: forward-mode AD and batched gradients are not supported by tritorch")
    inputs = _as_tuple(inputs)
    idx = [i for i, x in enumerate(inputs) if _is_tensor(x) and x.requires_grad]
    if not idx:
        raise ValueError("gradcheck expects at least one input tensor to require gradient, but none of the them "
                         "have requires_grad=True.")
    for i in idx:
        if inputs[i].dtype.name != "float64":
            warnings.warn(f"Input #{i} requires gradient and is not a double precision floating point. This check "
                          "will likely fail if all the inputs are not of double precision floating point. ",
                          UserWarning, stacklevel=2)
    if not check_backward_ad:
        return True
    analytical, outs = _analytical_jacobians(func, inputs, idx)
    if not outs:
        return _fail("gradcheck: the function has no differentiable (floating point) output", raise_exception)
    numerical = _numerical_jacobians(func, inputs, idx, eps)
    for a_i, (i, row_a, row_n) in enumerate(zip(idx, analytical, numerical)):
        for j, (a, n) in enumerate(zip(row_a, row_n)):
            if not np.allclose(a, n, rtol=rtol, atol=atol, equal_nan=False):
                return _fail(f"Jacobian mismatch for output {j} with respect to input {i},\n"
                             f"numerical:{np.array2string(n, precision=6)}\n"
                             f"analytical:{np.array2string(a, precision=6)}\n", raise_exception)
    # reentrant: a second backward gives the same numbers
    again, _ = _analytical_jacobians(func, inputs, idx)
    for i, (r1, r2) in zip(idx, zip(analytical, again)):
        for j, (a1, a2) in enumerate(zip(r1, r2)):
            if np.abs(a1 - a2).max(initial=0.0) > nondet_tol:
                return _fail(f"Backward is not reentrant, i.e., running backward with same input and grad_output "
                             f"multiple times gives different values, although analytical gradient matches "
                             f"numerical gradient.The tolerance for nondeterminism was {nondet_tol}.",
                             raise_exception)
    return True


def gradgradcheck(func, inputs, grad_outputs=None, *, eps=1e-6, atol=1e-5, rtol=1e-3,
                  gen_non_contig_grad_outputs=False, raise_exception=True, nondet_tol=0.0,
                  check_undefined_grad=True, check_grad_dtypes=False, check_batched_grad=False,
                  check_fwd_over_rev=False, check_rev_over_rev=True, fast_mode=False, masked=False):
    """Check second derivatives: ``gradcheck`` of the function that maps (inputs, grad_outputs) to the gradients
    of ``func`` computed with ``create_graph=True``. Random float64 ``grad_outputs`` are made when not given."""
    inputs = _as_tuple(inputs)
    if grad_outputs is None:
        outs = _diff_outputs(_outputs(func, inputs))
        rng = np.random.default_rng(0)
        grad_outputs = tuple(_creation.tensor(rng.standard_normal(o._shape), dtype=o.dtype, device=o.device,
                                              requires_grad=True) for o in outs)
    else:
        grad_outputs = _as_tuple(grad_outputs)
    n_in = len(inputs)
    idx = [i for i, x in enumerate(inputs) if _is_tensor(x) and x.requires_grad]

    def new_func(*args):
        ins, gos = args[:n_in], args[n_in:]
        outs = [o for o in _diff_outputs(_outputs(func, ins)) if o.requires_grad]
        gos = list(gos)[:len(outs)]
        diff = [ins[i] for i in idx]
        gs = grad(outs, diff, gos, create_graph=True, allow_unused=True)
        return tuple(g for g in gs if g is not None)

    return gradcheck(new_func, inputs + tuple(grad_outputs), eps=eps, atol=atol, rtol=rtol,
                     raise_exception=raise_exception, nondet_tol=nondet_tol)
