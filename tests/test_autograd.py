"""The autograd engine: graph recording, backward/grad semantics, grad modes, hooks, custom Functions, in-place
safety, higher-order gradients, memory behaviour, gradcheck and anomaly detection. Mostly on cpu (the engine is
device-agnostic); a few tests run on both devices."""
import gc
import re
import time
import threading
import warnings
import weakref

import numpy as np
import pytest

import tritorch as torch
from tritorch.autograd import Function, gradcheck, gradgradcheck, GradcheckError, once_differentiable
from tritorch.autograd.function import FREED_MESSAGE

from helpers import assert_close

F64 = torch.float64


def t64(values, requires_grad=True, device="cpu"):
    return torch.tensor(values, dtype=F64, device=device, requires_grad=requires_grad)


# ==================================================================================================================
# Leaves, grad_fn, accumulation
# ==================================================================================================================

def test_requires_grad_flags_and_leaves():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    c = torch.tensor([3.0, 4.0])
    assert x.requires_grad and x.is_leaf and x.grad_fn is None and x.grad is None
    assert not c.requires_grad and c.is_leaf
    y = x * c
    assert y.requires_grad and not y.is_leaf and y.grad_fn is not None
    assert (c * 2).requires_grad is False and (c * 2).is_leaf
    assert y.grad_fn.next_functions[0][0].name() == "AccumulateGrad"
    assert y.grad_fn.next_functions[0][0].variable is x
    assert y.grad_fn.next_functions[1] is None or y.grad_fn.next_functions[1][0] is None
    c.requires_grad_()
    assert c.requires_grad
    c.requires_grad = False
    assert not c.requires_grad
    with pytest.raises(RuntimeError, match="you can only change requires_grad flags of leaf variables"):
        y.requires_grad_(False)
    with pytest.raises(RuntimeError, match="only Tensors of floating point and complex dtype can require gradients"):
        torch.tensor([1, 2]).requires_grad_()
    with pytest.raises(RuntimeError, match="only Tensors of floating point"):
        torch.tensor([1, 2], requires_grad=True)


def test_grad_accumulates_across_backward_calls_in_place():
    x = t64([1.0, 2.0, 3.0])
    (x * x).sum().backward()
    g = x.grad
    assert_close(x.grad, [2.0, 4.0, 6.0])
    (x * 3).sum().backward()
    assert_close(x.grad, [5.0, 7.0, 9.0])
    assert x.grad is g                      # accumulated in place, like PyTorch's AccumulateGrad
    x.grad = None
    x.sum().backward()
    assert_close(x.grad, [1.0, 1.0, 1.0])


def test_same_tensor_used_twice_and_diamond():
    x = t64([0.5, -1.5])
    a = x.exp()
    y = (a * x + a.sin() + x).sum()       # x reaches y through three paths, a through two
    y.backward()
    xv = np.array([0.5, -1.5])
    expect = np.exp(xv) * xv + np.exp(xv) + np.cos(np.exp(xv)) * np.exp(xv) + 1
    assert_close(x.grad, expect)


def test_leaf_grad_is_fresh_contiguous_and_unaliased():
    x = t64([[1.0, 2.0, 3.0]])
    x.sum().backward()                      # SumBackward returns an expanded (stride-0) view
    assert x.grad.is_contiguous() and x.grad._base is None
    a, b = t64([1.0, 2.0]), t64([3.0, 4.0])
    (a + b).sum().backward()                # AddBackward passes the same gradient to both leaves
    assert a.grad is not b.grad and a.grad._storage is not b.grad._storage
    g = t64([1.0, 1.0], requires_grad=False)
    z = t64([5.0, 6.0])
    (z + 1).backward(g)
    assert z.grad is not g and z.grad._storage is not g._storage
    z.grad.zero_() if hasattr(z.grad, "zero_") else None
    assert g.tolist() == [1.0, 1.0]


def test_grad_setter_checks():
    x = torch.zeros(2, 3, requires_grad=True)
    x.grad = torch.ones(2, 3)
    with pytest.raises(RuntimeError, match="assigned grad has data of a different size"):
        x.grad = torch.ones(3, 2)
    with pytest.raises(RuntimeError, match="assigned grad has data of a different type"):
        x.grad = torch.ones(2, 3, dtype=F64)
    with pytest.raises(TypeError, match="assigned grad expected to be a Tensor or None"):
        x.grad = 3
    del x.grad
    assert x.grad is None


def test_non_leaf_grad_warns_and_retain_grad():
    x = t64([1.0, 2.0])
    y = x * 2
    z = (y * y).sum()
    with pytest.warns(UserWarning, match="is not a leaf Tensor is being accessed"):
        assert y.grad is None
    y.retain_grad()
    assert y.retains_grad
    x.retain_grad()                         # a no-op on leaves
    z.backward()
    assert_close(y.grad, [4.0, 8.0])
    assert_close(x.grad, [8.0, 16.0])
    with pytest.raises(RuntimeError, match="can't retain_grad on Tensor that has requires_grad=False"):
        torch.ones(2).retain_grad()


def test_detach_and_detach_():
    x = t64([1.0, 2.0])
    y = x * 2
    d = y.detach()
    assert not d.requires_grad and d.grad_fn is None and d._storage is y._storage
    assert d._version == y._version
    y.detach_()
    assert y.is_leaf and not y.requires_grad
    assert not x.data.requires_grad and x.data.data_ptr() == x.data_ptr()


# ==================================================================================================================
# backward / grad arguments
# ==================================================================================================================

def test_backward_errors():
    x = t64([1.0, 2.0])
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar outputs"):
        (x * 2).backward()
    with pytest.raises(RuntimeError, match=re.escape("Mismatch in shape: grad_output[0] has a shape of "
                                                     "tritorch.Size([3]) and output[0] has a shape of "
                                                     "tritorch.Size([2]).")):
        (x * 2).backward(torch.ones(3, dtype=F64))
    with pytest.raises(RuntimeError, match="element 0 of tensors does not require grad and does not have a "
                                           "grad_fn"):
        torch.ones(2).sum().backward()
    i = torch.tensor([1, 2])
    with pytest.raises(RuntimeError, match="does not require grad"):
        (i * 2).sum().backward()            # integer outputs never require grad
    (x * 2).backward(torch.tensor([1.0, 3.0], dtype=F64))
    assert_close(x.grad, [2.0, 6.0])


