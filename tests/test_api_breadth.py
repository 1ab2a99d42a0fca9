"""Drop-in breadth: ``tritorch.accelerator``, ``nn.Transformer``, copying and pickling, the legacy constructors,
``Tensor.__format__``, ``tritorch.backends`` as modules, and the module paths programs import, each checked against
PyTorch (the oracle, imported here only)."""
import copy
import importlib
import inspect
import pickle
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")   # the oracle


import tritorch
from tritorch.kernels import conv as _conv, matmul as _matmul


def _tt(a, device="cpu"):
    """A torch tensor as a tritorch tensor on ``device``."""
    return tritorch.tensor(a.detach().numpy(), device=device)


def _np(t):
    return t.detach().cpu().numpy()


# ====================================================================================================================
# tritorch.accelerator
# ====================================================================================================================

def test_accelerator():
    acc = tritorch.accelerator
    assert acc.is_available() is tritorch.cuda.is_available() is True      # the interpreter is an accelerator too
    assert acc.device_count() == tritorch.cuda.device_count() >= 1
    dev = acc.current_accelerator()
    assert isinstance(dev, tritorch.device) and dev.type == "cuda"
    assert acc.current_accelerator(check_available=True) == dev
    assert acc.current_device_index() == 0 and acc.current_device_idx() == 0
    # PyTorch's idiom for picking a device
    d = acc.current_accelerator().type if acc.is_available() else "cpu"
    assert tritorch.ones(2, device=d).device.type == "cuda"
    acc.synchronize()
    acc.synchronize("cuda")
    with pytest.raises(ValueError, match="cpu doesn't match the current accelerator cuda."):
        acc.synchronize("cpu")
    assert [p for p in inspect.signature(acc.current_accelerator).parameters] == \
        [p for p in inspect.signature(torch.accelerator.current_accelerator).parameters]


# ====================================================================================================================
# nn.Transformer
# ====================================================================================================================

def _transformer_pair(**kw):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "enable_nested_tensor is True")      # PyTorch's note on its fast path
        tm = torch.nn.Transformer(**kw).eval()
    m = tritorch.nn.Transformer(**kw).eval()
    return tm, m


SMALL = dict(d_model=16, nhead=4, num_encoder_layers=2, num_decoder_layers=1, dim_feedforward=24, dropout=0.0)


def test_transformer_signature_and_state_dict_keys_match_pytorch():
    ours = inspect.signature(tritorch.nn.Transformer.__init__).parameters
    theirs = inspect.signature(torch.nn.Transformer.__init__).parameters
    assert list(ours) == list(theirs)
    for name in theirs:
        if name not in ("self", "activation"):
            assert ours[name].default == theirs[name].default, name
    assert ours["activation"].default is tritorch.relu
    tm, m = _transformer_pair(**SMALL)
    sd = m.state_dict()
    tsd = tm.state_dict()
    assert list(sd) == list(tsd)
    assert all(tuple(sd[k].shape) == tuple(tsd[k].shape) for k in sd)
    assert (m.d_model, m.nhead, m.batch_first) == (16, 4, False)
    assert isinstance(m.encoder, tritorch.nn.TransformerEncoder)
    assert isinstance(m.decoder, tritorch.nn.TransformerDecoder)
    assert isinstance(m.encoder.norm, tritorch.nn.LayerNorm) and isinstance(m.decoder.norm, tritorch.nn.LayerNorm)
    # Xavier-uniform matrices, as PyTorch's _reset_parameters
    w = m.encoder.layers[0].linear1.weight
    bound = (6 / (w.shape[0] + w.shape[1])) ** 0.5
    assert float(w.abs().max()) <= bound and float(w.abs().max()) > 0.8 * bound


