"""tritorch.optim.lr_scheduler against closed-form rates (PyTorch's schedules written out here)."""
import math
import warnings

import pytest

import tritorch
from tritorch import optim
from tritorch.optim import lr_scheduler as S


def _opt(lrs=(0.1, 0.02), cls=optim.SGD, **kw):
    groups = [{"params": [tritorch.zeros(2, requires_grad=True)], "lr": lr} for lr in lrs]
    return cls(groups, **kw)


def _trace(sched, n):
    """Rates of every group for epochs 0..n-1 (epoch 0 is what construction set)."""
    out = [list(sched.get_last_lr())]
    for _ in range(n - 1):
        sched.optimizer.step()
        sched.step()
        out.append(list(sched.get_last_lr()))
        assert out[-1] == [g["lr"] for g in sched.optimizer.param_groups]
    return out


def _close(trace, expected):
    assert len(trace) == len(expected)
    for e, (a, b) in enumerate(zip(trace, expected)):
        assert a == pytest.approx(b, rel=1e-12, abs=1e-12), f"epoch {e}"


BASE = (0.1, 0.02)


@pytest.mark.parametrize("make,closed", [
    (lambda o: S.StepLR(o, step_size=3, gamma=0.5), lambda b, e: b * 0.5 ** (e // 3)),
    (lambda o: S.MultiStepLR(o, milestones=[2, 5, 5, 9], gamma=0.1),
     lambda b, e: b * 0.1 ** sum(m <= e for m in [2, 5, 5, 9])),
    (lambda o: S.ExponentialLR(o, gamma=0.9), lambda b, e: b * 0.9 ** e),
    (lambda o: S.CosineAnnealingLR(o, T_max=4),
     lambda b, e: (b * (1 + math.cos(math.pi * e / 4)) / 2)),
    (lambda o: S.CosineAnnealingLR(o, T_max=5, eta_min=0.001),
     lambda b, e: 0.001 + (b - 0.001) * (1 + math.cos(math.pi * e / 5)) / 2),
    (lambda o: S.LambdaLR(o, lambda e: 1 / (e + 1)), lambda b, e: b / (e + 1)),
    (lambda o: S.ConstantLR(o, factor=0.25, total_iters=4), lambda b, e: b * (0.25 if e < 4 else 1.0)),
    (lambda o: S.LinearLR(o, start_factor=0.2, end_factor=0.9, total_iters=6),
     lambda b, e: b * (0.2 + 0.7 * min(e, 6) / 6)),
], ids=["step", "multistep", "exponential", "cosine", "cosine-eta_min", "lambda", "constant", "linear"])
def test_closed_forms(make, closed):
    sched = make(_opt())
    assert sched.last_epoch == 0 and sched.base_lrs == list(BASE)
    _close(_trace(sched, 14), [[closed(b, e) for b in BASE] for e in range(14)])
    assert sched.last_epoch == 13


def test_lambda_per_group_and_errors():
    opt = _opt()
    sched = S.LambdaLR(opt, [lambda e: 0.5 ** e, lambda e: e + 1])
    _close(_trace(sched, 4), [[0.1 * 0.5 ** e, 0.02 * (e + 1)] for e in range(4)])
    with pytest.raises(ValueError, match="Expected 2 lr_lambdas, but got 1"):
        S.LambdaLR(_opt(), [lambda e: 1])


def test_step_with_epoch_uses_closed_form():
    sched = S.CosineAnnealingLR(_opt(), T_max=10, eta_min=0.0)
    with pytest.warns(UserWarning, match="epoch parameter"):
        sched.step(7)
    assert sched.get_last_lr() == pytest.approx([b * (1 + math.cos(math.pi * 7 / 10)) / 2 for b in BASE])
    sched = S.StepLR(_opt(), step_size=2, gamma=0.5)
    with pytest.warns(UserWarning):
        sched.step(5)
    assert sched.get_last_lr() == pytest.approx([b * 0.25 for b in BASE])


def _one_cycle(b_max, e, total, pct, anneal, three_phase, div=25.0, final_div=1e4):
    init = b_max / div
    low = init / final_div
    f = (lambda s, t, x: t + (s - t) / 2 * (math.cos(math.pi * x) + 1)) if anneal == "cos" else \
        (lambda s, t, x: s + (t - s) * x)
    p1 = pct * total - 1
    if three_phase:
        p2 = 2 * pct * total - 2
        if e <= p1:
            return f(init, b_max, e / p1)
        if e <= p2:
            return f(b_max, init, (e - p1) / (p2 - p1))
        return f(init, low, (e - p2) / (total - 1 - p2))
    if e <= p1:
        return f(init, b_max, e / p1)
    return f(b_max, low, (e - p1) / (total - 1 - p1))


@pytest.mark.parametrize("anneal", ["cos", "linear"])
@pytest.mark.parametrize("three_phase", [False, True])
def test_one_cycle(anneal, three_phase):
    opt = _opt(cls=optim.SGD, momentum=0.9)
    sched = S.OneCycleLR(opt, max_lr=[1.0, 0.5], total_steps=20, pct_start=0.3, anneal_strategy=anneal,
                         three_phase=three_phase)
    tr = _trace(sched, 20)
    _close(tr, [[_one_cycle(m, e, 20, 0.3, anneal, three_phase) for m in (1.0, 0.5)] for e in range(20)])
    # the momentum moves opposite to the rate: back at max_momentum (0.95) at the end
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.95)
    sched.step()
    with pytest.raises(ValueError, match="Tried to step 21 times. The specified number of total steps is 20"):
        sched.step()


def test_one_cycle_cycles_adam_beta1():
    opt = _opt(cls=optim.Adam, betas=(0.9, 0.99))
    sched = S.OneCycleLR(opt, max_lr=0.01, epochs=2, steps_per_epoch=5)
    assert sched.total_steps == 10 and opt.param_groups[0]["betas"] == (0.95, 0.99)
    for _ in range(2):
        sched.step()
    p1 = 0.3 * 10 - 1
    expected = 0.85 + (0.95 - 0.85) / 2 * (math.cos(math.pi * 2 / p1) + 1)
    assert opt.param_groups[1]["betas"][0] == pytest.approx(expected) and opt.param_groups[1]["betas"][1] == 0.99


@pytest.mark.parametrize("kw,msg", [
    (dict(max_lr=0.1), r"You must define either total_steps OR \(epochs AND steps_per_epoch\)"),
    (dict(max_lr=0.1, total_steps=0), "Expected positive integer total_steps, but got 0"),
    (dict(max_lr=0.1, epochs=2, steps_per_epoch=-1), "Expected positive integer steps_per_epoch, but got -1"),
    (dict(max_lr=0.1, total_steps=10, pct_start=1.5), "Expected float between 0 and 1 pct_start, but got 1.5"),
    (dict(max_lr=0.1, total_steps=10, anneal_strategy="exp"), "anneal_strategy must be one of 'cos' or 'linear'"),
])
def test_one_cycle_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        S.OneCycleLR(_opt(), **kw)
    with pytest.raises(ValueError, match="optimizer must support momentum or beta1"):
        S.OneCycleLR(_opt(cls=optim.Adagrad), max_lr=0.1, total_steps=10)


def test_reduce_on_plateau_min_rel():
    opt = _opt()
    sched = S.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=2)
    metrics = [10, 9, 9, 9, 9, 8.9999, 8, 8, 8, 8, 8, 8, 8]
    # best 9 at epoch 2, three bad epochs -> halve at epoch 5; 8.9999 is not better by the relative threshold
    # 1e-4; 8 is (epoch 7); bad epochs 8, 9, 10 -> halve at 10; 11, 12, 13 -> halve at 13
    lrs = []
    for m in metrics:
        sched.step(m)
        lrs.append(sched.get_last_lr()[0])
    assert lrs == pytest.approx([0.1] * 4 + [0.05] * 5 + [0.025] * 3 + [0.0125])
    assert sched.last_epoch == len(metrics)