def test_second_backward_through_freed_graph_raises():
    x = t64([1.0, 2.0])
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match=re.escape(FREED_MESSAGE)):
        y.backward()
    assert "Trying to backward through the graph a second time" in FREED_MESSAGE


def test_retain_graph():
    x = t64([1.0, 2.0])
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    g1 = x.grad.tolist()
    y.backward()
    assert_close(x.grad, 2 * np.array(g1))
    # a graph with nothing saved can be walked twice, as in PyTorch
    z = t64([1.0])
    w = _Id.apply(z)
    w.backward()
    w.backward()
    assert z.grad.tolist() == [2.0]


def test_autograd_grad_leaves_dot_grad_alone():
    x = t64([1.0, 2.0, 3.0])
    w = t64([0.5, 0.5, 0.5])
    y = (x * x * w).sum()
    gx, gw = torch.autograd.grad(y, (x, w))
    assert_close(gx, [1.0, 2.0, 3.0])
    assert_close(gw, [1.0, 4.0, 9.0])
    assert x.grad is None and w.grad is None
    (g,) = torch.autograd.grad([(x * 2).sum()], [x])
    assert_close(g, [2.0, 2.0, 2.0])
    (g,) = torch.autograd.grad(x * 2, x, grad_outputs=torch.tensor([1.0, 0.0, -1.0], dtype=F64))
    assert_close(g, [2.0, 0.0, -2.0])


def test_grad_of_non_leaf_and_only_needed_part_runs():
    x = t64([1.0, 2.0])
    h = x * 3
    calls = []
    h.grad_fn.register_hook(lambda gi, go: calls.append("h"))
    y = (h * h).sum()
    (gh,) = torch.autograd.grad(y, h)
    assert_close(gh, [6.0, 12.0])
    assert calls == []                       # nodes below the requested input do not run
    assert x.grad is None


def test_allow_unused_and_materialize_grads():
    x, z = t64([1.0]), t64([2.0])
    y = (x * 2).sum()
    with pytest.raises(RuntimeError, match="One of the differentiated Tensors appears to not have been used in the "
                                           "graph. Set allow_unused=True if this is the desired behavior."):
        torch.autograd.grad(y, [x, z], retain_graph=True)
    gx, gz = torch.autograd.grad(y, [x, z], allow_unused=True, retain_graph=True)
    assert gz is None and gx.tolist() == [2.0]
    gx, gz = torch.autograd.grad(y, [x, z], materialize_grads=True)
    assert gz.tolist() == [0.0]
    with pytest.raises(ValueError, match="Expected allow_unused to be True or not passed"):
        torch.autograd.grad((x * 2).sum(), [x, z], allow_unused=False, materialize_grads=True)
    with pytest.raises(RuntimeError, match="One of the differentiated Tensors does not require grad"):
        torch.autograd.grad((x * 2).sum(), [torch.ones(1)])


