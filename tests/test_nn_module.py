"""nn.Module and friends: registration, traversal, state dicts, hooks, reprs, Linear, activations, init, clipping."""
import copy
import math
import re
from collections import OrderedDict

import numpy as np
import pytest

import tritorch
import tritorch.nn as nn
import tritorch.nn.functional as F
from tritorch.nn import init
from helpers import assert_close, make, to_np


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(4, 2, bias=False)
        self.scale = nn.Parameter(tritorch.ones(1))
        self.register_buffer("steps", tritorch.zeros(1, dtype=tritorch.int64))
        self.register_buffer("cache", tritorch.zeros(2), persistent=False)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x))) * self.scale


# ---- Parameter -------------------------------------------------------------------------------------------------
def test_parameter_shares_storage_and_repr():
    t = tritorch.tensor([1.0, 2.0])
    p = nn.Parameter(t)
    assert isinstance(p, tritorch.Tensor) and isinstance(p, nn.Parameter)
    assert p.requires_grad and p.is_leaf
    assert p._storage is t._storage
    assert repr(p) == "Parameter containing:\ntensor([1., 2.], requires_grad=True)"
    assert not nn.Parameter(t, requires_grad=False).requires_grad
    y = p * 2
    assert type(y) is tritorch.Tensor and y.requires_grad
    assert type(p.data) is tritorch.Tensor
    assert tuple(nn.Parameter().shape) == (0,)


# ---- registration and traversal ----------------------------------------------------------------------------------
def test_registration_and_traversal():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == ["scale", "fc1.weight", "fc1.bias", "fc2.weight"]
    assert [n for n, _ in net.named_buffers()] == ["steps", "cache"]
    assert [n for n, _ in net.named_children()] == ["fc1", "act", "fc2"]
    assert [n for n, _ in net.named_modules()] == ["", "fc1", "act", "fc2"]
    assert list(net.children())[0] is net.fc1
    assert len(list(net.parameters(recurse=False))) == 1
    assert net.fc2.bias is None
    assert net.get_submodule("fc1") is net.fc1 and net.get_parameter("fc1.bias") is net.fc1.bias
    assert net.get_buffer("steps") is net.steps
    with pytest.raises(AttributeError, match="'Net' object has no attribute 'nope'"):
        net.nope
    del net.fc2
    assert "fc2" not in dict(net.named_children())
    net.extra = 3
    assert net.extra == 3 and "extra" in net.__dict__


