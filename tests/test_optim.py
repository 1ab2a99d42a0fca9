"""tritorch.optim: every optimizer and option against float64 NumPy oracles of PyTorch's documented update rules
(written here, independently of kernels/optim.py), on cpu and cuda (one fused launch per group and dtype)."""
import io

import numpy as np
import pytest

import tritorch
from tritorch import optim
from helpers import assert_close

SHAPES = [(7,), (3, 5), (1,), (0,), (4, 8)]   # the interpreter's block is 32: (4, 8) is one full block


# ====================================================================================================================
# Oracles: one step of PyTorch's algorithm on float64 arrays; `st` is the parameter's state (a dict), `t` the step
# ====================================================================================================================

def sgd_ref(p, g, st, t, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, maximize=False):
    g = -g if maximize else g
    if weight_decay:
        g = g + weight_decay * p
    if momentum:
        if "buf" not in st:
            st["buf"] = g.copy()
        else:
            st["buf"] = momentum * st["buf"] + (1 - dampening) * g
        g = g + momentum * st["buf"] if nesterov else st["buf"]
    return p - lr * g


def adam_ref(p, g, st, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, maximize=False,
             decoupled=False):
    b1, b2 = betas
    g = -g if maximize else g
    if weight_decay:
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
    m = st.get("m", np.zeros_like(p))
    v = st.get("v", np.zeros_like(p))
    st["m"] = m = b1 * m + (1 - b1) * g
    st["v"] = v = b2 * v + (1 - b2) * g * g
    m_hat = m / (1 - b1 ** t)
    if amsgrad:
        st["vmax"] = v = np.maximum(st.get("vmax", np.zeros_like(p)), v)
    v_hat = v / (1 - b2 ** t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps)


def adamw_ref(p, g, st, t, weight_decay=1e-2, **kw):
    return adam_ref(p, g, st, t, weight_decay=weight_decay, decoupled=True, **kw)


def rmsprop_ref(p, g, st, t, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                maximize=False):
    g = -g if maximize else g
    if weight_decay:
        g = g + weight_decay * p
    st["v"] = v = alpha * st.get("v", np.zeros_like(p)) + (1 - alpha) * g * g
    vt = v
    if centered:
        st["ga"] = ga = alpha * st.get("ga", np.zeros_like(p)) + (1 - alpha) * g
        vt = v - ga * ga
    if momentum > 0:
        st["b"] = b = momentum * st.get("b", np.zeros_like(p)) + g / (np.sqrt(vt) + eps)
        return p - lr * b
    return p - lr * g / (np.sqrt(vt) + eps)


def adagrad_ref(p, g, st, t, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
                maximize=False):
    g = -g if maximize else g
    clr = lr / (1 + (t - 1) * lr_decay)
    if weight_decay:
        g = g + weight_decay * p
    st["s"] = s = st.get("s", np.full_like(p, initial_accumulator_value)) + g * g
    return p - clr * g / (np.sqrt(s) + eps)


CASES = [
    (optim.SGD, sgd_ref, dict(lr=0.1)),
    (optim.SGD, sgd_ref, dict(lr=0.1, momentum=0.9)),
    (optim.SGD, sgd_ref, dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.1)),
    (optim.SGD, sgd_ref, dict(lr=0.1, momentum=0.9, nesterov=True, maximize=True)),
    (optim.SGD, sgd_ref, dict(lr=0.05, weight_decay=0.2, maximize=True)),
    (optim.Adam, adam_ref, dict(lr=0.1)),
    (optim.Adam, adam_ref, dict(lr=0.1, betas=(0.8, 0.9), eps=1e-3, weight_decay=0.1)),
    (optim.Adam, adam_ref, dict(lr=0.1, amsgrad=True, maximize=True)),
    (optim.AdamW, adamw_ref, dict(lr=0.1)),
    (optim.AdamW, adamw_ref, dict(lr=0.1, weight_decay=0.3, amsgrad=True)),
    (optim.AdamW, adamw_ref, dict(lr=0.1, weight_decay=0, maximize=True)),
    (optim.RMSprop, rmsprop_ref, dict(lr=0.01)),
    (optim.RMSprop, rmsprop_ref, dict(lr=0.01, alpha=0.9, eps=1e-4, weight_decay=0.1)),
    (optim.RMSprop, rmsprop_ref, dict(lr=0.01, momentum=0.9, centered=True)),
    (optim.RMSprop, rmsprop_ref, dict(lr=0.01, centered=True, maximize=True)),
    (optim.RMSprop, rmsprop_ref, dict(lr=0.01, momentum=0.5)),
    (optim.Adagrad, adagrad_ref, dict(lr=0.1)),
    (optim.Adagrad, adagrad_ref, dict(lr=0.1, lr_decay=0.5, initial_accumulator_value=0.3)),
    (optim.Adagrad, adagrad_ref, dict(lr=0.1, weight_decay=0.2, eps=1e-3, maximize=True)),
]
IDS = [f"{c.__name__}-" + "-".join(f"{k}={v}" for k, v in kw.items()) for c, _, kw in CASES]


