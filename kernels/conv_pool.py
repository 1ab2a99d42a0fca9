"""A 2-D convolution with an activation, read only by a max pooling, as one autograd node (``tritorch.compile``'s
``fuse_conv_pool``: ``max_pool2d(relu(conv2d(x, w, b)))``), so that its backward runs no activation-gradient pass.

Forward runs the separate ops' kernels: the convolution with the activation in its epilogue, then the max pooling.
Backward: a max pooling sends each output's gradient to the element its argmax selected, and there the activation's
result equals the pooled output y. The derivative of an activation taken from its result (``EPILOGUE_ACTIVATIONS``:
relu, sigmoid, tanh) is therefore ``act'(y)`` per output, applied inside the pooling's gather (``_pool_bwd_kernel``'s
``BWD``), and the convolution's gradient products read the pre-activation gradient it stores. The separate nodes
store the pooled gradient at the convolution's output size and run ``_act_grad_kernel`` over it: a launch, a write
and two reads of that size more. Under create_graph the derivative runs as recorded ops at the pooled size, then the
pooling's own differentiable backward.
"""
from tritorch.autograd.function import Function
from tritorch.autograd.grad_mode import STATE
from .conv import Geometry, conv_grads, conv_setup, run_conv, save_conv
from .elementwise import UNARY
from .pool import MAX, PoolGrad, pool_forward, pool_grad, pool_window

__all__ = ["conv2d_max_pool2d", "ConvMaxPool"]


class ConvMaxPool(Function):
    """y = max pooling ``p`` (to spatial sizes ``out3``) of act(conv2d(x, w) + bias), for 4-D x, w (validated by
    ``conv2d_max_pool2d``); ``geo``, ``out_hw``: the convolution's geometry and output size, as ``Conv`` takes them."""

    @staticmethod
    def forward(ctx, x, w, bias, geo, out_hw, act, p, out3):
        h = run_conv(x, w, bias, geo, out_hw, act)
        y, idx = pool_forward(h, p, out3)
        save_conv(ctx, x, w, geo, y, idx)
        ctx.act, ctx.p, ctx.h_shape = act, p, h._shape
        return y

    @staticmethod
    def backward(ctx, g):
        x, w, y, idx = ctx.saved_tensors
        if STATE.enabled:           # create_graph: recorded ops, then the pooling's differentiable backward
            if ctx.act is not None:
                g = UNARY[ctx.act].bwd_composite(g, y, y, 0.0)
            gh = PoolGrad.apply(g, idx, ctx.p, ctx.h_shape)
        else:
            gh = pool_grad(g, idx, ctx.p, ctx.h_shape, g.dtype, g.device, ctx.act, y)
        return conv_grads(ctx, x, w, gh) + (None,) * 5


def conv2d_max_pool2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, activation=None,
                      kernel_size, pool_stride=None, pool_padding=0, pool_dilation=1, ceil_mode=False):
    """``max_pool2d(act(conv2d(input, weight, bias, stride, padding, dilation, groups)), kernel_size, pool_stride,
    pool_padding, pool_dilation, ceil_mode)`` as one node: ``activation`` one of the convolution's epilogue
    activations (or None), differentiated inside the pooling's backward kernel."""
    x, batched, stride, pads, dilation, out = conv_setup("conv2d", input, weight, bias, stride, padding, dilation,
                                                         groups, 2, activation)
    p, out3 = pool_window((x._shape[0], weight._shape[0]) + out, MAX, 2, kernel_size, pool_stride, pool_padding,
                          pool_dilation, ceil_mode, True, None, "max_pool2d")
    geo = Geometry(stride, tuple(a for a, _ in pads), dilation, groups)
    y = ConvMaxPool.apply(x, weight, bias, geo, out, activation, p, out3)
    return y if batched else y.squeeze(0)