def test_generate_square_subsequent_mask_is_static_and_matches():
    for sz in (1, 4):
        ours = tritorch.nn.Transformer.generate_square_subsequent_mask(sz)
        np.testing.assert_array_equal(_np(ours), torch.nn.Transformer.generate_square_subsequent_mask(sz).numpy())
    m = tritorch.nn.Transformer.generate_square_subsequent_mask(3, device="cuda", dtype=tritorch.float64)
    assert m.device.type == "cuda" and m.dtype is tritorch.float64


@pytest.mark.filterwarnings("ignore:Support for mismatched:UserWarning")       # PyTorch's, on mixing mask types
@pytest.mark.parametrize("batch_first,norm_first,activation", [(False, False, "relu"), (True, True, "gelu")])
def test_transformer_matches_pytorch(batch_first, norm_first, activation, device):
    tm, m = _transformer_pair(**SMALL, batch_first=batch_first, norm_first=norm_first, activation=activation)
    m.load_state_dict({k: _tt(v) for k, v in tm.state_dict().items()})
    m.to(device)
    S, T, N, E = 5, 4, 3, 16
    g = torch.Generator().manual_seed(1)
    src = torch.randn((N, S, E) if batch_first else (S, N, E), generator=g)
    tgt = torch.randn((N, T, E) if batch_first else (T, N, E), generator=g)
    src_kpm = torch.zeros(N, S, dtype=torch.bool)
    src_kpm[1, 3:] = True
    tgt_kpm = torch.zeros(N, T, dtype=torch.bool)
    tgt_kpm[2, 2:] = True
    src_mask = torch.zeros(S, S)
    src_mask[0, 4] = float("-inf")
    tgt_mask = torch.nn.Transformer.generate_square_subsequent_mask(T)
    kw = dict(src_mask=src_mask, tgt_mask=tgt_mask, src_key_padding_mask=src_kpm, tgt_key_padding_mask=tgt_kpm,
              memory_key_padding_mask=src_kpm)
    src.requires_grad_(True)
    ref = tm(src, tgt, **kw)
    ref.square().sum().backward()
    x = _tt(src, device).requires_grad_(True)
    out = m(x, _tt(tgt, device), **{k: _tt(v, device) for k, v in kw.items()})
    np.testing.assert_allclose(_np(out), ref.detach().numpy(), rtol=1e-4, atol=1e-5)
    out.square().sum().backward()
    np.testing.assert_allclose(_np(x.grad), src.grad.numpy(), rtol=1e-3, atol=1e-4)
    tp = dict(tm.named_parameters())
    for name in ("encoder.layers.0.self_attn.in_proj_weight", "decoder.layers.0.multihead_attn.out_proj.weight",
                 "decoder.norm.weight"):
        np.testing.assert_allclose(_np(m.get_parameter(name).grad), tp[name].grad.numpy(), rtol=1e-3, atol=1e-4,
                                   err_msg=name)


def test_transformer_unbatched_custom_parts_and_errors():
    tm, m = _transformer_pair(**SMALL)
    m.load_state_dict({k: _tt(v) for k, v in tm.state_dict().items()})
    src, tgt = torch.randn(5, 16), torch.randn(3, 16)
    with torch.no_grad():
        ref = tm(src, tgt)
    np.testing.assert_allclose(_np(m(_tt(src), _tt(tgt))), ref.numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(RuntimeError, match="the batch number of src and tgt must be equal"):
        m(tritorch.zeros(5, 2, 16), tritorch.zeros(3, 3, 16))
    with pytest.raises(RuntimeError, match="the feature number of src and tgt must be equal to d_model"):
        m(tritorch.zeros(5, 2, 16), tritorch.zeros(3, 2, 8))
    encoder = tritorch.nn.TransformerEncoder(tritorch.nn.TransformerEncoderLayer(16, 4, 24, 0.0), 1)
    custom = tritorch.nn.Transformer(**SMALL, custom_encoder=encoder)
    assert custom.encoder is encoder and len(custom.encoder.layers) == 1
    assert "encoder.norm.weight" not in custom.state_dict() and "decoder.norm.weight" in custom.state_dict()


# ====================================================================================================================
# copy.deepcopy and pickle
# ====================================================================================================================

def test_deepcopy_leaf_with_grad_is_independent(device):
    x = tritorch.tensor([1.0, -2.0, 3.0], device=device, requires_grad=True)
    x.grad = tritorch.tensor([0.5, 0.5, 0.5], device=device)
    x.note = ["kept"]
    y = copy.deepcopy(x)
    assert y is not x and y.is_leaf and y.requires_grad and y.device == x.device
    assert y.tolist() == x.tolist() and y.grad.tolist() == x.grad.tolist() and y.grad is not x.grad
    assert y.note == ["kept"] and y.note is not x.note
    with tritorch.no_grad():
        y.add_(1.0)
        y.grad.zero_()
    assert x.tolist() == [1.0, -2.0, 3.0] and x.grad.tolist() == [0.5, 0.5, 0.5]
    # as PyTorch: only leaves
    tx = torch.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="Only Tensors created explicitly by the user"):
        copy.deepcopy(tx * 2)
    with pytest.raises(RuntimeError, match="Only Tensors created explicitly by the user"):
        copy.deepcopy(x * 2)