def _grads(shapes, steps, seed):
    rng = np.random.default_rng(seed)
    return [[rng.uniform(-1, 1, size=s) for s in shapes] for _ in range(steps)]


def _run(cls, ref, kw, device, dtype, shapes, steps=3, group2=None, seed=0):
    """Optimize params of ``shapes`` (and, with ``group2``, a second group of two params with those options) for
    ``steps`` steps with fixed random gradients; compare with the oracle, rounding params to ``dtype`` each step
    as the optimizer stores them. One extra param without a gradient must stay untouched."""
    rng = np.random.default_rng(seed + 1)
    shapes2 = [(4,), (2, 3)] if group2 is not None else []
    init = [rng.uniform(-1, 1, size=s) for s in shapes + shapes2]

    def rnd(a):
        return a.astype(dtype.np).astype(np.float64)

    ps = [tritorch.tensor(a, dtype=dtype, device=device, requires_grad=True) for a in init]
    frozen = tritorch.tensor([1.5, -2.5], dtype=dtype, device=device, requires_grad=True)
    groups = [{"params": ps[:len(shapes)] + [frozen]}]
    if group2 is not None:
        groups.append({"params": ps[len(shapes):], **group2})
    opt = cls(groups, **kw)
    ref_p = [rnd(a) for a in init]
    ref_st = [{} for _ in init]
    grads = _grads(shapes + shapes2, steps, seed)
    for t in range(1, steps + 1):
        for p, g in zip(ps, grads[t - 1]):
            p.grad = tritorch.tensor(g, dtype=dtype, device=device)
        opt.step()
        for i in range(len(init)):
            hyper = dict(kw, **(group2 if i >= len(shapes) else {}))
            ref_p[i] = rnd(ref(ref_p[i], rnd(grads[t - 1][i]), ref_st[i], t, **hyper))
        for i, p in enumerate(ps):
            assert_close(p, ref_p[i], dtype, msg=f"step {t} param {i}")
    assert frozen.tolist() == [1.5, -2.5]
    if cls is not optim.Adagrad:
        assert frozen not in opt.state or not opt.state[frozen]
    return opt, ps


@pytest.mark.parametrize("cls,ref,kw", CASES, ids=IDS)
def test_update_rules(cls, ref, kw, device):
    group2 = {"lr": kw["lr"] / 2}
    if cls is optim.Adam or cls is optim.AdamW:
        group2["betas"] = (0.5, 0.6)
    elif cls is optim.SGD and kw.get("momentum"):
        group2["dampening"] = 0.0 if kw.get("nesterov") else 0.5
    elif cls is optim.RMSprop:
        group2["centered"] = not kw.get("centered", False)
    _run(cls, ref, kw, device, tritorch.float32, SHAPES, group2=group2)


@pytest.mark.parametrize("dtype", [tritorch.float16, tritorch.bfloat16, tritorch.float64], ids=str)
@pytest.mark.parametrize("cls,ref,kw", [CASES[i] for i in (2, 7, 9, 13, 17)], ids=[IDS[i] for i in (2, 7, 9, 13, 17)])
def test_dtypes(cls, ref, kw, dtype, device):
    """Half params: float32 arithmetic and float32 state, the param rounded to its type after each step."""
    opt, ps = _run(cls, ref, kw, device, dtype, [(5,), (2, 9)], steps=2)
    for st in opt.state.values():
        for name, v in st.items():
            expected = tritorch.float64 if dtype is tritorch.float64 else tritorch.float32
            assert v.dtype is (tritorch.float32 if name == "step" else expected)


def test_mixed_dtypes_one_group(device):
    """One group holding float32, float16 and float64 params: one launch per dtype, each rule as for its type."""
    kw = dict(lr=0.1, amsgrad=True)
    dts = [tritorch.float32, tritorch.float16, tritorch.float64, tritorch.float32]
    rng = np.random.default_rng(3)
    init = [rng.uniform(-1, 1, size=(3 + i,)) for i in range(4)]
    ps = [tritorch.tensor(a, dtype=d, device=device, requires_grad=True) for a, d in zip(init, dts)]
    opt = optim.Adam(ps, **kw)
    ref_p = [a.astype(d.np).astype(np.float64) for a, d in zip(init, dts)]
    st = [{} for _ in ps]
    for t in (1, 2):
        for i, p in enumerate(ps):
            g = rng.uniform(-1, 1, size=p.shape)
            p.grad = tritorch.tensor(g, dtype=dts[i], device=device)
            g = g.astype(dts[i].np).astype(np.float64)
            ref_p[i] = adam_ref(ref_p[i], g, st[i], t, **kw).astype(dts[i].np).astype(np.float64)
        opt.step()
    for p, r, d in zip(ps, ref_p, dts):
        assert_close(p, r, d)