def test_shared_parameters_are_deduplicated():
    a = nn.Linear(2, 2)
    b = nn.Linear(2, 2)
    b.weight = a.weight
    seq = nn.Sequential(a, b, a)
    names = [n for n, _ in seq.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.bias"]
    assert len(list(seq.modules())) == 3
    assert len(list(seq.named_parameters(remove_duplicate=False))) == 6


def test_setattr_errors():
    net = Net()
    with pytest.raises(TypeError, match=r"cannot assign 'tritorch.FloatTensor' as parameter 'scale' "
                                        r"\(torch.nn.Parameter or None expected\)"):
        net.scale = tritorch.ones(1)
    with pytest.raises(TypeError, match="cannot assign 'int' as child module 'fc1'"):
        net.fc1 = 3
    with pytest.raises(TypeError, match="cannot assign 'str' as buffer 'steps'"):
        net.steps = "x"
    with pytest.raises(KeyError, match="attribute 'fc1' already exists"):
        net.register_buffer("fc1", tritorch.ones(1))
    with pytest.raises(KeyError, match="contain"):
        net.register_parameter("a.b", None)
    with pytest.raises(TypeError, match="cannot assign 'tritorch.FloatTensor' object to parameter 'w'"):
        net.register_parameter("w", tritorch.ones(1))
    with pytest.raises(ValueError, match="Cannot assign non-leaf Tensor to parameter 'w'"):
        p = nn.Parameter(tritorch.ones(1))
        q = nn.Parameter(tritorch.ones(1))
        q.grad_fn = (p * 2).grad_fn
        net.register_parameter("w", q)
    net.scale = None                                       # a parameter slot can be emptied
    assert net.scale is None and "scale" in net._parameters
    net.steps = tritorch.ones(1, dtype=tritorch.int64)    # a buffer can be replaced by a tensor

    class Early(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(tritorch.ones(1))

    with pytest.raises(AttributeError, match=re.escape("cannot assign parameters before Module.__init__() call")):
        Early()


def test_forward_missing_and_unexpected_init_args():
    with pytest.raises(NotImplementedError, match='Module \\[Module\\] is missing the required "forward" function'):
        nn.Module()(1)
    with pytest.raises(TypeError, match="unexpected argument"):
        nn.Module(3)


# ---- modes, grads, apply -----------------------------------------------------------------------------------------
def test_train_eval_zero_grad_apply():
    net = Net()
    assert net.training and net.fc1.training
    net.eval()
    assert not net.training and not net.fc1.training and not net.act.training
    net.train()
    assert net.fc2.training
    with pytest.raises(ValueError, match="training mode is expected to be boolean"):
        net.train("yes")
    net(tritorch.ones(2, 3)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(np.all(to_np(p.grad) == 0) for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "ReLU", "Linear", "Net"]
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())


# ---- state dict ----------------------------------------------------------------------------------------------------
def test_state_dict_round_trip():
    net = Net()
    sd = net.state_dict()
    assert list(sd) == ["scale", "steps", "fc1.weight", "fc1.bias", "fc2.weight"]   # non-persistent 'cache' absent
    assert isinstance(sd, OrderedDict)
    assert not sd["fc1.weight"].requires_grad and sd["fc1.weight"]._storage is net.fc1.weight._storage
    assert net.state_dict(keep_vars=True)["fc1.weight"] is net.fc1.weight
    other = Net()
    w = other.fc1.weight
    res = other.load_state_dict(sd)
    assert res.missing_keys == [] and res.unexpected_keys == [] and repr(res) == "<All keys matched successfully>"
    assert other.fc1.weight is w                     # copied in place
    for k in sd:
        assert_close(other.state_dict()[k], sd[k])
    assert_close(other(tritorch.ones(1, 3)), net(tritorch.ones(1, 3)))


def test_load_state_dict_errors():
    net = Net()
    sd = net.state_dict()
    del sd["fc1.bias"]
    sd["fc3.weight"] = tritorch.ones(1)
    sd["fc2.weight"] = tritorch.ones(3)
    with pytest.raises(RuntimeError) as e:
        net.load_state_dict(sd)
    msg = str(e.value)
    assert msg.startswith("Error(s) in loading state_dict for Net:\n\tMissing key(s) in state_dict: \"fc1.bias\". "
                          "\n\tUnexpected key(s) in state_dict: \"fc3.weight\". \n\tsize mismatch for fc2.weight: "
                          "copying a param with shape tritorch.Size([3]) from checkpoint, the shape in current "
                          "model is tritorch.Size([2, 4]).")
    del sd["fc2.weight"]
    res = net.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["fc1.bias", "fc2.weight"] and res.unexpected_keys == ["fc3.weight"]
    with pytest.raises(TypeError, match="Expected state_dict to be dict-like"):
        net.load_state_dict([1])


def test_load_state_dict_batchnorm_without_num_batches_tracked():
    """A state dict of no (or an old) version without BatchNorm's num_batches_tracked loads strictly, keeping the
    current count, as PyTorch treats checkpoints from before that buffer (issue 14)."""
    net = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    src = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    with tritorch.no_grad():
        src[1].running_mean.fill_(0.5)
    net[1].num_batches_tracked.fill_(7)
    sd = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    res = net.load_state_dict(sd)
    assert res.missing_keys == [] and res.unexpected_keys == []
    assert int(net[1].num_batches_tracked.item()) == 7
    assert to_np(net[1].running_mean).tolist() == [0.5] * 3
    bn = nn.BatchNorm1d(3)
    assert bn.load_state_dict({"weight": tritorch.ones(3), "bias": tritorch.zeros(3), "running_mean": tritorch.zeros(3),
                               "running_var": tritorch.ones(3)}, assign=True).missing_keys == []
    assert int(bn.num_batches_tracked.item()) == 0
    # a state dict saved at the current version (2) records the buffer: its absence is an error, as in PyTorch
    sd = src.state_dict()
    assert sd._metadata["1"] == {"version": 2}
    del sd["1.num_batches_tracked"]
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "1.num_batches_tracked"'):
        net.load_state_dict(sd)
    sd._metadata["1"]["version"] = 1
    assert net.load_state_dict(sd).missing_keys == []
    # other keys are still checked
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "running_var"'):
        nn.BatchNorm1d(3).load_state_dict({"weight": tritorch.ones(3), "bias": tritorch.zeros(3),
                                           "running_mean": tritorch.zeros(3)})


def test_load_state_dict_assign_and_dtype_cast():
    lin = nn.Linear(2, 3)
    sd = {"weight": tritorch.ones(3, 2, dtype=tritorch.float64), "bias": tritorch.zeros(3)}
    lin.load_state_dict(sd)
    assert lin.weight.dtype is tritorch.float32 and to_np(lin.weight).sum() == 6
    lin.load_state_dict(sd, assign=True)
    assert lin.weight.dtype is tritorch.float64 and isinstance(lin.weight, nn.Parameter) and lin.weight.requires_grad


def test_to_dtype_and_device_keeps_parameter_identity():
    net = Net()
    w = net.fc1.weight
    net(tritorch.ones(1, 3)).sum().backward()
    net.double()
    assert net.fc1.weight is w and w.dtype is tritorch.float64 and w.grad.dtype is tritorch.float64
    assert net.steps.dtype is tritorch.int64
    net.to(tritorch.float32)
    assert w.dtype is tritorch.float32
    with pytest.raises(TypeError, match="nn.Module.to only accepts floating point or complex dtypes, but got desired "
                                        "dtype=tritorch.int64"):
        net.to(tritorch.int64)
    net.half().float()
    assert w.dtype is tritorch.float32


def test_to_cuda_and_back():
    net = Net()
    ref = to_np(net(tritorch.ones(2, 3)))
    w = net.fc1.weight
    net.to("cuda")
    assert net.fc1.weight is w and w.device.type == "cuda" and net.steps.device.type == "cuda"
    out = net(tritorch.ones(2, 3, device="cuda"))
    assert out.device.type == "cuda"
    np.testing.assert_allclose(to_np(out), ref, rtol=1e-5, atol=1e-6)
    sd = net.state_dict()
    assert sd["fc1.weight"].device.type == "cuda"
    back = Net()
    back.load_state_dict(sd)                                # cross-device copy_
    net.cpu()
    assert w.device.type == "cpu"
    np.testing.assert_allclose(to_np(back(tritorch.ones(2, 3))), ref, rtol=1e-5, atol=1e-6)


def test_deepcopy():
    net = Net()
    c = copy.deepcopy(net)
    assert c.fc1.weight is not net.fc1.weight and c.fc1.weight._storage is not net.fc1.weight._storage
    assert isinstance(c.fc1.weight, nn.Parameter)
    assert_close(c.fc1.weight, net.fc1.weight)


# ---- hooks -------------------------------------------------------------------------------------------------------
def test_forward_hooks():
    lin = nn.Linear(2, 2)
    calls = []
    h1 = lin.register_forward_pre_hook(lambda m, args: (args[0] * 0,))
    h2 = lin.register_forward_hook(lambda m, args, out: calls.append("a") or out + 1)
    lin.register_forward_hook(lambda m, args, out: calls.append("first"), prepend=True)
    out = lin(tritorch.ones(1, 2))
    assert_close(out, to_np(lin.bias.detach()).reshape(1, 2) + 1)
    assert calls == ["first", "a"]
    h1.remove()
    h2.remove()
    out = lin(tritorch.ones(1, 2))
    assert_close(out, to_np(lin.weight.detach()).sum(1).reshape(1, 2) + to_np(lin.bias.detach()))

    def kw_hook(m, args, kwargs):
        return args, {"scale": 3.0}

    class Scaled(nn.Module):
        def forward(self, x, scale=1.0):
            return x * scale

    s = Scaled()
    with s.register_forward_pre_hook(kw_hook, with_kwargs=True):
        assert_close(s(tritorch.ones(1)), [3.0])
    assert_close(s(tritorch.ones(1)), [1.0])
    s.register_forward_pre_hook(lambda m, a, k: 5, with_kwargs=True)
    with pytest.raises(RuntimeError, match="forward pre-hook must return None or a tuple"):
        s(tritorch.ones(1))


# ---- repr --------------------------------------------------------------------------------------------------------
def test_repr():
    net = nn.Sequential(OrderedDict(body=nn.Sequential(nn.Linear(3, 4), nn.GELU(approximate="tanh")),
                                    head=nn.Linear(4, 1, bias=False), out=nn.LogSoftmax(dim=1)))
    assert repr(net) == (
        "Sequential(\n"
        "  (body): Sequential(\n"
        "    (0): Linear(in_features=3, out_features=4, bias=True)\n"
        "    (1): GELU(approximate='tanh')\n"
        "  )\n"
        "  (head): Linear(in_features=4, out_features=1, bias=False)\n"
        "  (out): LogSoftmax(dim=1)\n"
        ")")
    assert repr(nn.ModuleList([nn.ReLU(), nn.ReLU(), nn.Tanh()])) == \
        "ModuleList(\n  (0-1): 2 x ReLU()\n  (2): Tanh()\n)"
    assert repr(nn.LeakyReLU(0.2, inplace=True)) == "LeakyReLU(negative_slope=0.2, inplace=True)"
    assert repr(nn.Softplus()) == "Softplus(beta=1.0, threshold=20.0)"
    assert repr(nn.Hardtanh()) == "Hardtanh(min_val=-1.0, max_val=1.0)"
    assert repr(nn.ELU()) == "ELU(alpha=1.0)"
    assert repr(nn.Flatten()) == "Flatten(start_dim=1, end_dim=-1)"
    assert repr(nn.Unflatten(1, (2, 5))) == "Unflatten(dim=1, unflattened_size=(2, 5))"
    assert repr(nn.Identity()) == "Identity()"
    assert repr(nn.ParameterList([tritorch.ones(2, 3)])) == \
        "ParameterList(  (0): Parameter containing: [tritorch.float32 of size 2x3])"


# ---- containers --------------------------------------------------------------------------------------------------
def test_containers():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    assert len(seq) == 2 and isinstance(seq[0], nn.Linear) and isinstance(seq[-1], nn.ReLU)
    assert isinstance(seq[:1], nn.Sequential) and len(seq[:1]) == 1
    seq.append(nn.Linear(3, 1))
    assert len(seq) == 3 and seq(tritorch.ones(4, 2)).shape == (4, 1)
    with pytest.raises(IndexError, match="index 3 is out of range"):
        seq[3]
    ml = nn.ModuleList([nn.Linear(1, 1)])
    ml.append(nn.Linear(1, 1))
    ml += [nn.Tanh()]
    assert len(ml) == 3 and [n for n, _ in ml.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    del ml[0]
    assert [n for n, _ in ml.named_children()] == ["0", "1"]
    md = nn.ModuleDict({"a": nn.ReLU(), "b": nn.Linear(1, 2)})
    assert list(md.keys()) == ["a", "b"] and "b" in md and len(md) == 2
    assert [n for n, _ in md.named_parameters()] == ["b.weight", "b.bias"]
    pl = nn.ParameterList([tritorch.ones(2), tritorch.zeros(3)])
    assert all(isinstance(p, nn.Parameter) for p in pl) and len(list(pl.parameters())) == 2
    pd = nn.ParameterDict({"x": tritorch.ones(1)})
    assert [n for n, _ in pd.named_parameters()] == ["x"]
    assert nn.Flatten()(tritorch.ones(2, 3, 4)).shape == (2, 12)
    assert nn.Unflatten(1, (3, 4))(tritorch.ones(2, 12)).shape == (2, 3, 4)
    x = tritorch.ones(3)
    assert nn.Identity(54, unused="x")(x) is x


# ---- Linear ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(5, 3), (3,), (2, 2, 3)])
def test_linear_forward_backward(device, shape):
    lin = nn.Linear(3, 4, device=device)
    x, xr = make(shape, device=device, requires_grad=True)
    w, b = to_np(lin.weight.detach()), to_np(lin.bias.detach())
    y = lin(x)
    assert y.shape == shape[:-1] + (4,) and y.device.type == device
    assert_close(y, xr @ w.T + b)
    g, gr = make(shape[:-1] + (4,), device=device, seed=1)
    y.backward(g)
    assert_close(x.grad, gr @ w)
    assert_close(lin.weight.grad, gr.reshape(-1, 4).T @ xr.reshape(-1, 3))
    assert_close(lin.bias.grad, gr.reshape(-1, 4).sum(0))


def test_linear_errors_and_init_bounds():
    lin = nn.Linear(3, 2)
    with pytest.raises(RuntimeError, match=re.escape("mat1 and mat2 shapes cannot be multiplied (4x5 and 3x2)")):
        lin(tritorch.ones(4, 5))
    with pytest.raises(RuntimeError, match="mat1 and mat2 must have the same dtype, but got Double and Float"):
        lin(tritorch.ones(4, 3, dtype=tritorch.float64))
    big = nn.Linear(400, 50)
    bound = 1 / math.sqrt(400)
    w = to_np(big.weight.detach())
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.05 * bound
    assert np.abs(to_np(big.bias.detach())).max() <= bound
    nb = nn.Linear(3, 2, bias=False)
    assert nb.bias is None and len(list(nb.parameters())) == 1


def test_bilinear():
    bl = nn.Bilinear(3, 2, 4)
    x1, r1 = make((5, 3), seed=1)
    x2, r2 = make((5, 2), seed=2)
    w, b = to_np(bl.weight.detach()), to_np(bl.bias.detach())
    assert_close(bl(x1, x2), np.einsum("ni,oij,nj->no", r1, w, r2) + b)


# ---- activations and functional ------------------------------------------------------------------------------------
def _np_gelu(x):
    from math import erf
    return 0.5 * x * (1 + np.vectorize(erf)(x / math.sqrt(2)))


ACTS = [
    (nn.ReLU(), lambda x: np.maximum(x, 0)),
    (nn.LeakyReLU(0.1), lambda x: np.where(x > 0, x, 0.1 * x)),
    (nn.ELU(), lambda x: np.where(x > 0, x, np.expm1(x))),
    (nn.GELU(), _np_gelu),
    (nn.GELU("tanh"), lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))),
    (nn.SiLU(), lambda x: x / (1 + np.exp(-x))),
    (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    (nn.Tanh(), np.tanh),
    (nn.Softplus(), lambda x: np.log1p(np.exp(x))),
    (nn.Hardtanh(-0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5)),
    (nn.ReLU6(), lambda x: np.clip(x, 0, 6)),
    (nn.Softmax(dim=1), lambda x: np.exp(x) / np.exp(x).sum(1, keepdims=True)),
    (nn.LogSoftmax(dim=-1), lambda x: x - np.log(np.exp(x).sum(-1, keepdims=True))),
]


@pytest.mark.parametrize("mod,ref", ACTS, ids=[type(m).__name__ + str(i) for i, (m, _) in enumerate(ACTS)])
def test_activation_modules(mod, ref):
    x, xr = make((3, 5), dtype=tritorch.float64, low=-3, high=3)
    assert_close(mod(x), ref(xr))


def test_functional_inplace_and_softmax(device):
    x, xr = make((2, 7), device=device)
    y = F.relu(x, inplace=True)
    assert y is x
    assert_close(x, np.maximum(xr, 0))
    x, xr = make((2, 7), device=device, requires_grad=True)
    sm = F.softmax(x, dim=1)
    e = np.exp(xr - xr.max(1, keepdims=True))
    assert_close(sm, e / e.sum(1, keepdims=True))
    (sm * tritorch.tensor(np.arange(7.0), dtype=tritorch.float32, device=device)).sum().backward()
    s = e / e.sum(1, keepdims=True)
    c = np.arange(7.0)
    assert_close(x.grad, s * (c - (s * c).sum(1, keepdims=True)))
    with pytest.warns(UserWarning, match="Implicit dimension choice for log_softmax"):
        ls = F.log_softmax(x.detach())
    assert_close(ls, np.log(s))
    with pytest.raises(RuntimeError, match="approximate argument must be either none or tanh"):
        F.gelu(x, approximate="fast")


# ---- init --------------------------------------------------------------------------------------------------------
def test_init_fans_and_gains():
    w = tritorch.empty(8, 3, 5, 5)
    assert init._calculate_fan_in_and_fan_out(w) == (75, 200)
    assert init._calculate_fan_in_and_fan_out(tritorch.empty(4, 6)) == (6, 4)
    with pytest.raises(ValueError, match="Fan in and fan out can not be computed for tensor with fewer than 2 "
                                         "dimensions"):
        init.xavier_uniform_(tritorch.empty(3))
    with pytest.raises(ValueError, match="Mode fan_avg not supported, please use one of"):
        init.kaiming_uniform_(w, mode="fan_avg")
    assert init.calculate_gain("relu") == math.sqrt(2)
    assert init.calculate_gain("tanh") == 5 / 3
    assert init.calculate_gain("leaky_relu", 0.2) == math.sqrt(2 / 1.04)
    assert init.calculate_gain("conv2d") == 1 and init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError, match="Unsupported nonlinearity gelu"):
        init.calculate_gain("gelu")


def test_init_distributions():
    w = tritorch.empty(64, 32, 3)
    init.kaiming_uniform_(w, mode="fan_out", nonlinearity="relu")
    bound = math.sqrt(2) * math.sqrt(3 / (64 * 3))
    a = to_np(w)
    assert np.abs(a).max() <= bound and np.abs(a).max() > 0.95 * bound
    init.kaiming_normal_(w)
    assert abs(to_np(w).std() / (math.sqrt(2 / 1.0001) / math.sqrt(96)) - 1) < 0.1
    init.xavier_uniform_(w, gain=2.0)
    assert np.abs(to_np(w)).max() <= 2.0 * math.sqrt(6 / (96 + 192))
    init.xavier_normal_(w)
    assert abs(to_np(w).std() / math.sqrt(2 / (96 + 192)) - 1) < 0.1
    init.normal_(w, 3.0, 0.5)
    assert abs(to_np(w).mean() - 3) < 0.05 and abs(to_np(w).std() - 0.5) < 0.05
    init.uniform_(w, -1, 2)
    assert to_np(w).min() >= -1 and to_np(w).max() < 2
    init.trunc_normal_(w, std=1.0, a=-0.5, b=0.5)
    assert np.abs(to_np(w)).max() <= 0.5
    init.constant_(w, 0.25)
    assert np.all(to_np(w) == 0.25)
    init.zeros_(w)
    init.ones_(w)
    assert np.all(to_np(w) == 1)
    e = tritorch.empty(3, 4)
    init.eye_(e)
    assert_close(e, np.eye(3, 4))
    for shape in [(5, 3), (3, 5), (4, 2, 3)]:
        q = tritorch.empty(*shape)
        init.orthogonal_(q, gain=2.0)
        m = to_np(q).reshape(shape[0], -1)
        small = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
        np.testing.assert_allclose(small, 4 * np.eye(small.shape[0]), atol=1e-5)
    p = nn.Parameter(tritorch.empty(3, 3))
    init.kaiming_uniform_(p)                            # a leaf that requires grad: filled under no_grad
    assert p.requires_grad and p.grad_fn is None
    with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
        init.kaiming_uniform_(tritorch.empty(0, 3))


def test_init_reproducible_with_manual_seed(device):
    tritorch.manual_seed(123)
    a = to_np(nn.Linear(4, 3, device=device).weight)
    tritorch.manual_seed(123)
    b = to_np(nn.Linear(4, 3, device=device).weight)
    np.testing.assert_array_equal(a, b)


# ---- clipping ----------------------------------------------------------------------------------------------------
def _params_with_grads(device):
    ps = []
    for i, shape in enumerate([(3, 4), (5,), ()]):
        p = nn.Parameter(tritorch.zeros(*shape, device=device))
        g, gr = make(shape, device=device, seed=i + 10)
        p.grad = g
        ps.append((p, gr))
    return ps


@pytest.mark.parametrize("device,norm_type", [("cpu", 2.0), ("cpu", 1.0), ("cpu", math.inf), ("cpu", 3.0),
                                              ("cuda", 2.0), ("cuda", math.inf)])
def test_clip_grad_norm(device, norm_type):
    ps = _params_with_grads(device)
    flat = np.concatenate([gr.reshape(-1) for _, gr in ps])
    total = np.abs(flat).max() if norm_type == math.inf else (np.abs(flat) ** norm_type).sum() ** (1 / norm_type)
    out = nn.utils.clip_grad_norm_([p for p, _ in ps], max_norm=1.0, norm_type=norm_type)
    assert out.ndim == 0 and out.device.type == device
    assert_close(out, total, rtol=1e-5)
    coef = min(1.0, 1.0 / (total + 1e-6))
    for p, gr in ps:
        assert_close(p.grad, gr * coef, rtol=1e-5, atol=1e-6)
    # a norm under the limit leaves the gradients alone
    ps = _params_with_grads(device)
    nn.utils.clip_grad_norm_([p for p, _ in ps], max_norm=1e6, norm_type=norm_type)
    for p, gr in ps:
        assert_close(p.grad, gr)


def test_clip_grad_errors_and_value():
    p = nn.Parameter(tritorch.zeros(3))
    p.grad = tritorch.tensor([1.0, float("inf"), -2.0])
    with pytest.raises(RuntimeError, match="The total norm of order 2.0 for gradients from `parameters` is "
                                           "non-finite"):
        nn.utils.clip_grad_norm_(p, 1.0, error_if_nonfinite=True)
    assert float(nn.utils.clip_grad_norm_([], 1.0)) == 0.0
    p.grad = tritorch.tensor([1.5, -0.2, -3.0])
    nn.utils.clip_grad_value_(p, 1.0)
    assert_close(p.grad, [1.0, -0.2, -1.0])


# ---- end to end ----------------------------------------------------------------------------------------------------
def test_linear_regression_converges_with_manual_sgd():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3))
    W = np.array([[1.5, -2.0, 0.5]])
    Y = X @ W.T + 0.3
    x = tritorch.tensor(X, dtype=tritorch.float32)
    y = tritorch.tensor(Y, dtype=tritorch.float32)
    tritorch.manual_seed(0)
    model = nn.Linear(3, 1)
    for _ in range(150):
        loss = ((model(x) - y) ** 2).sum() / 64
        model.zero_grad()
        loss.backward()
        with tritorch.no_grad():
            for p in model.parameters():
                p.copy_(p - 0.1 * p.grad)
    assert float(loss) < 1e-3
    np.testing.assert_allclose(to_np(model.weight), W, atol=0.02)