def test_deepcopy_views_share_their_copied_storage_as_pytorch(device):
    b = tritorch.arange(6.0, device=device).reshape(2, 3)
    v = b[:, 1]
    b2, v2 = copy.deepcopy([b, v])
    assert (v2.storage_offset(), v2.stride()) == (v.storage_offset(), v.stride())
    b2[0, 1] = 100.0
    assert v2.tolist() == [100.0, 4.0] and v.tolist() == [1.0, 4.0]
    tb = torch.arange(6.0).reshape(2, 3)
    tb2, tv2 = copy.deepcopy([tb, tb[:, 1]])
    tb2[0, 1] = 100.0
    assert tv2.tolist() == v2.tolist()
    alone = copy.deepcopy(v)            # a view alone: its own copy of the whole storage, same layout
    assert alone.tolist() == [1.0, 4.0] and alone.storage_offset() == 1


def test_deepcopy_devices_dtypes_modules_optimizers():
    for d in (tritorch.device("cpu"), tritorch.device("cuda:0")):
        assert copy.deepcopy(d) == d and copy.copy(d) == d
    for dt in (tritorch.float32, tritorch.bfloat16, tritorch.bool):
        assert copy.deepcopy(dt) is dt
    tritorch.manual_seed(0)
    model = tritorch.nn.Sequential(tritorch.nn.Linear(3, 4), tritorch.nn.ReLU(), tritorch.nn.Linear(4, 1))
    opt = tritorch.optim.Adam(model.parameters(), lr=0.1)
    x = tritorch.randn(8, 3)

    def train(m, o):
        o.zero_grad()
        m(x).square().mean().backward()
        o.step()

    train(model, opt)
    model2, opt2 = copy.deepcopy((model, opt))
    assert all(p is not q for p, q in zip(model.parameters(), model2.parameters()))
    assert opt2.param_groups[0]["params"][0] is model2[0].weight
    assert opt2.state[model2[0].weight]["exp_avg"] is not opt.state[model[0].weight]["exp_avg"]
    train(model, opt)
    train(model2, opt2)
    for p, q in zip(model.parameters(), model2.parameters()):
        assert p.tolist() == q.tolist()
    train(model2, opt2)
    assert model[0].weight.tolist() != model2[0].weight.tolist()