def test_missed_steps_keep_own_step_count(device):
    """A param without a gradient on some step keeps its own step count (its bias correction differs)."""
    kw = dict(lr=0.1)
    rng = np.random.default_rng(5)
    init = [rng.uniform(-1, 1, size=(6,)), rng.uniform(-1, 1, size=(3,))]
    ps = [tritorch.tensor(a, dtype=tritorch.float32, device=device, requires_grad=True) for a in init]
    opt = optim.Adam(ps, **kw)
    ref_p = [a.astype(np.float32).astype(np.float64) for a in init]
    st, steps = [{}, {}], [0, 0]
    for k in range(3):
        for i, p in enumerate(ps):
            if i == 1 and k == 1:
                p.grad = None
                continue
            g = rng.uniform(-1, 1, size=p.shape).astype(np.float32)
            p.grad = tritorch.tensor(g, device=device)
            steps[i] += 1
            ref_p[i] = adam_ref(ref_p[i], g.astype(np.float64), st[i], steps[i], **kw)
        opt.step()
    assert [opt.state[p]["step"].item() for p in ps] == [3.0, 2.0]
    for p, r in zip(ps, ref_p):
        assert_close(p, r, tritorch.float32)


def test_strided_param(device):
    """A non-contiguous leaf (a transposed view) is updated in place through its strides."""
    base = np.arange(6, dtype=np.float64).reshape(2, 3) / 7
    p = tritorch.tensor(base, dtype=tritorch.float32, device=device).t().requires_grad_()
    g = np.linspace(-1, 1, 6).reshape(3, 2)
    p.grad = tritorch.tensor(g, dtype=tritorch.float32, device=device)
    opt = optim.SGD([p], lr=0.5, momentum=0.9)
    opt.step()
    opt.step()
    st = {}
    r = sgd_ref(base.T.astype(np.float32), g, st, 1, lr=0.5, momentum=0.9)
    r = sgd_ref(r, g, st, 2, lr=0.5, momentum=0.9)
    assert_close(p, r, tritorch.float32)