def test_full_backward_hooks():
    lin = nn.Linear(3, 2)
    seen = {}

    def hook(m, grad_input, grad_output):
        seen["gi"], seen["go"] = grad_input, grad_output
        return (grad_input[0] * 2,)

    def pre_hook(m, grad_output):
        seen["pre"] = grad_output
        return (grad_output[0] * 10,)

    h = lin.register_full_backward_hook(hook)
    lin.register_full_backward_pre_hook(pre_hook)
    x = tritorch.ones(4, 3, requires_grad=True)
    lin(x).sum().backward()
    w = to_np(lin.weight.detach())
    assert_close(seen["pre"][0], np.ones((4, 2)))
    assert_close(seen["go"][0], 10 * np.ones((4, 2)))
    assert_close(seen["gi"][0], 10 * np.ones((4, 2)) @ w)
    assert_close(x.grad, 20 * np.ones((4, 2)) @ w)          # grad_input replaced by the hook
    assert_close(lin.bias.grad, 40 * np.ones(2))             # parameters see the replaced grad_output
    h.remove()
    seen.clear()
    lin.zero_grad()
    lin(tritorch.ones(1, 3)).sum().backward()                 # no input requires grad: only the pre hook
    assert "gi" not in seen and "pre" in seen

    calls = []
    lin2 = nn.Linear(3, 2)
    lin2.register_full_backward_hook(lambda m, gi, go: calls.append(gi))
    lin2(tritorch.ones(1, 3)).sum().backward()
    assert calls == [(None,)]