@pytest.mark.parametrize("dtype", [tritorch.float32, tritorch.bfloat16, tritorch.int64, tritorch.bool], ids=str)
def test_pickle_tensors_round_trip(dtype, device):
    a = tritorch.tensor([[1, 0, 3], [4, 5, 0]], dtype=dtype, device=device)
    b = pickle.loads(pickle.dumps(a))
    assert b.device == a.device and b.dtype is a.dtype and b.shape == a.shape and b.tolist() == a.tolist()
    b[0, 0] = 0
    assert a[0, 0].item() == 1
    leaf = tritorch.ones(2, device=device, requires_grad=True)
    leaf.grad = tritorch.ones(2, device=device)
    c = pickle.loads(pickle.dumps(leaf))
    tc = pickle.loads(pickle.dumps(torch.ones(2, requires_grad=True)))
    assert c.requires_grad == tc.requires_grad and c.is_leaf and (c.grad is None) == (tc.grad is None)
    t = tritorch.arange(12.0, device=device).reshape(3, 4).t()[1:, ::2]       # a strided view
    u = pickle.loads(pickle.dumps(t))
    assert u.tolist() == t.tolist() and u.stride() == t.stride() and u.storage_offset() == t.storage_offset()
    with pytest.raises(RuntimeError, match="Cowardly refusing to serialize non-leaf tensor"):
        pickle.dumps(leaf * 2)
    p = tritorch.nn.Parameter(tritorch.ones(3, device=device))
    q = pickle.loads(pickle.dumps(p))
    assert isinstance(q, tritorch.nn.Parameter) and q.requires_grad and q.device == p.device


def test_pickle_public_functions():
    """Every published op (and the Tensor methods made by factories) pickles by reference, as DataLoader workers
    and multiprocessing need."""
    fns = {n: getattr(tritorch, n) for n in tritorch._FUNCTIONS if inspect.isroutine(getattr(tritorch, n))}
    assert len(fns) > 200
    bad = []
    for name, fn in fns.items():
        try:
            ok = pickle.loads(pickle.dumps(fn)) is fn
        except Exception as e:          # noqa: BLE001 - report every failure at once
            ok = repr(e)
        if ok is not True:
            bad.append((name, ok))
    methods = {n: f for n, f in vars(tritorch.Tensor).items() if inspect.isfunction(f)}
    for name, fn in methods.items():
        try:
            ok = pickle.loads(pickle.dumps(fn)) is fn
        except Exception as e:          # noqa: BLE001
            ok = repr(e)
        if ok is not True:
            bad.append(("Tensor." + name, ok))
    assert bad == []
    for fn in (tritorch.relu, tritorch.exp, tritorch.sigmoid_, tritorch.Tensor.relu, tritorch.Tensor.exp_,
               tritorch.nn.functional.relu, tritorch.nn.functional.softmax):
        assert pickle.loads(pickle.dumps(fn)) is fn
        assert "<locals>" not in fn.__qualname__
    assert tritorch.relu.__module__ == "tritorch" and tritorch.relu.__qualname__ == "relu"
    assert pickle.loads(pickle.dumps(tritorch.FloatTensor)) is tritorch.FloatTensor


def test_dataloader_workers_receive_pickled_tensors():
    ds = tritorch.data.TensorDataset(tritorch.arange(8.0).reshape(4, 2), tritorch.tensor([0, 1, 0, 1]))
    batches = list(tritorch.data.DataLoader(ds, batch_size=2, num_workers=2, multiprocessing_context="spawn"))
    assert [b[0].tolist() for b in batches] == [[[0.0, 1.0], [2.0, 3.0]], [[4.0, 5.0], [6.0, 7.0]]]


# ====================================================================================================================
# Legacy constructors
# ====================================================================================================================

LEGACY = ["FloatTensor", "DoubleTensor", "HalfTensor", "ByteTensor", "IntTensor", "LongTensor", "BoolTensor"]


@pytest.mark.parametrize("args", [(2, 3), (4,), ((2, 3),), ([1, 2, 3],), ([[1.5, -2.7], [0, 3]],), ()],
                         ids=["sizes", "size", "tuple-data", "list", "nested", "empty"])
def test_tensor_legacy_constructor(args):
    ours, theirs = tritorch.Tensor(*args), torch.Tensor(*args)
    assert tuple(ours.shape) == tuple(theirs.shape) and ours.dtype is tritorch.float32 and not ours.requires_grad
    if all(isinstance(a, (list, tuple)) for a in args) and args:
        np.testing.assert_array_equal(_np(ours), theirs.numpy())
    assert tuple(tritorch.Tensor(tritorch.Size([2, 1])).shape) == tuple(torch.Tensor(torch.Size([2, 1])).shape)