def test_sgd_no_momentum_no_state(device):
    p = tritorch.tensor([1.0, 2.0], device=device, requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    p.grad = tritorch.tensor([1.0, 1.0], device=device)
    opt.step()
    assert opt.state_dict()["state"] == {}
    assert_close(p, [0.9, 1.9])


def test_version_bumped_and_no_graph(device):
    p = tritorch.tensor([1.0, 2.0], device=device, requires_grad=True)
    p.grad = tritorch.tensor([1.0, 1.0], device=device)
    v = p._version
    optim.Adam([p]).step()
    assert p._version > v and p.grad_fn is None and p.requires_grad


# ====================================================================================================================
# The Optimizer API
# ====================================================================================================================

def _params(device="cpu", n=3):
    return [tritorch.tensor(np.linspace(-1, 1, k + 2), dtype=tritorch.float32, device=device, requires_grad=True)
            for k in range(n)]


def test_param_groups_defaults_and_add():
    ps = _params(n=3)
    opt = optim.SGD([{"params": ps[:2]}, {"params": ps[2], "lr": 0.5}], lr=0.1, momentum=0.9)
    g0, g1 = opt.param_groups
    assert g0["lr"] == 0.1 and g1["lr"] == 0.5 and g1["momentum"] == 0.9 and g1["params"] == [ps[2]]
    assert set(g0) == {"params", "lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize", "foreach",
                       "differentiable", "fused"}
    q = _params(n=1)[0]
    opt.add_param_group({"params": [q], "weight_decay": 0.1})
    assert opt.param_groups[2]["lr"] == 0.1 and opt.param_groups[2]["weight_decay"] == 0.1
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        opt.add_param_group({"params": [q]})
    with pytest.raises(TypeError, match="param_group must be a dict, but got list"):
        opt.add_param_group([q])
    with pytest.raises(TypeError, match="ordered collections"):
        opt.add_param_group({"params": {tritorch.zeros(2, requires_grad=True)}})
    assert "Parameter Group 2" in repr(opt) and "    lr: 0.1" in repr(opt)


def test_constructor_errors():
    p = _params(n=1)[0]
    with pytest.raises(TypeError, match="should be an iterable of Tensors or dicts, but got tritorch.Tensor"):
        optim.SGD(p)
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        optim.Adam([])
    with pytest.raises(TypeError, match="optimizer can only optimize Tensors, but one of the params is int"):
        optim.Adam([1])
    with pytest.raises(ValueError, match="can't optimize a non-leaf Tensor"):
        optim.Adam([p * 2])


@pytest.mark.parametrize("cls,kw,msg", [
    (optim.SGD, dict(lr=-1), "Invalid learning rate: -1"),
    (optim.SGD, dict(momentum=-0.5), "Invalid momentum value: -0.5"),
    (optim.SGD, dict(weight_decay=-1), "Invalid weight_decay value: -1"),
    (optim.SGD, dict(nesterov=True), "Nesterov momentum requires a momentum and zero dampening"),
    (optim.SGD, dict(nesterov=True, momentum=0.9, dampening=0.1), "Nesterov momentum requires a momentum"),
    (optim.Adam, dict(lr=-1), "Invalid learning rate: -1"),
    (optim.Adam, dict(eps=-1e-8), "Invalid epsilon value: -1e-08"),
    (optim.Adam, dict(betas=(1.0, 0.999)), "Invalid beta parameter at index 0: 1.0"),
    (optim.AdamW, dict(betas=(0.9, -0.1)), r"Invalid beta parameter at index 1: -0.1"),
    (optim.AdamW, dict(weight_decay=-0.1), "Invalid weight_decay value: -0.1"),
    (optim.RMSprop, dict(alpha=-0.1), "Invalid alpha value: -0.1"),
    (optim.RMSprop, dict(momentum=-1), "Invalid momentum value: -1"),
    (optim.RMSprop, dict(eps=-1), "Invalid epsilon value: -1"),
    (optim.Adagrad, dict(lr_decay=-1), "Invalid lr_decay value: -1"),
    (optim.Adagrad, dict(initial_accumulator_value=-1), "Invalid initial_accumulator_value value: -1"),
    (optim.Adagrad, dict(lr=-0.5), "Invalid learning rate: -0.5"),
])
def test_invalid_hyperparameters(cls, kw, msg):
    with pytest.raises(ValueError, match=msg):
        cls(_params(n=1), **kw)


def test_integer_param_refused():
    p = tritorch.tensor([1, 2])
    opt = optim.SGD([p], lr=0.1)
    p._grad = tritorch.tensor([1, 1])
    with pytest.raises(RuntimeError, match="floating-point parameters only, got a parameter of dtype"):
        opt.step()


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad(set_to_none, device):
    ps = _params(device, 2)
    opt = optim.SGD(ps, lr=0.1)
    (ps[0].sum() + ps[1].sum()).backward()
    opt.zero_grad(set_to_none=set_to_none) if not set_to_none else opt.zero_grad()
    for p in ps:
        if set_to_none:
            assert p.grad is None
        else:
            assert p.grad.tolist() == [0.0] * p.numel() and not p.grad.requires_grad


def test_closure_and_loss(device):
    p = tritorch.tensor([3.0], device=device, requires_grad=True)
    opt = optim.SGD([p], lr=0.25)
    calls = []

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        calls.append(tritorch.is_grad_enabled())
        return loss

    with tritorch.no_grad():
        loss = opt.step(closure)
    assert calls == [True] and loss.item() == 9.0
    assert_close(p, [1.5])
    assert opt.step() is None


# ====================================================================================================================
# state_dict
# ====================================================================================================================

@pytest.mark.parametrize("cls,kw", [
    (optim.SGD, dict(lr=0.1, momentum=0.9)), (optim.Adam, dict(lr=0.1, amsgrad=True)), (optim.AdamW, dict(lr=0.1)),
    (optim.RMSprop, dict(momentum=0.5, centered=True)), (optim.Adagrad, dict(lr=0.1, lr_decay=0.1)),
], ids=["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_state_dict_round_trip_resumes_bit_identically(cls, kw, device):
    rng = np.random.default_rng(0)
    init = [rng.uniform(-1, 1, size=s) for s in [(5,), (2, 3), (4,)]]

    def make():
        return [tritorch.tensor(a, dtype=d, device=device, requires_grad=True)
                for a, d in zip(init, [tritorch.float32, tritorch.float32, tritorch.float16])]

    grads = _grads([(5,), (2, 3), (4,)], 4, 7)

    def step(opt, ps, gs):
        for p, g in zip(ps, gs):
            p.grad = tritorch.tensor(g, dtype=p.dtype, device=device)
        opt.step()

    ps = make()
    opt = cls([{"params": ps[:2]}, {"params": ps[2:], "lr": 0.05}], **kw)
    step(opt, ps, grads[0])
    step(opt, ps, grads[1])
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert set(sd["state"]) == {0, 1, 2} and sd["param_groups"][1]["lr"] == 0.05
    buf = io.BytesIO()
    tritorch.save(sd, buf)
    buf.seek(0)
    loaded = tritorch.load(buf)
    ps2 = [tritorch.tensor(p.detach().cpu().numpy(), dtype=p.dtype, device=device, requires_grad=True) for p in ps]
    opt2 = cls([{"params": ps2[:2]}, {"params": ps2[2:]}], lr=123.0)
    opt2.load_state_dict(loaded)
    assert opt2.param_groups[1]["lr"] == 0.05 and opt2.param_groups[1]["params"][0] is ps2[2]
    for gs in grads[2:]:
        step(opt, ps, gs)
        step(opt2, ps2, gs)
    for a, b in zip(ps, ps2):
        np.testing.assert_array_equal(a.detach().cpu().numpy(), b.detach().cpu().numpy())
    for a, b in zip(ps, ps2):
        for k, v in opt.state[a].items():
            np.testing.assert_array_equal(v.cpu().numpy(), opt2.state[b][k].cpu().numpy())


def test_load_state_dict_casts_to_param_device_and_state_dtype():
    p = tritorch.tensor([1.0, 2.0], dtype=tritorch.float16, device="cuda", requires_grad=True)
    opt = optim.Adam([p])
    sd = {"state": {0: {"step": tritorch.tensor(3.0), "exp_avg": tritorch.tensor([0.5, 0.25], dtype=tritorch.float64),
                        "exp_avg_sq": tritorch.tensor([1.0, 2.0])}},
          "param_groups": [dict(opt.state_dict()["param_groups"][0])]}
    opt.load_state_dict(sd)
    st = opt.state[p]
    assert st["exp_avg"].device == p.device and st["exp_avg"].dtype is tritorch.float32
    assert st["exp_avg"] is not sd["state"][0]["exp_avg"] and st["step"].device.type == "cpu"
    p.grad = tritorch.tensor([0.1, 0.1], dtype=tritorch.float16, device="cuda")
    opt.step()
    assert st["step"].item() == 4.0


def test_load_state_dict_mismatch_errors():
    ps = _params(n=3)
    opt = optim.Adam([{"params": ps[:2]}, {"params": ps[2:]}])
    with pytest.raises(ValueError, match="loaded state dict has a different number of parameter groups"):
        optim.Adam(ps).load_state_dict(opt.state_dict())
    with pytest.raises(ValueError, match="doesn't match the size of optimizer's group"):
        optim.Adam([{"params": ps[:1]}, {"params": ps[1:]}]).load_state_dict(opt.state_dict())
    for p in ps:
        p.grad = tritorch.ones(p.shape)
    opt.step()
    other = [tritorch.zeros(9, requires_grad=True), *ps[1:]]
    with pytest.raises(ValueError, match=r"exp_avg of shape \(2,\) for a parameter of shape \(9,\)"):
        optim.Adam([{"params": other[:2]}, {"params": other[2:]}]).load_state_dict(opt.state_dict())


def test_one_launch_per_group_and_dtype(monkeypatch):
    """cuda: each step launches the rule's kernel once per (group, dtype), whatever the number of tensors."""
    from tritorch.kernels import optim as K
    launches = []
    rule = K.RULES["adam"]

    class Counting:
        def __getitem__(self, grid):
            launches.append(grid)
            return rule.kernel[grid]

    monkeypatch.setitem(K.RULES, "adam", K.Rule(Counting(), rule.ref, rule.nstates))
    g1 = [tritorch.zeros(n, device="cuda", dtype=d, requires_grad=True)
          for n, d in [(3, tritorch.float32), (40, tritorch.float32), (5, tritorch.float16), (2, tritorch.float32)]]
    g2 = [tritorch.zeros(n, device="cuda", requires_grad=True) for n in (7, 9)]
    opt = optim.Adam([{"params": g1}, {"params": g2}])
    for p in g1 + g2:
        p.grad = tritorch.ones(p.shape, dtype=p.dtype, device="cuda")
    opt.step()
    assert len(launches) == 3


def test_load_pytorch_style_none_momentum_buffer(device):
    """Older PyTorch checkpoints store ``momentum_buffer: None``; the buffer then starts from the gradient."""
    p = tritorch.tensor([1.0, 2.0], device=device, requires_grad=True)
    opt = optim.SGD([p], lr=0.1, momentum=0.9, dampening=0.5)
    sd = opt.state_dict()
    sd["state"] = {0: {"momentum_buffer": None}}
    opt.load_state_dict(sd)
    p.grad = tritorch.tensor([1.0, 1.0], device=device)
    opt.step()
    assert_close(p, [0.9, 1.9])
    assert_close(opt.state[p]["momentum_buffer"], [1.0, 1.0])


def test_custom_optimizer_on_the_base_class():
    """A user optimizer written against the base API (param groups, per-param state) works as in PyTorch."""

    class SignSGD(optim.Optimizer):
        def __init__(self, params, lr=0.1):
            super().__init__(params, dict(lr=lr))

        @tritorch.no_grad()
        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        self.state[p]["n"] = self.state[p].get("n", 0) + 1
                        p.sub_(p.grad.sign() * group["lr"])

    p = tritorch.tensor([1.0, -1.0], requires_grad=True)
    opt = SignSGD([p])
    p.grad = tritorch.tensor([0.3, -2.0])
    opt.step()
    assert_close(p, [0.9, -0.9])
    assert opt.state_dict()["state"] == {0: {"n": 1}}


def test_named_parameters():
    a, b = _params(n=2)
    opt = optim.Adam([("w", a), ("b", b)])
    assert opt.param_groups[0]["params"] == [a, b] and opt.param_groups[0]["param_names"] == ["w", "b"]
    assert opt.state_dict()["param_groups"][0]["param_names"] == ["w", "b"]
    with pytest.raises(ValueError, match="all optimizer param groups must contain or not contain param_names"):
        opt.add_param_group({"params": _params(n=1)})


# ====================================================================================================================
# Adadelta, Adamax, NAdam, RAdam against torch.optim (the oracle), LBFGS against torch's trajectory
# ====================================================================================================================

try:                                    # PyTorch is the oracle where it is installed
    import torch  # noqa: E402
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch (the oracle) is not installed")

TORCH_CASES = [
    ("Adadelta", {}),
    ("Adadelta", dict(lr=0.5, rho=0.8, eps=1e-4, weight_decay=0.1, maximize=True)),
    ("Adamax", {}),
    ("Adamax", dict(lr=0.05, betas=(0.8, 0.9), eps=1e-3, weight_decay=0.1, maximize=True)),
    ("NAdam", {}),
    ("NAdam", dict(lr=0.05, betas=(0.8, 0.95), weight_decay=0.1, momentum_decay=0.01)),
    ("NAdam", dict(lr=0.05, weight_decay=0.2, decoupled_weight_decay=True, maximize=True)),
    ("RAdam", {}),
    ("RAdam", dict(lr=0.05, betas=(0.5, 0.6), weight_decay=0.1)),
    ("RAdam", dict(lr=0.05, weight_decay=0.2, decoupled_weight_decay=True, maximize=True)),
]


def _against_torch(name, kw, device, steps=8, dtype=tritorch.float32, rtol=2e-5, atol=2e-6):
    """Two param groups (the second with half the lr) and a param without gradient; fixed random gradients each
    step; the params compared with torch.optim's after every step, the state at the end."""
    rng = np.random.default_rng(3)
    shapes = [(7,), (3, 5), (1,), (0,), (33,)]
    init = [rng.uniform(-1, 1, size=s).astype(np.float32) for s in shapes]
    grads = [[rng.uniform(-1, 1, size=s).astype(np.float32) for s in shapes] for _ in range(steps)]
    tps = [torch.tensor(a, dtype=torch.float64 if dtype is tritorch.float64 else torch.float32, requires_grad=True)
           for a in init]
    ups = [tritorch.tensor(a, dtype=dtype, device=device, requires_grad=True) for a in init]
    frozen = tritorch.tensor([1.5, -2.5], device=device, dtype=dtype, requires_grad=True)
    lr2 = kw.get("lr", getattr(torch.optim, name)([torch.zeros(1, requires_grad=True)]).defaults["lr"]) / 2
    topt = getattr(torch.optim, name)([{"params": tps[:3]}, {"params": tps[3:], "lr": lr2}], **kw)
    uopt = getattr(optim, name)([{"params": ups[:3] + [frozen]}, {"params": ups[3:], "lr": lr2}], **kw)
    for t in range(steps):
        for tp, up, g in zip(tps, ups, grads[t]):
            tp.grad = torch.tensor(g, dtype=tp.dtype)
            up.grad = tritorch.tensor(g, dtype=dtype, device=device)
        topt.step()
        uopt.step()
        for i, (tp, up) in enumerate(zip(tps, ups)):
            np.testing.assert_allclose(up.detach().cpu().numpy(), tp.detach().numpy(), rtol=rtol, atol=atol,
                                       err_msg=f"{name} step {t + 1} param {i}")
    assert frozen.tolist() == [1.5, -2.5] and not uopt.state[frozen]
    for tp, up in zip(tps, ups):
        ts, us = topt.state[tp], uopt.state[up]
        assert sorted(ts) == sorted(us)
        for k in ts:
            np.testing.assert_allclose(us[k].cpu().numpy(), ts[k].numpy(), rtol=1e-4, atol=1e-6, err_msg=k)
    return uopt


@needs_torch
@pytest.mark.parametrize("name,kw", TORCH_CASES, ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}"
                                                      for n, kw in TORCH_CASES])
def test_against_torch_optim(name, kw, device):
    opt = _against_torch(name, kw, device)
    ref = getattr(torch.optim, name)([torch.zeros(1, requires_grad=True)], **kw)
    assert {k: v for k, v in opt.defaults.items()} == ref.defaults


@needs_torch
@pytest.mark.parametrize("name", ["Adadelta", "Adamax", "NAdam", "RAdam"])
def test_new_optimizers_float64_and_half(name, device):
    _against_torch(name, dict(lr=0.05, weight_decay=0.1), device, steps=4, dtype=tritorch.float64, rtol=1e-10,
                   atol=1e-12)
    ps = [tritorch.tensor([0.5, -0.25, 1.0], dtype=tritorch.float16, device=device, requires_grad=True)]
    opt = getattr(optim, name)(ps, lr=0.05)
    ps[0].grad = tritorch.tensor([1.0, -1.0, 0.5], dtype=tritorch.float16, device=device)
    opt.step()
    assert ps[0].dtype is tritorch.float16
    assert all(v.dtype is tritorch.float32 for v in opt.state[ps[0]].values())
    tp = torch.tensor([0.5, -0.25, 1.0], requires_grad=True)
    topt = getattr(torch.optim, name)([tp], lr=0.05)
    tp.grad = torch.tensor([1.0, -1.0, 0.5])
    topt.step()
    np.testing.assert_allclose(ps[0].float().tolist(), tp.tolist(), rtol=2e-3, atol=1e-3)


@pytest.mark.parametrize("name", ["Adadelta", "Adamax", "NAdam", "RAdam"])
def test_new_optimizers_one_launch_per_group_and_dtype(name, monkeypatch):
    from tritorch.kernels import optim as K
    rule_name = name.lower()
    rule = K.RULES[rule_name]
    launches = []

    class Counting:
        def __getitem__(self, grid):
            launches.append(grid)
            return rule.kernel[grid]

    monkeypatch.setitem(K.RULES, rule_name, K.Rule(Counting(), rule.ref, rule.nstates))
    g1 = [tritorch.zeros(n, device="cuda", dtype=d, requires_grad=True)
          for n, d in [(3, tritorch.float32), (40, tritorch.float32), (5, tritorch.float16)]]
    g2 = [tritorch.zeros(n, device="cuda", requires_grad=True) for n in (7, 9)]
    opt = getattr(optim, name)([{"params": g1}, {"params": g2}])
    for p in g1 + g2:
        p.grad = tritorch.ones(p.shape, dtype=p.dtype, device="cuda")
    opt.step()
    assert len(launches) == 3


@pytest.mark.parametrize("name,kw,msg", [
    ("Adadelta", dict(rho=1.5), "Invalid rho value: 1.5"),
    ("Adamax", dict(betas=(0.9, 1.0)), "Invalid beta parameter at index 1: 1.0"),
    ("NAdam", dict(momentum_decay=-1), "Invalid momentum_decay value: -1"),
    ("RAdam", dict(eps=-1), "Invalid epsilon value: -1"),
    ("LBFGS", dict(lr=-1), "Invalid learning rate: -1"),
])
def test_new_optimizers_invalid_hyperparameters(name, kw, msg):
    if torch is not None:               # the message is PyTorch's own
        with pytest.raises(ValueError, match=msg):
            getattr(torch.optim, name)([torch.zeros(1, requires_grad=True)], **kw)
    with pytest.raises(ValueError, match=msg):
        getattr(optim, name)([tritorch.zeros(1, requires_grad=True)], **kw)


def test_new_optimizers_state_dict_resume(device):
    """Save after 2 steps, load into a fresh optimizer, continue: identical to running on (NAdam's mu_product too)."""
    for name in ("NAdam", "RAdam", "Adadelta", "Adamax"):
        def run(resume):
            p = tritorch.tensor([0.5, -1.0, 2.0], device=device, requires_grad=True)
            opt = getattr(optim, name)([p], lr=0.1)
            for t in range(4):
                if resume and t == 2:
                    sd = opt.state_dict()
                    opt = getattr(optim, name)([p], lr=0.1)
                    opt.load_state_dict(sd)
                p.grad = tritorch.tensor([0.3 * t - 0.5, 0.2, -0.1 * t], device=device)
                opt.step()
            return p.tolist()
        assert run(True) == run(False), name


# ---- LBFGS ---------------------------------------------------------------------------------------------------------

def _lbfgs_problem(lib, device=None):
    """A small least-squares + quartic problem with two parameter tensors."""
    rng = np.random.default_rng(0)
    A = rng.normal(size=(6, 4))
    b = rng.normal(size=6)
    kw = {} if device is None else dict(device=device)
    A_, b_ = lib.tensor(A, dtype=lib.float64, **kw), lib.tensor(b, dtype=lib.float64, **kw)
    w = lib.tensor([0.5, -0.3, 0.8, 0.1], dtype=lib.float64, requires_grad=True, **kw)
    c = lib.tensor([0.2], dtype=lib.float64, requires_grad=True, **kw)

    def loss_fn():
        r = A_ @ w + c - b_
        return (r * r).sum() + 0.1 * (w ** 4).sum()
    return [w, c], loss_fn


@needs_torch
@pytest.mark.parametrize("kw", [dict(), dict(line_search_fn="strong_wolfe"),
                                dict(lr=0.5, history_size=3, max_iter=5),
                                dict(history_size=2, max_iter=7, line_search_fn="strong_wolfe",
                                     tolerance_change=1e-6)],
                         ids=["default", "strong_wolfe", "history3-iter5", "wolfe-history2-iter7"])
def test_lbfgs_follows_torch_trajectory(kw, device):
    tparams, tloss = _lbfgs_problem(torch)
    uparams, uloss = _lbfgs_problem(tritorch, device)
    topt = torch.optim.LBFGS(tparams, **kw)
    uopt = optim.LBFGS(uparams, **kw)
    calls = {"t": 0, "u": 0}

    def closure(opt, loss_fn, key):
        def c():
            calls[key] += 1
            opt.zero_grad()
            loss = loss_fn()
            loss.backward()
            return loss
        return c

    for _ in range(3):
        lt = topt.step(closure(topt, tloss, "t"))
        lu = uopt.step(closure(uopt, uloss, "u"))
        assert abs(lt.item() - lu.item()) <= 1e-8 * max(1.0, abs(lt.item()))
        for tp, up in zip(tparams, uparams):
            np.testing.assert_allclose(up.detach().cpu().numpy(), tp.detach().numpy(), rtol=1e-7, atol=1e-9)
        assert calls["u"] == calls["t"]
        ts, us = topt.state[tparams[0]], uopt.state[uparams[0]]
        assert (us["func_evals"], us["n_iter"], len(us["old_dirs"])) == \
            (ts["func_evals"], ts["n_iter"], len(ts["old_dirs"]))
    assert float(uloss()) < 1.0


def test_lbfgs_stops_at_tolerance_and_rules():
    p = tritorch.zeros(3, requires_grad=True)
    opt = optim.LBFGS([p])
    n = []

    def closure():
        n.append(1)
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss
    assert float(opt.step(closure)) == 0.0 and len(n) == 1            # at the optimum: one evaluation, no move
    assert opt.defaults["max_eval"] == 25 and optim.LBFGS([p], max_iter=8).defaults["max_eval"] == 10
    with pytest.raises(ValueError, match="LBFGS doesn't support per-parameter options"):
        optim.LBFGS([{"params": [p]}, {"params": [tritorch.zeros(1, requires_grad=True)]}])
    q = tritorch.ones(2, requires_grad=True)
    bad = optim.LBFGS([q], line_search_fn="armijo")

    def closure2():
        bad.zero_grad()
        loss = (q * q).sum()
        loss.backward()
        return loss
    with pytest.raises(RuntimeError, match="only 'strong_wolfe' is supported"):
        bad.step(closure2)


def test_lbfgs_state_dict_round_trip_resumes(tmp_path, device):
    """LBFGS's state (flat direction, history lists, floats) survives state_dict / save / load: a resumed run
    continues exactly as the uninterrupted one, as in PyTorch."""
    def run(resume):
        params, loss_fn = _lbfgs_problem(tritorch, device)
        opt = optim.LBFGS(params, history_size=4, max_iter=4)

        def closure():
            opt.zero_grad()
            loss = loss_fn()
            loss.backward()
            return loss
        for i in range(3):
            if resume and i == 2:
                tritorch.save(opt.state_dict(), tmp_path / "lbfgs.pt")
                opt = optim.LBFGS(params, history_size=4, max_iter=4)
                opt.load_state_dict(tritorch.load(tmp_path / "lbfgs.pt"))
            opt.step(closure)
        return [p.tolist() for p in params]
    assert run(True) == run(False)