def test_backward_inputs_argument():
    a, b = t64([1.0, 2.0]), t64([3.0, 4.0])
    h = a * b
    y = (h * a).sum()
    y.backward(inputs=[b], retain_graph=True)
    assert a.grad is None
    assert_close(b.grad, [1.0, 4.0])
    y.backward(inputs=a, retain_graph=True)
    assert_close(a.grad, [6.0, 16.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y.backward(inputs=[h])              # a non-leaf input gets its .grad
        assert_close(h.grad, [1.0, 2.0])
    with pytest.raises(RuntimeError, match="'inputs' argument to backward\\(\\) cannot be empty."):
        (a * 1).sum().backward(inputs=[])


def test_autograd_backward_function_multiple_roots():
    x = t64([1.0, 2.0])
    y1, y2 = x * 2, (x * x).sum()
    torch.autograd.backward([y1, y2], [torch.ones(2, dtype=F64), None])
    assert_close(x.grad, [4.0, 6.0])


def test_grad_dtype_follows_input():
    x = torch.tensor([1.0, 2.0], dtype=torch.float32, requires_grad=True)
    y = x.double() * 3
    y.sum().backward()
    assert x.grad.dtype is torch.float32
    assert_close(x.grad, [3.0, 3.0])


# ==================================================================================================================
# Grad modes
# ==================================================================================================================

def test_no_grad_enable_grad_nesting():
    x = t64([1.0])
    with torch.no_grad():
        assert not torch.is_grad_enabled()
        assert not (x * 2).requires_grad
        with torch.enable_grad():
            assert (x * 2).requires_grad
        assert not (x * 2).requires_grad
    assert torch.is_grad_enabled() and (x * 2).requires_grad


def test_grad_mode_decorators():
    x = t64([1.0])

    @torch.no_grad()
    def f1():
        return x * 2

    @torch.no_grad
    def f2():
        return x * 2

    @torch.enable_grad()
    def f3():
        return x * 2

    @torch.inference_mode()
    def f4():
        return torch.autograd.is_inference_mode_enabled(), x * 2

    @torch.set_grad_enabled(False)
    def f5():
        return x * 2

    assert torch.is_grad_enabled()          # set_grad_enabled as a decorator changes nothing until called
    assert not f1().requires_grad and not f2().requires_grad and not f5().requires_grad
    assert f1.__name__ == "f1"
    with torch.no_grad():
        assert f3().requires_grad
    inf, y = f4()
    assert inf and not y.requires_grad and not torch.autograd.is_inference_mode_enabled()
    assert torch.is_grad_enabled()


def test_grad_mode_generator_decorator():
    x = t64([1.0])

    @torch.no_grad()
    def gen():
        for _ in range(2):
            yield x * 2

    outs = []
    for y in gen():
        outs.append(y.requires_grad)
        assert torch.is_grad_enabled()      # the consumer runs in its own mode
    assert outs == [False, False]


def test_set_grad_enabled_function_and_context():
    torch.set_grad_enabled(False)
    try:
        assert not torch.is_grad_enabled()
    finally:
        torch.set_grad_enabled(True)
    with torch.set_grad_enabled(False):
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()
    with torch.no_grad():
        with torch.set_grad_enabled(True):
            assert torch.is_grad_enabled()
        assert not torch.is_grad_enabled()


def test_inference_mode():
    x = t64([1.0])
    with torch.inference_mode():
        assert not torch.is_grad_enabled() and torch.autograd.is_inference_mode_enabled()
        with torch.enable_grad():
            assert not (x * 2).requires_grad
    with torch.inference_mode(False):
        assert (x * 2).requires_grad


def test_grad_mode_is_thread_local():
    seen = []
    with torch.no_grad():
        th = threading.Thread(target=lambda: seen.append(torch.is_grad_enabled()))
        th.start()
        th.join()
    assert seen == [True]


# ==================================================================================================================
# Hooks
# ==================================================================================================================

def test_tensor_hooks_leaf_and_non_leaf():
    x = t64([1.0, 2.0])
    seen = []
    h1 = x.register_hook(lambda g: seen.append(("x", g.tolist())))
    y = x * 3
    y.register_hook(lambda g: g * 10)       # replaces the gradient flowing on
    y.retain_grad()
    y.sum().backward()
    assert seen == [("x", [30.0, 30.0])]
    assert_close(x.grad, [30.0, 30.0])
    assert_close(y.grad, [10.0, 10.0])      # retain_grad sees the gradient after the tensor's hooks
    h1.remove()
    x.grad = None
    x.register_hook(lambda g: g + 1)
    (x * 1).sum().backward()
    assert seen == [("x", [30.0, 30.0])]
    assert_close(x.grad, [2.0, 2.0])
    with pytest.raises(RuntimeError, match="cannot register a hook on a tensor that doesn't require gradient"):
        torch.ones(1).register_hook(lambda g: g)


def test_node_hooks_and_post_accumulate_hook():
    x = t64([1.0, 2.0])
    y = x * 2
    log = []
    y.grad_fn.register_prehook(lambda go: log.append(("pre", go[0].tolist())))
    h = y.grad_fn.register_hook(lambda gi, go: (gi[0] * 0.5, gi[1]))
    x.register_post_accumulate_grad_hook(lambda t: log.append(("acc", t.grad.tolist())))
    y.sum().backward(retain_graph=True)
    assert log == [("pre", [1.0, 1.0]), ("acc", [1.0, 1.0])]
    h.remove()
    x.grad = None
    y.sum().backward()
    assert_close(x.grad, [2.0, 2.0])


# ==================================================================================================================
# Custom Functions
# ==================================================================================================================

def test_function_docstring_example_runs():
    from tritorch.autograd import function
    doc = function.__doc__
    code = doc.split("::", 1)[1].split("\nWhat ``ctx``", 1)[0]
    lines = [ln.removeprefix("    ") for ln in code.splitlines()]
    exec(compile("\n".join(lines), "function_docstring", "exec"), {})


class Cube(Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.save_for_backward(x)
        ctx.scale = scale
        return x * x * x * scale

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 3 * x * x * ctx.scale, None


def test_custom_function_basics_and_gradcheck():
    x = t64([0.5, -1.0, 2.0])
    y = Cube.apply(x, 2.0)
    assert y.grad_fn.name() == "CubeBackward"
    assert y.grad_fn.needs_input_grad == (True, False)
    y.sum().backward()
    assert_close(x.grad, 6 * np.array([0.5, -1.0, 2.0]) ** 2)
    assert gradcheck(lambda a: Cube.apply(a, 2.0), (t64([0.3, -0.7]),))
    assert gradgradcheck(lambda a: Cube.apply(a, 2.0), (t64([0.3, -0.7]),))


def test_custom_function_needs_input_grad_and_non_tensor_args():
    seen = {}

    class Mul(Function):
        @staticmethod
        def forward(ctx, a, b, k):
            seen["needs"] = ctx.needs_input_grad
            ctx.save_for_backward(a, b)
            return a * b * k

        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            return (g * b * 2 if ctx.needs_input_grad[0] else None,
                    g * a * 2 if ctx.needs_input_grad[1] else None, None)

    a, b = t64([1.0, 2.0]), t64([3.0, 4.0], requires_grad=False)
    Mul.apply(a, b, 2).sum().backward()
    assert seen["needs"] == (True, False, False)
    assert_close(a.grad, [6.0, 8.0])


def test_custom_function_multi_output_materialize_and_non_differentiable():
    class Split(Function):
        @staticmethod
        def forward(ctx, x):
            idx = torch.tensor([0, 1])
            ctx.mark_non_differentiable(idx)
            return x * 2, x * 3, idx

        @staticmethod
        def backward(ctx, g1, g2, gidx):
            assert g1 is not None and g2 is not None       # the unused output's gradient is zeros
            return g1 * 2 + g2 * 3

    x = t64([1.0, 2.0])
    a, _, idx = Split.apply(x)
    assert not idx.requires_grad and a.requires_grad
    a.sum().backward()
    assert_close(x.grad, [2.0, 2.0])

    class SplitNoMat(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.set_materialize_grads(False)
            return x * 2, x * 3

        @staticmethod
        def backward(ctx, g1, g2):
            assert g2 is None
            return g1 * 2

    x = t64([1.0, 2.0])
    a, _ = SplitNoMat.apply(x)
    a.sum().backward()
    assert_close(x.grad, [2.0, 2.0])


def test_custom_function_mark_dirty():
    class AddOneInplace(Function):
        @staticmethod
        def forward(ctx, x):
            x.copy_(x + 1)
            ctx.mark_dirty(x)
            return x

        @staticmethod
        def backward(ctx, g):
            return g

    x = t64([1.0, 2.0])
    h = x * 2
    out = AddOneInplace.apply(h)
    assert out is h and h.grad_fn.name() == "AddOneInplaceBackward"
    (h * h).sum().backward()
    assert_close(x.grad, 4 * (2 * np.array([1.0, 2.0]) + 1))
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place "
                                           "operation."):
        AddOneInplace.apply(t64([1.0]))


def test_custom_function_returning_an_input_does_not_rewrite_it():
    class Ident(Function):
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, g):
            return g * 2

    x = t64([1.0])
    y = Ident.apply(x)
    assert y is not x and x.is_leaf and y.grad_fn is not None
    y.sum().backward()
    assert x.grad.tolist() == [2.0]


def test_custom_function_gradient_checks():
    class BadShape(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1

        @staticmethod
        def backward(ctx, g):
            return torch.ones(5, dtype=F64)

    with pytest.raises(RuntimeError, match=re.escape("Function BadShapeBackward returned an invalid gradient at "
                                                     "index 0 - got [5] but expected shape compatible with [2]")):
        BadShape.apply(t64([1.0, 2.0])).sum().backward()

    class Broadcasting(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1

        @staticmethod
        def backward(ctx, g):
            return torch.ones(3, 2, dtype=F64)      # summed down to the input's shape, as in PyTorch

    x = t64([1.0, 2.0])
    Broadcasting.apply(x).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]

    class TooMany(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1

        @staticmethod
        def backward(ctx, g):
            return g, g

    with pytest.raises(RuntimeError, match="returned an incorrect number of gradients \\(expected 1, got 2\\)"):
        TooMany.apply(t64([1.0])).sum().backward()

    class NotTensor(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1

        @staticmethod
        def backward(ctx, g):
            return 3

    with pytest.raises(TypeError, match="returned a gradient of type int"):
        NotTensor.apply(t64([1.0])).sum().backward()


def test_once_differentiable():
    class Sq(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        @once_differentiable
        def backward(ctx, g):
            assert not torch.is_grad_enabled()
            (x,) = ctx.saved_tensors
            return g * 2 * x

    x = t64([3.0])
    (g,) = torch.autograd.grad(Sq.apply(x), x, grad_outputs=t64([1.0]), create_graph=True)
    assert g.tolist() == [6.0] and g.requires_grad
    with pytest.raises(RuntimeError, match="trying to differentiate twice a function that was marked with "
                                           "@once_differentiable"):
        g.sum().backward()


def test_save_for_backward_refuses_non_tensors():
    class Bad(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x, 3)
            return x * 1

        @staticmethod
        def backward(ctx, g):
            return g

    with pytest.raises(TypeError, match="save_for_backward can only save variables"):
        Bad.apply(t64([1.0]))


# ==================================================================================================================
# In-place safety
# ==================================================================================================================

def test_inplace_on_leaf_requiring_grad_is_refused():
    x = t64([1.0, 2.0])
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place "
                                           "operation."):
        x.copy_(torch.zeros(2, dtype=F64))
    with torch.no_grad():
        x.copy_(torch.zeros(2, dtype=F64))
    assert x.tolist() == [0.0, 0.0] and x.requires_grad
    x.data = torch.ones(2, dtype=F64)       # replacing the data is allowed
    assert x.tolist() == [1.0, 1.0] and x.requires_grad and x.is_leaf
    (x * 2).sum().backward()
    assert x.grad.tolist() == [2.0, 2.0]


def test_modified_saved_tensor_raises_naming_tensor_and_op():
    x = t64([1.0, 2.0])
    h = x * 2
    y = h * h                                # MulBackward saves h
    v0 = h._version
    h.copy_(torch.zeros(2, dtype=F64))
    assert h._version == v0 + 1
    with pytest.raises(RuntimeError, match=r"one of the variables needed for gradient computation has been "
                                           r"modified by an inplace operation: \[tritorch.DoubleTensor \[2\]\], "
                                           r"which is output 0 of \w+Backward\w*, is at version 1; expected "
                                           r"version 0 instead"):
        y.sum().backward()


def test_modified_saved_output_raises():
    x = t64([1.0, 2.0])
    y = x.exp()                              # exp saves its own output
    z = y * 1
    y.copy_(torch.zeros(2, dtype=F64))
    del z
    with pytest.raises(RuntimeError, match=r"modified by an inplace operation: \[tritorch.DoubleTensor \[2\]\]"):
        y.sum().backward()


def test_modified_saved_leaf_raises():
    x = t64([1.0, 2.0])
    w = t64([3.0, 4.0], requires_grad=False)
    y = x * w                                # saves the leaf w
    w.copy_(torch.zeros(2, dtype=F64))
    with pytest.raises(RuntimeError, match=r"\[tritorch.DoubleTensor \[2\]\] is at version 1; expected version 0"):
        y.sum().backward()


def test_inplace_write_through_data_is_not_a_version_error(device):
    """``.data`` shares the elements under a version counter of its own (PyTorch's semantics): a write through it
    is not refused in backward, which then uses the new values; a write through ``detach()`` still is."""
    x = torch.tensor([1.0, 2.0], dtype=F64, device=device, requires_grad=True)
    y = torch.tensor([3.0, 4.0], dtype=F64, device=device, requires_grad=True)
    w = x * y                                # MulBackward saves x and y
    y.data.mul_(2)
    assert y._version == 0 and y.data._version == 0 and y.tolist() == [6.0, 8.0]
    w.sum().backward()
    assert x.grad.tolist() == [6.0, 8.0] and y.grad.tolist() == [1.0, 2.0]
    h = x * 2
    z = (h * h).sum()                        # saves the non-leaf h; a view of .data writes through it too
    h.data[0].add_(1)
    z.backward()
    assert x.grad.tolist() == [6.0 + 2 * 3.0 * 2, 8.0 + 2 * 4.0 * 2]
    d = x.data
    d.detach().add_(1)                       # .data's own counter is shared by its views and detach()
    d[0].add_(1)
    assert d._version == 2 and x._version == 0 and x.tolist() == [3.0, 3.0]
    w = x * y
    y.detach().mul_(2)
    with pytest.raises(RuntimeError, match=r"modified by an inplace operation: \[tritorch.*DoubleTensor \[2\]\] is "
                                           r"at version 1; expected version 0"):
        w.sum().backward()


def test_data_write_overlapping_its_source_reads_first(device):
    """``x.data`` is a separate Storage object over x's buffer: in-place ops must still see that they overlap (the
    Triton kernels would otherwise read elements already written)."""
    n = 64
    ref = np.arange(n * n, dtype=np.float32).reshape(n, n)
    a = torch.tensor(ref, device=device)
    a.data.add_(a.t())
    assert_close(a, ref + ref.T)
    v = torch.arange(float(n), device=device)
    v.data[torch.arange(1, n, device=device)] = v[:n - 1]
    assert v.tolist() == [0.0] + list(map(float, range(n - 1)))
    v = torch.arange(float(n), device=device)
    v.data[1:].copy_(v[:n - 1])
    assert v.tolist() == [0.0] + list(map(float, range(n - 1)))


def test_inplace_before_save_is_fine():
    x = t64([1.0, 2.0])
    h = x * 2
    h.copy_(h * 3)
    y = (h * h).sum()
    y.backward()
    assert_close(x.grad, 2 * 36 * np.array([1.0, 2.0]))


# ==================================================================================================================
# Higher-order gradients
# ==================================================================================================================

def test_second_derivative_elementwise():
    x = t64([0.3, -0.8, 1.5])
    y = (x * x * x + x.sin()).sum()
    (g,) = torch.autograd.grad(y, x, create_graph=True)
    assert g.requires_grad
    (h,) = torch.autograd.grad(g.sum(), x)
    xv = np.array([0.3, -0.8, 1.5])
    assert_close(h, 6 * xv - np.sin(xv))


def test_backward_create_graph_then_grad_of_grad():
    x = t64([2.0])
    y = x ** 3
    y.backward(create_graph=True)
    assert x.grad.requires_grad
    gx = x.grad
    x.grad = None
    gx.backward()
    assert_close(x.grad, [12.0])


def test_gradient_penalty_matmul_and_reductions():
    rng = np.random.default_rng(0)
    wv, xv = rng.standard_normal((3, 2)), rng.standard_normal((4, 3))
    w = t64(wv)
    x = t64(xv)

    def penalty(w):
        y = (x @ w).tanh().sum()
        (g,) = torch.autograd.grad(y, x, create_graph=True)
        return (g * g).sum()

    penalty(w).backward()

    def ref(wv):
        t = np.tanh(xv @ wv)
        g = (1 - t * t) @ wv.T
        return (g * g).sum()

    num = np.zeros_like(wv)
    for idx in np.ndindex(*wv.shape):
        e = np.zeros_like(wv)
        e[idx] = 1e-6
        num[idx] = (ref(wv + e) - ref(wv - e)) / 2e-6
    assert_close(w.grad, num, rtol=1e-6, atol=1e-8)
    assert gradgradcheck(lambda w: (x @ w).tanh(), (t64(wv),))


# ==================================================================================================================
# Long graphs, memory
# ==================================================================================================================

class _Id(Function):
    @staticmethod
    def forward(ctx, x):
        return x._alias()

    @staticmethod
    def backward(ctx, g):
        return g


def test_long_chain_is_iterative_and_fast():
    n = 100_000
    x = t64([1.0])
    y = x
    for _ in range(n):
        y = _Id.apply(y)
    t0 = time.perf_counter()
    y.sum().backward()
    per_node = (time.perf_counter() - t0) / n
    assert x.grad.tolist() == [1.0]
    assert per_node < 60e-6, f"{per_node * 1e6:.1f} us per node"      # ~7 us measured; loose for busy CI
    del y
    # a real op chain: no recursion anywhere, on a long graph deleted without backward too
    z = x
    for _ in range(3000):
        z = z * 1.0
    del z


def _graph_refs():
    x = t64([1.0, 2.0])
    y = x.exp()
    z = (y.sin() * y).sum()
    refs = [weakref.ref(o) for o in (y, z, y.grad_fn, z.grad_fn, z.grad_fn.next_functions[0][0])]
    return x, z, refs


def test_graph_is_freed_without_cycles():
    gc.collect()
    gc.disable()
    try:
        x, z, refs = _graph_refs()
        z.backward()
        del z
        assert all(r() is None for r in refs), [r() for r in refs]
        _, z2, refs2 = _graph_refs()        # never backpropagated: freed as well
        del z2
        assert all(r() is None for r in refs2)
        _, z3, refs3 = _graph_refs()        # retain_graph keeps the saved tensors, but still no cycle
        z3.backward(retain_graph=True)
        del z3
        assert all(r() is None for r in refs3)
        acc = weakref.ref(x.grad_fn or _acc(x))
        assert acc() is None                  # the leaf's accumulator lives only as long as a graph uses it
    finally:
        gc.enable()


def _acc(x):
    from tritorch.autograd.function import _grad_accumulator
    return _grad_accumulator(x)


def test_saved_tensors_freed_after_backward():
    x = t64([1.0, 2.0])
    y = x.exp()
    s = y.sum()
    node = y.grad_fn
    s.backward()
    assert node._saved is None
    with pytest.raises(RuntimeError, match="Trying to backward through the graph a second time"):
        _ = node.saved_tensors


# ==================================================================================================================
# gradcheck and anomaly detection
# ==================================================================================================================

def test_gradcheck_pass_and_fail():
    x = t64([0.2, -0.4, 1.1])
    y = t64([1.3, 0.7, -0.5])
    assert gradcheck(lambda a, b: (a * b.exp() / (1 + a * a)), (x, y))
    assert gradgradcheck(lambda a, b: (a * b).sin(), (x, y))

    class Wrong(Function):
        @staticmethod
        def forward(ctx, a):
            return a * a

        @staticmethod
        def backward(ctx, g):
            return g * 3

    with pytest.raises(GradcheckError, match="Jacobian mismatch for output 0 with respect to input 0"):
        gradcheck(Wrong.apply, (t64([1.0, 2.0]),))
    assert gradcheck(Wrong.apply, (t64([1.0, 2.0]),), raise_exception=False) is False
    with pytest.warns(UserWarning, match="is not a double precision floating point"):
        gradcheck(lambda a: a * 2, (torch.tensor([1.0], requires_grad=True),), atol=1e-2, rtol=1e-2, eps=1e-3)


def test_detect_anomaly_names_the_op():
    class NanBackward(Function):
        @staticmethod
        def forward(ctx, a):
            return a * 1

        @staticmethod
        def backward(ctx, g):
            return g * float("nan")

    x = t64([1.0])
    with torch.autograd.detect_anomaly():
        y = NanBackward.apply(x) * 2
        with pytest.raises(RuntimeError, match="Function 'NanBackwardBackward' returned nan values in its 0th "
                                               "output."):
            y.sum().backward()
    NanBackward.apply(x).sum().backward()    # off again: no check
    assert np.isnan(x.grad.tolist()[0])
    assert not torch.autograd.is_anomaly_enabled()


def test_detect_anomaly_builtin_op():
    x = t64([0.0, 1.0])
    with torch.autograd.detect_anomaly():
        y = x.sqrt().sum()
        with pytest.raises(RuntimeError, match=r"Function '\w*Backward\w*' returned nan values in its 0th output"):
            y.backward()


# ==================================================================================================================
# The plain-node path: cpu add/sub/mul/div recorded by record_plain, their gradients computed on the host arrays
# ==================================================================================================================

def _np_binary_grads(name, x, y, g):
    if name == "add":
        return g, g
    if name == "sub":
        return g, -g
    if name == "mul":
        return g * y, g * x
    return g / y, -g * x / (y * y)


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "0-d"])
@pytest.mark.parametrize("grads", ["both", "x", "y"])
def test_plain_binary_gradients(name, dtype, layout, grads):
    rng = np.random.default_rng(0)
    shape = () if layout == "0-d" else (3, 5)
    xn = rng.uniform(0.5, 2.0, shape)
    yn = rng.uniform(0.5, 2.0, shape) * rng.choice([-1, 1], shape)
    gn = rng.uniform(-1, 1, shape)
    dt = getattr(torch, dtype)

    def make(a, rg):
        if layout == "transposed":
            return torch.tensor(a.T, dtype=dt).t().detach().requires_grad_(rg)     # a non-contiguous leaf
        return torch.tensor(a, dtype=dt, requires_grad=rg)
    x, y = make(xn, grads != "y"), make(yn, grads != "x")
    out = getattr(torch, name)(x, y)
    assert out.grad_fn._plain and out.grad_fn.name() == name.capitalize() + "Backward0"
    g = torch.tensor(gn.T, dtype=dt).t() if layout == "transposed" else torch.tensor(gn, dtype=dt)
    out.backward(g)
    q = lambda a: np.asarray(a, dtype=np.float64) if dtype != "float16" else \
        np.asarray(a, dtype=np.float16).astype(np.float64)
    gx, gy = _np_binary_grads(name, q(xn), q(yn), q(gn))
    tol = dict(rtol=2e-3, atol=2e-3) if dtype == "float16" else {}
    for t, ref, wanted in ((x, gx, grads != "y"), (y, gy, grads != "x")):
        if wanted:
            assert t.grad.dtype is dt and t.grad.shape == t.shape
            assert_close(t.grad, ref, **tol)
        else:
            assert t.grad is None


def _np_sum_to(a, full, shape):
    a = np.broadcast_to(a, full)
    a = a.sum(axis=tuple(range(len(full) - len(shape))))
    return a.sum(axis=tuple(i for i, s in enumerate(shape) if s == 1), keepdims=True)


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div"])
@pytest.mark.parametrize("shapes", [((3, 1), (1, 4)), ((4,), (3, 4)), ((), (3,)), ((2, 3), ())])
def test_plain_binary_broadcasting(name, shapes):
    rng = np.random.default_rng(1)
    xn, yn = rng.uniform(0.5, 2.0, shapes[0]), rng.uniform(0.5, 2.0, shapes[1])
    x, y = t64(xn), t64(yn)
    out = getattr(torch, name)(x, y)
    assert out.grad_fn._plain
    gn = rng.uniform(-1, 1, out.shape)
    out.backward(t64(gn, requires_grad=False))
    gx, gy = _np_binary_grads(name, xn, yn, gn)
    assert_close(x.grad, _np_sum_to(gx, gn.shape, xn.shape))
    assert_close(y.grad, _np_sum_to(gy, gn.shape, yn.shape))
    assert gradcheck(lambda a, b: getattr(torch, name)(a, b), (t64(xn), t64(yn)))
    with pytest.raises(RuntimeError, match=r"shapes \(2, 3\), \(4,\) cannot be broadcast"):
        getattr(torch, name)(t64(np.ones((2, 3))), t64(np.ones((4,))))


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div"])
def test_plain_binary_with_a_python_number(name):
    x = t64([1.5, -2.0, 4.0])
    (getattr(torch, name)(x, 2.5) * t64([1.0, 2.0, 3.0], requires_grad=False)).sum().backward()
    gx, _ = _np_binary_grads(name, np.array([1.5, -2.0, 4.0]), 2.5, np.array([1.0, 2.0, 3.0]))
    assert_close(x.grad, gx)
    assert gradcheck(lambda a: getattr(torch, name)(a, 2.5), (t64([1.5, -2.0, 4.0]),))


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_plain_binary_with_a_python_number_first(dtype):
    dt = getattr(torch, dtype)
    yn = np.array([[1.5, -2.0, 4.0], [0.5, 3.0, -0.25]])
    q = yn.astype(np.float16).astype(np.float64) if dtype == "float16" else yn
    cases = {"rsub": (lambda y: 2.5 - y, 2.5 - q, -np.ones_like(q), "RsubBackward1"),
             "rdiv": (lambda y: 3 / y, 3 / q, -3 / q ** 2, "DivBackward0"),
             "radd": (lambda y: 1.25 + y, 1.25 + q, np.ones_like(q), "AddBackward0"),
             "rmul": (lambda y: -2 * y, -2 * q, -2 * np.ones_like(q), "MulBackward0")}
    tol = dict(rtol=2e-3, atol=2e-3) if dtype == "float16" else {}
    for name, (f, ref, grad, node) in cases.items():
        y = torch.tensor(yn.T, dtype=dt).t().detach().requires_grad_()
        out = f(y)
        assert out.dtype is dt and out.grad_fn._plain and out.grad_fn.name() == node, name
        assert_close(out, ref, **tol, msg=name)
        out.backward(torch.ones_like(out))
        assert_close(y.grad, grad, **tol, msg=name)
        with torch.no_grad():
            assert_close(f(y), ref, **tol, msg=name)
    assert gradcheck(lambda a: 2.0 - 3 / a, (t64([1.5, -2.0, 4.0]),))
    assert gradgradcheck(lambda a: 2.0 - 3 / a, (t64([1.5, -2.0, 4.0]),))
    assert (1 - torch.tensor([1, 2])).dtype is torch.int64          # integer tensors: the general path
    assert (0.5 - torch.tensor([1, 2])).dtype is torch.float32


def test_plain_add_gradients_are_not_shared():
    a, b = t64([1.0, 2.0]), t64([3.0, 4.0])
    g = t64([1.0, 1.0], requires_grad=False)
    (a + b).backward(g)                      # add hands g back for both arguments
    assert a.grad.data_ptr() != b.grad.data_ptr() and a.grad.data_ptr() != g.data_ptr()
    a.grad.add_(10.0)
    assert b.grad.tolist() == [1.0, 1.0] and g.tolist() == [1.0, 1.0]
    x = t64([1.0, 2.0])
    y = x * 2.0
    (y + y).sum().backward()                 # one tensor reaching the same node twice: the two summed
    assert x.grad.tolist() == [4.0, 4.0]


def test_plain_nodes_with_hooks():
    x = t64([1.0, 2.0])
    w = t64([3.0, -1.0], requires_grad=False)
    y = x * w
    assert y.grad_fn._plain
    y.register_hook(lambda g: g * 2)
    y.retain_grad()
    assert not y.grad_fn._plain                          # hooks take the checked path
    seen = []
    z = y * 5.0
    z.grad_fn.register_prehook(lambda grads: seen.append("pre") or None)
    z.grad_fn.register_hook(lambda gin, gout: (gin[0] * 10, None))
    z.sum().backward()
    assert seen == ["pre"]
    assert_close(y.grad, [100.0, 100.0])                # 5 * 10 (node hook), then 2 (tensor hook)
    assert_close(x.grad, [300.0, -100.0])


def test_plain_node_saved_tensor_modified_in_place():
    x = t64([1.0, 2.0])
    w = t64([3.0, 4.0], requires_grad=False)
    y = x * w
    w.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation.*MulBackward0"):
        y.sum().backward()


def test_plain_nodes_free_and_retain():
    x = t64([1.0, 2.0])
    w = t64([3.0, 4.0], requires_grad=False)
    y = (x * w) / w
    y.sum().backward(retain_graph=True)
    y.sum().backward()
    assert_close(x.grad, [2.0, 2.0])
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.sum().backward()


def test_plain_nodes_second_order_and_grad():
    x = t64([1.5, -2.0])
    y = x * x * x
    (gx,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    assert_close(gx, [6.75, 12.0])
    (ggx,) = torch.autograd.grad(gx.sum(), x)
    assert_close(ggx, [9.0, -12.0])
    assert gradgradcheck(lambda a, b: a * b / (b + 3.0) - a, (t64([1.5, -2.0]), t64([0.5, 2.0])))


def test_plain_nodes_anomaly_and_quiet_numpy():
    x = t64([1.0, 2.0])
    zero = t64([0.0, 1.0], requires_grad=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                  # no NumPy division warning, as PyTorch warns of none
        (x / zero).sum().backward()
    assert x.grad.tolist()[0] == float("inf")
    with torch.autograd.detect_anomaly():
        y = (x / zero).sum()
        with pytest.raises(RuntimeError, match="Function 'DivBackward0' returned nan values in its 0th output"):
            y.backward()


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_plain_unary_gradients(dtype):
    dt = getattr(torch, dtype)
    xn = np.array([[-1.5, -0.25, 0.5], [0.75, 1.25, 2.0]])
    tol = dict(rtol=3e-3, atol=3e-3) if dtype == "float16" else {}
    q = np.float16 if dtype == "float16" else np.float64
    xq = xn.astype(q).astype(np.float64)
    cases = {"relu": (xq > 0) * 1.0, "tanh": 1 - np.tanh(xq) ** 2, "sigmoid": np.exp(-xq) / (1 + np.exp(-xq)) ** 2,
             "exp": np.exp(xq), "sin": np.cos(xq), "abs": np.sign(xq), "neg": -np.ones_like(xq)}
    for name, ref in cases.items():
        x = torch.tensor(xn.T, dtype=dt).t().detach().requires_grad_()        # a non-contiguous leaf
        y = getattr(torch, name)(x)
        assert y.grad_fn._plain
        y.backward(torch.ones_like(y))
        assert x.grad.dtype is dt
        assert_close(x.grad, ref, **tol, msg=name)
    x = t64([-1.0, 0.5, 2.0])
    torch.nn.functional.leaky_relu(x, 0.2).sum().backward()
    assert_close(x.grad, [0.2, 1.0, 1.0])


def test_plain_unary_saved_output_and_second_order():
    x = t64([0.5, -1.0])
    y = x.exp()                               # saves its own output
    y.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation.*output 0 of ExpBackward0"):
        y.sum().backward()
    x = t64([0.5, -1.0])
    y = x.tanh()
    (gx,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    assert_close(gx, 1 - np.tanh([0.5, -1.0]) ** 2)
    (ggx,) = torch.autograd.grad(gx.sum(), x)
    t = np.tanh([0.5, -1.0])
    assert_close(ggx, -2 * t * (1 - t * t))
    assert gradgradcheck(lambda a: a.sigmoid() * a.exp() + a.sin(), (t64([0.3, -0.7]),))


# ==================================================================================================================
# Device-agnostic engine (cpu and interpreted cuda)
# ==================================================================================================================

def test_engine_on_device(device):
    x = torch.tensor([0.5, -1.0, 2.0], device=device, requires_grad=True)
    w = torch.tensor([1.5, 2.0, -0.5], device=device, requires_grad=True)
    y = (x.exp() * w + x * x).sum()
    y.backward(retain_graph=True)
    xv, wv = np.array([0.5, -1.0, 2.0]), np.array([1.5, 2.0, -0.5])
    assert x.grad.device == torch.device(device)
    assert_close(x.grad, np.exp(xv) * wv + 2 * xv)
    assert_close(w.grad, np.exp(xv))
    (gx,) = torch.autograd.grad(y, x, create_graph=True)
    (hx,) = torch.autograd.grad(gx.sum(), x)
    assert_close(hx, np.exp(xv) * wv + 2)


def test_custom_function_on_device(device):
    x = torch.tensor([0.5, -1.0], device=device, requires_grad=True)
    y = Cube.apply(x, 1.0)
    y.backward(torch.ones(2, device=device))
    assert_close(x.grad, 3 * np.array([0.5, -1.0]) ** 2)
    with pytest.raises(RuntimeError, match="Mismatch in shape"):
        Cube.apply(x, 1.0).backward(torch.ones(3, device=device))


# ==================================================================================================================
# Edge cases
# ==================================================================================================================

def test_grad_of_output_wrt_itself_and_leaf_root():
    y = t64([1.0, 2.0]) * 3
    (g,) = torch.autograd.grad(y, y, torch.ones(2, dtype=F64))
    assert g.tolist() == [1.0, 1.0]
    x = t64([1.0, 2.0])
    x.backward(torch.tensor([3.0, 4.0], dtype=F64))
    assert x.grad.tolist() == [3.0, 4.0]
    v = x[1:]
    (gx,) = torch.autograd.grad((v * v).sum(), x)
    assert gx.tolist() == [0.0, 4.0]


def test_inplace_on_view_of_leaf_is_refused():
    x = t64([1.0, 2.0])
    with pytest.raises(RuntimeError, match="a view of a leaf Variable that requires grad is being used in an "
                                           "in-place operation."):
        x[0].copy_(torch.tensor(5.0, dtype=F64))
    assert x.tolist() == [1.0, 2.0]


def test_ctx_attribute_holding_own_output_makes_no_cycle():
    class KeepOut(Function):
        @staticmethod
        def forward(ctx, x):
            out = x * 2
            ctx.out = out                       # an output kept as a plain attribute
            return out

        @staticmethod
        def backward(ctx, g):
            assert ctx.out.grad_fn is ctx       # unpacked with its history
            return g * 2

    gc.collect()
    gc.disable()
    try:
        x = t64([1.0])
        y = KeepOut.apply(x)
        r = weakref.ref(y.grad_fn)
        y.sum().backward(retain_graph=True)
        del y
        assert r() is None
    finally:
        gc.enable()
    assert x.grad.tolist() == [2.0]


def test_hooks_module_style_identity_keeps_inputs_leaves():
    class Identity2(Function):
        @staticmethod
        def forward(ctx, *tensors):
            return tensors

        @staticmethod
        def backward(ctx, *grads):
            return tuple(g * 2 for g in grads)

    a, b = t64([1.0]), t64([2.0])
    a2, b2 = Identity2.apply(a, b)
    assert a.is_leaf and b.is_leaf and a2.grad_fn is b2.grad_fn
    assert a2._storage is a._storage
    (a2 + b2 * b2).sum().backward()
    assert a.grad.tolist() == [2.0] and b.grad.tolist() == [8.0]


def test_gradcheck_multiple_outputs_and_layouts(device):
    base = torch.tensor([[0.3, -0.6, 1.2], [0.9, -1.1, 0.4]], dtype=F64, device=device)
    x = base.t().detach().requires_grad_()             # a non-contiguous input
    w = torch.tensor([0.5, -2.0], dtype=F64, device=device, requires_grad=True)
    assert gradcheck(lambda a, b: (a * b, (a * a).sum()), (x, w))


def test_inplace_on_view_rebases_the_base(device):
    x = torch.tensor([1.0, 2.0, 3.0], device=device, requires_grad=True)
    h = x * 2
    v = h[1:]
    v.mul_(3)                                 # recorded on h: its gradient sees the write
    assert h.grad_fn.name() == "CopySlices" and v.grad_fn is not None
    (h * torch.tensor([1.0, 10.0, 100.0], device=device)).sum().backward()
    assert_close(x.grad, [2.0, 60.0, 600.0])
    x.grad = None
    h = x * 2
    v = h[1:]
    v.mul_(3)
    (v * v).sum().backward()
    assert_close(x.grad, [0.0, 144.0, 216.0])
    w = torch.tensor([2.0, 3.0], device=device, requires_grad=True)
    b = torch.zeros(3, device=device)
    b[1:].mul_(w)                             # a base that did not require grad starts to
    b[1:].add_(w)
    assert b.requires_grad
    (b * b).sum().backward()
    assert_close(w.grad, [4.0, 6.0])


def test_broadcast_gradient_is_adopted_as_grad_without_a_copy(device):
    """A gradient summed back over broadcast leading dims is the sum's own result, no view of it: ``.grad`` takes it
    as is (no clone), as the gradient of an unbroadcast operand is taken."""
    from tritorch.profiler import profile
    x = torch.tensor(np.arange(12.0, dtype=np.float32).reshape(3, 4), device=device)
    w = torch.tensor([1.0, 2.0, 3.0, 4.0], device=device, requires_grad=True)
    b = torch.tensor([[1.0], [2.0], [3.0]], device=device, requires_grad=True)
    with profile() as prof:
        (x * w + b).sum().backward()
    assert not {"clone", "to"} & {e.name for e in prof.events() if e.kind == "op"}
    np.testing.assert_allclose(w.grad.cpu().numpy(), [12.0, 15.0, 18.0, 21.0])
    np.testing.assert_allclose(b.grad.cpu().numpy(), [[4.0], [4.0], [4.0]])
    assert w.grad._base is None and b.grad._base is None