def test_reduce_on_plateau_max_abs_cooldown_min_lr():
    opt = _opt()
    sched = S.ReduceLROnPlateau(opt, mode="max", factor=0.1, patience=0, threshold=0.5, threshold_mode="abs",
                                cooldown=1, min_lr=[0.005, 0.0])
    out = []
    for m in [1.0, 1.4, 1.6, 2.2, 2.0, 1.0, 0.0]:
        sched.step(m)
        out.append(sched.get_last_lr())
    # 1.4 is not better than 1.0 by 0.5 -> reduce (patience 0), cooldown 1; 1.6 and 2.2 are better; 2.0 is not ->
    # reduce (0.001 is below min_lr 0.005); 1.0 bad but in cooldown; 0.0 bad -> reduce (group 0 stays at its floor)
    expected = [[0.1, 0.02], [0.01, 0.002], [0.01, 0.002], [0.01, 0.002], [0.005, 0.0002], [0.005, 0.0002],
                [0.005, 0.00002]]
    for a, b in zip(out, expected):
        assert a == pytest.approx(b)


def test_reduce_on_plateau_errors_and_state():
    with pytest.raises(ValueError, match=r"Factor should be < 1.0."):
        S.ReduceLROnPlateau(_opt(), factor=1.0)
    with pytest.raises(ValueError, match="mode avg is unknown!"):
        S.ReduceLROnPlateau(_opt(), mode="avg")
    with pytest.raises(ValueError, match="threshold mode x is unknown!"):
        S.ReduceLROnPlateau(_opt(), threshold_mode="x")
    with pytest.raises(ValueError, match="expected 2 min_lrs, got 1"):
        S.ReduceLROnPlateau(_opt(), min_lr=[0.1])
    a = S.ReduceLROnPlateau(_opt(), patience=1)
    for m in [3, 2, 2]:
        a.step(m)
    b = S.ReduceLROnPlateau(_opt(), patience=1)
    b.load_state_dict(a.state_dict())
    assert "optimizer" not in a.state_dict() and b.best == 2 and b.num_bad_epochs == 1
    b.step(2)
    assert b.get_last_lr() == pytest.approx([0.01, 0.002])