@pytest.mark.parametrize("name", LEGACY)
def test_typed_legacy_constructors(name):
    ours, theirs = getattr(tritorch, name), getattr(torch, name)
    a, b = ours(2, 3), theirs(2, 3)
    assert tuple(a.shape) == tuple(b.shape) and a.dtype.name == str(b.dtype).split(".")[1]
    data = [[1, 0], [255, 2]] if name != "BoolTensor" else [[1, 0], [0, 1]]
    np.testing.assert_array_equal(_np(ours(data)), theirs(data).numpy())
    assert isinstance(ours(data), ours) and isinstance(ours(data), tritorch.Tensor)
    assert isinstance(tritorch.zeros(2, dtype=ours.dtype), ours) == isinstance(torch.zeros(2, dtype=theirs.dtype),
                                                                              theirs)
    assert isinstance(tritorch.zeros(2, dtype=ours.dtype, device="cuda"), ours) is False     # torch.cuda.* there
    assert not issubclass(ours, tritorch.Tensor) and repr(ours) == f"<class 'tritorch.{name}'>"


ALL_LEGACY = LEGACY + ["BFloat16Tensor", "CharTensor", "ShortTensor"]


@pytest.mark.parametrize("name", ALL_LEGACY)
def test_cuda_legacy_constructors(name):
    """``tritorch.cuda.FloatTensor`` and its kind: the cpu ones' rules on the cuda device; isinstance by dtype and
    device type, as PyTorch answers it."""
    ours, cpu_type = getattr(tritorch.cuda, name), getattr(tritorch, name)
    a = ours(2, 3)
    assert a.device.type == "cuda" and a.dtype is cpu_type.dtype and tuple(a.shape) == (2, 3)
    data = [[1, 0], [0, 1]]
    b = ours(data)
    assert b.device.type == "cuda"
    np.testing.assert_array_equal(_np(b), _np(cpu_type(data)))
    assert isinstance(b, ours) and not isinstance(b, cpu_type) and not isinstance(cpu_type(data), ours)
    assert ours(b).data_ptr() == b.data_ptr()                     # a tensor argument: an alias, as the cpu ones
    with pytest.raises(RuntimeError, match="expected a tensor on cuda"):
        ours(cpu_type(data))
    assert tuple(ours().shape) == (0,) and ours.is_cuda and not cpu_type.is_cuda
    assert repr(ours) == f"<class 'tritorch.cuda.{name}'>" and repr(getattr(torch.cuda, name)).endswith(
        f"torch.cuda.{name}'>")

def test_legacy_constructor_details_match_pytorch():
    assert isinstance(tritorch.randn(2), tritorch.FloatTensor) is isinstance(torch.randn(2), torch.FloatTensor)
    assert isinstance(tritorch.randn(2).double(), tritorch.FloatTensor) is \
        isinstance(torch.randn(2).double(), torch.FloatTensor)
    assert isinstance(tritorch.arange(3), tritorch.LongTensor) is isinstance(torch.arange(3), torch.LongTensor)
    assert tritorch.LongTensor([1.5, 2.7]).tolist() == torch.LongTensor([1.5, 2.7]).tolist()
    t = tritorch.arange(3.0)
    alias = tritorch.Tensor(t)                      # an alias of the same elements, as PyTorch
    assert alias is not t and alias.data_ptr() == t.data_ptr()
    assert tritorch.Tensor(tritorch.arange(3)).dtype is tritorch.int64
    with pytest.raises(TypeError):
        torch.FloatTensor(torch.arange(3))
    with pytest.raises(TypeError):
        tritorch.FloatTensor(tritorch.arange(3))
    with pytest.raises(TypeError):
        torch.Tensor(2, 3.0)
    with pytest.raises(TypeError, match="must be tuple of ints"):
        tritorch.Tensor(2, 3.0)
    assert tritorch.Tensor(2, device="cuda").device.type == "cuda"
    prev = tritorch.get_default_dtype()
    try:
        tritorch.set_default_dtype(tritorch.float64)
        assert tritorch.Tensor(2).dtype is tritorch.float64 and tritorch.Tensor([1]).dtype is tritorch.float64
    finally:
        tritorch.set_default_dtype(prev)