def test_state_dict_resume():
    a = S.MultiStepLR(_opt(), milestones=[2, 4], gamma=0.5)
    for _ in range(3):
        a.step()
    sd = a.state_dict()
    assert "optimizer" not in sd and sd["last_epoch"] == 3
    opt = _opt()
    for g, lr in zip(opt.param_groups, a.get_last_lr()):
        g["lr"] = lr
        g["initial_lr"] = lr * 2
    b = S.MultiStepLR(opt, milestones=[2, 4], gamma=0.5, last_epoch=2)
    b.load_state_dict(sd)
    for _ in range(3):
        a.step()
        b.step()
        assert a.get_last_lr() == b.get_last_lr()
    assert b.last_epoch == 6


def test_resume_requires_initial_lr_and_optimizer_type():
    with pytest.raises(KeyError, match=r"param 'initial_lr' is not specified in param_groups\[0\] when resuming"):
        S.StepLR(_opt(), step_size=2, last_epoch=3)
    with pytest.raises(TypeError, match="list is not an Optimizer"):
        S.StepLR([], step_size=2)


def test_scheduler_drives_optimizer():
    p = tritorch.tensor([1.0], requires_grad=True)
    opt = optim.SGD([p], lr=1.0)
    sched = S.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        p.grad = tritorch.tensor([1.0])
        opt.step()
        sched.step()
    assert p.item() == pytest.approx(1 - 1 - 0.5 - 0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched.get_last_lr()


def test_warmup_errors():
    with pytest.raises(ValueError, match="Constant multiplicative factor expected to be between 0 and 1."):
        S.ConstantLR(_opt(), factor=1.5)
    with pytest.raises(ValueError, match="Starting multiplicative factor expected to be greater than 0"):
        S.LinearLR(_opt(), start_factor=0)
    with pytest.raises(ValueError, match="Ending multiplicative factor expected to be between 0 and 1."):
        S.LinearLR(_opt(), end_factor=2)