def test_new_factories(device):
    x = tritorch.ones(2, dtype=tritorch.float64, device=device)
    tx = torch.ones(2, dtype=torch.float64)
    for ours, theirs in [(x.new_zeros(3, 2), tx.new_zeros(3, 2)), (x.new_ones((2,)), tx.new_ones((2,))),
                         (x.new_full((2, 2), 7), tx.new_full((2, 2), 7)), (x.new_empty(4), tx.new_empty(4)),
                         (x.new_tensor([1, 2]), tx.new_tensor([1, 2]))]:
        assert tuple(ours.shape) == tuple(theirs.shape) and ours.dtype is tritorch.float64 and ours.device == x.device
    np.testing.assert_array_equal(_np(x.new_full((2, 2), 7)), tx.new_full((2, 2), 7).numpy())
    np.testing.assert_array_equal(_np(x.new_tensor([1, 2])), tx.new_tensor([1, 2]).numpy())
    assert x.new_zeros(2, dtype=tritorch.int32).dtype is tritorch.int32


# ====================================================================================================================
# __format__, is_xpu / is_mps / is_cuda
# ====================================================================================================================

def test_format_as_pytorch():
    for spec in (".4f", ">8", "", "e", ".2%"):
        assert format(tritorch.tensor(1.23456), spec) == format(torch.tensor(1.23456), spec)
    assert f"{tritorch.tensor(3)}" == f"{torch.tensor(3)}"
    assert "{:.4f}".format(tritorch.tensor(2.5, device="cuda")) == "2.5000"
    loss = tritorch.tensor(0.125, requires_grad=True) * 2
    assert f"loss {loss:.3f}" == "loss 0.250"
    assert "{}".format(tritorch.tensor([1.0, 2.0])) == str(tritorch.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match="unsupported format string passed to Tensor.__format__"):
        "{:.2f}".format(tritorch.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match="unsupported format string passed to Tensor.__format__"):
        "{:.2f}".format(torch.tensor([1.0, 2.0]))


def test_device_predicates(device):
    x = tritorch.zeros(1, device=device)
    t = torch.zeros(1)
    assert (x.is_xpu, x.is_mps) == (t.is_xpu, t.is_mps) == (False, False)
    assert x.is_cuda is (device == "cuda") and x.is_cpu is (device == "cpu")


# ====================================================================================================================
# tritorch.backends
# ====================================================================================================================

def test_backends_are_modules_with_pytorchs_defaults():
    import tritorch.backends.cudnn as cudnn
    import tritorch.backends.cuda as bcuda
    from tritorch.backends import mps
    assert cudnn is tritorch.backends.cudnn and bcuda is tritorch.backends.cuda
    for name in ("benchmark", "deterministic", "enabled", "allow_tf32"):
        assert getattr(cudnn, name) == getattr(torch.backends.cudnn, name), name
    assert bcuda.matmul.allow_tf32 == torch.backends.cuda.matmul.allow_tf32
    assert bcuda.is_built() is True and mps.is_available() is False
    assert bcuda.flash_sdp_enabled() is torch.backends.cuda.flash_sdp_enabled()


def test_backend_switches_drive_the_kernels():
    import tritorch.backends.cudnn as cudnn
    try:
        cudnn.benchmark = True
        cudnn.deterministic = True
        assert tritorch.backends.cudnn.benchmark is True and tritorch.backends.cudnn.deterministic is True
        cudnn.allow_tf32 = False
        assert _conv.ALLOW_TF32[0] is False and _conv.dot_precision(tritorch.float32) == "ieee"
        tritorch.backends.cuda.matmul.allow_tf32 = True
        assert _matmul._dot_precision(tritorch.float32) == "tf32"
        with cudnn.flags(enabled=True, benchmark=False, deterministic=False, allow_tf32=True):
            assert _conv.dot_precision(tritorch.float32) == "tf32" and cudnn.benchmark is False
        assert _conv.dot_precision(tritorch.float32) == "ieee" and cudnn.benchmark is True
    finally:
        cudnn.benchmark = False
        cudnn.deterministic = False
        cudnn.allow_tf32 = True
        tritorch.backends.cuda.matmul.allow_tf32 = False
    assert _conv.dot_precision(tritorch.float32) == "tf32" and _matmul._dot_precision(tritorch.float32) == "ieee"


# ====================================================================================================================
# Module paths: nn.modules.*, utils.data.*, serialization's safe globals
# ====================================================================================================================

NN_MODULES = ["module", "container", "linear", "flatten", "activation", "loss", "conv", "pooling", "batchnorm",
              "instancenorm", "normalization", "dropout", "padding", "upsampling", "pixelshuffle", "rnn", "sparse",
              "transformer", "distance", "fold"]


@pytest.mark.parametrize("name", NN_MODULES)
def test_nn_modules_paths(name):
    ours = importlib.import_module(f"tritorch.nn.modules.{name}")
    theirs = importlib.import_module(f"torch.nn.modules.{name}")
    assert ours.__all__
    for cls in ours.__all__:
        assert getattr(ours, cls) is getattr(tritorch.nn, cls), cls
        assert hasattr(theirs, cls), f"torch.nn.modules.{name} has no {cls}"
        assert getattr(tritorch.nn.modules, cls) is getattr(tritorch.nn, cls)


def test_nn_modules_import_forms():
    from tritorch.nn.modules.linear import Linear
    from tritorch.nn.modules.loss import CrossEntropyLoss
    from tritorch.nn.modules import Conv2d
    import tritorch.nn.modules.activation as act
    assert Linear is tritorch.nn.Linear and CrossEntropyLoss is tritorch.nn.CrossEntropyLoss
    assert Conv2d is tritorch.nn.Conv2d and act.MultiheadAttention is tritorch.nn.MultiheadAttention


def test_utils_data_submodules_are_tritorch_data_modules():
    import tritorch.utils.data.sampler as sampler
    from tritorch.utils.data.dataloader import DataLoader
    assert sampler is tritorch.data.sampler and DataLoader is tritorch.data.DataLoader
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("tritorch.utils.data.no_such_module")


def test_utils_data_distributed_resolves_to_tritorch_data_distributed():
    mod = importlib.import_module("tritorch.utils.data.distributed")
    assert mod is importlib.import_module("tritorch.data.distributed")
    from tritorch.utils.data.distributed import DistributedSampler
    assert DistributedSampler is tritorch.data.distributed.DistributedSampler


def test_safe_globals_are_accepted(tmp_path):
    ser = tritorch.serialization
    saved = ser.get_safe_globals()
    try:
        ser.add_safe_globals([np.dtype, (tritorch.nn.Linear, "Linear")])
        assert ser.get_safe_globals()[-2:] == [np.dtype, (tritorch.nn.Linear, "Linear")]
        with ser.safe_globals([np.ndarray]):
            assert np.ndarray in ser.get_safe_globals()
            path = tmp_path / "w.pt"
            tritorch.save({"w": tritorch.ones(2)}, path)
            assert tritorch.load(path, weights_only=True)["w"].tolist() == [1.0, 1.0]
        assert np.ndarray not in ser.get_safe_globals()
        with pytest.raises(TypeError):
            ser.add_safe_globals(np.dtype)
    finally:
        ser.clear_safe_globals()
        ser.add_safe_globals(saved)
    assert ser.get_safe_globals() == saved
