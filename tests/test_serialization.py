"""tritorch.save / tritorch.load: the safetensors format, nested structures, devices, damage and atomicity."""
import io
import json
import os
import signal
import struct
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest

import tritorch
import tritorch.nn as nn
from tritorch.serialization import save, load
from helpers import make, to_np

DTYPES = [tritorch.float32, tritorch.float16, tritorch.bfloat16, tritorch.float64, tritorch.int8, tritorch.uint8,
          tritorch.int16, tritorch.int32, tritorch.int64, tritorch.bool]
CODES = ["F32", "F16", "BF16", "F64", "I8", "U8", "I16", "I32", "I64", "BOOL"]


def _header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n)), n


def test_round_trip_every_dtype(tmp_path):
    sd = OrderedDict()
    for i, dt in enumerate(DTYPES):
        sd[f"t.{dt.name}"] = make((3, 5), dtype=dt, seed=i)[0]
    sd["scalar"] = tritorch.tensor(2.5)
    sd["empty"] = tritorch.zeros(0, 4, dtype=tritorch.int32)
    sd["strided"] = make((4, 3), layout="transposed")[0]
    path = tmp_path / "sd.safetensors"
    save(sd, path)
    back = load(path)
    assert isinstance(back, OrderedDict) and list(back) == list(sd)
    for k, v in sd.items():
        assert back[k].dtype is v.dtype and tuple(back[k].shape) == tuple(v.shape) and back[k].device.type == "cpu"
        np.testing.assert_array_equal(to_np(back[k]), to_np(v))
    header, n = _header(path)
    assert n % 8 == 0
    for dt, code in zip(DTYPES, CODES):
        assert header[f"t.{dt.name}"]["dtype"] == code and header[f"t.{dt.name}"]["shape"] == [3, 5]
    assert all(isinstance(v, str) for v in header["__metadata__"].values())


def test_bytes_are_plain_little_endian(tmp_path):
    t = tritorch.tensor([1.0, -2.0, 3.5], dtype=tritorch.bfloat16)
    path = tmp_path / "b.safetensors"
    save({"w": t, "i": tritorch.tensor([1, 256], dtype=tritorch.int16)}, path)
    header, n = _header(path)
    raw = path.read_bytes()[8 + n:]
    b, e = header["w"]["data_offsets"]
    assert raw[b:e] == np.array([1.0, -2.0, 3.5], dtype=np.float32).view(np.uint16)[1::2].astype("<u2").tobytes()
    b, e = header["i"]["data_offsets"]
    assert raw[b:e] == np.array([1, 256], dtype="<i2").tobytes()


def test_readable_by_safetensors_and_reads_foreign_files(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "x.safetensors"
    save({"a": tritorch.ones(2, 3), "b": tritorch.arange(4) if hasattr(tritorch, "arange") else
          tritorch.tensor([0, 1, 2, 3])}, path)
    got = st.load_file(str(path))
    np.testing.assert_array_equal(got["a"], np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(got["b"], np.arange(4))
    foreign = tmp_path / "f.safetensors"
    st.save_file({"z": np.arange(6, dtype=np.float16).reshape(2, 3), "y": np.array([True, False])}, str(foreign))
    back = load(foreign)
    assert set(back) == {"z", "y"} and back["z"].dtype is tritorch.float16 and back["y"].dtype is tritorch.bool
    np.testing.assert_array_equal(to_np(back["z"]), np.arange(6).reshape(2, 3))


def test_nested_structure_and_shared_tensors():
    w = tritorch.tensor([1.0, 2.0])
    obj = {"model": OrderedDict(w=w), "optim": {"state": {0: {"step": 3, "exp_avg": w}},
                                                "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0],
                                                                  "name": None, "nan": float("nan"),
                                                                  "inf": float("-inf"), "flag": True}]},
           "dtype": tritorch.bfloat16, "list": [1, "two", [3.0]], "tuple": (), "param": nn.Parameter(w.clone())}
    buf = io.BytesIO()
    save(obj, buf)
    buf.seek(0)
    back = load(buf)
    assert isinstance(back["model"], OrderedDict) and type(back["optim"]) is dict
    assert back["optim"]["state"][0]["exp_avg"] is back["model"]["w"]       # one object saved once
    g = back["optim"]["param_groups"][0]
    assert g["lr"] == 1e-3 and g["betas"] == (0.9, 0.999) and g["params"] == [0] and g["name"] is None
    assert np.isnan(g["nan"]) and g["inf"] == float("-inf") and g["flag"] is True
    assert back["dtype"] is tritorch.bfloat16 and back["list"] == [1, "two", [3.0]] and back["tuple"] == ()
    assert isinstance(back["param"], nn.Parameter) and back["param"].requires_grad
    single = io.BytesIO()
    save(tritorch.tensor([[1, 2]]), single)
    single.seek(0)
    assert to_np(load(single)).tolist() == [[1, 2]]


def test_refuses_arbitrary_objects():
    with pytest.raises(TypeError, match="tritorch.save: cannot save an object of type object"):
        save({"x": object()}, io.BytesIO())
    with pytest.raises(TypeError, match="cannot save an object of type set"):
        save({1, 2}, io.BytesIO())


def test_module_state_dict_round_trip(tmp_path):
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    save(net.state_dict(), tmp_path / "m.pt")
    other = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    other.load_state_dict(load(tmp_path / "m.pt"))
    x = tritorch.ones(2, 3)
    np.testing.assert_array_equal(to_np(net(x)), to_np(other(x)))


def test_devices_and_map_location(tmp_path):
    path = str(tmp_path / "c.safetensors")
    save({"g": tritorch.tensor([1.0, 2.0], device="cuda"), "c": tritorch.tensor([3], dtype=tritorch.int64)}, path)
    back = load(path)
    assert back["g"].device.type == "cuda" and back["c"].device.type == "cpu"
    assert to_np(back["g"]).tolist() == [1.0, 2.0]
    assert all(t.device.type == "cpu" for t in load(path, map_location="cpu").values())
    assert all(t.device.type == "cuda" for t in load(path, map_location=tritorch.device("cuda")).values())
    m = load(path, map_location={"cuda:0": "cpu"})
    assert m["g"].device.type == "cpu"
    seen = []
    f = load(path, map_location=lambda t, loc: seen.append(loc) or t)
    assert sorted(seen) == ["cpu", "cuda:0"] and f["g"].device.type == "cpu"


def test_truncated_and_corrupt_files(tmp_path):
    path = tmp_path / "good.safetensors"
    save({"w": tritorch.ones(64), "v": tritorch.zeros(3, dtype=tritorch.int32)}, path)
    data = path.read_bytes()
    bad = tmp_path / "bad.safetensors"
    for cut in (4, 20, len(data) - 10):
        bad.write_bytes(data[:cut])
        with pytest.raises(RuntimeError, match="tritorch.load: file .*bad.safetensors is truncated"):
            load(bad)
    flipped = bytearray(data)
    flipped[-5] ^= 0xFF
    bad.write_bytes(bytes(flipped))
    with pytest.raises(RuntimeError, match="is corrupt: the tensor data does not match its checksum"):
        load(bad)
    bad.write_bytes(struct.pack("<Q", 5) + b"{oops" + b"\0" * 8)
    with pytest.raises(RuntimeError, match="is corrupt: the header is not valid JSON"):
        load(bad)
    hdr = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}).encode()
    bad.write_bytes(struct.pack("<Q", len(hdr)) + hdr + b"\0" * 16)
    with pytest.raises(RuntimeError, match="corrupt: tensor 'w' of shape \\[4\\] and dtype F32 needs 16 bytes"):
        load(bad)
    hdr = json.dumps({"w": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}).encode()
    bad.write_bytes(struct.pack("<Q", len(hdr)) + hdr + b"\0" * 8)
    with pytest.raises(RuntimeError, match="unsupported dtype 'C64'"):
        load(bad)
    bad.write_bytes(b"PK\x03\x04" + b"\0" * 40)
    with pytest.raises(RuntimeError, match="is corrupt: not a safetensors file but a zip archive"):
        load(bad)
    bad.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(RuntimeError, match="is corrupt: header length 1099511627776 is implausible"):
        load(bad)
    bad.write_bytes(struct.pack("<Q", 4) + b"abcd")
    with pytest.raises(RuntimeError, match="is corrupt: no JSON header"):
        load(bad)


def test_atomic_write_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.safetensors"
    save({"w": tritorch.ones(3)}, path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        save({"w": tritorch.zeros(5)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["ckpt.safetensors"]         # no temporary left behind
    with pytest.raises(TypeError):
        save({"w": tritorch.ones(1), "bad": object()}, path)
    assert to_np(load(path)["w"]).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(RuntimeError, match="Parent directory .*nowhere does not exist."):
        save({}, tmp_path / "nowhere" / "x.safetensors")


def test_saved_file_gets_the_umask_mode(tmp_path):
    import stat
    old = os.umask(0o022)
    try:
        tritorch.save({"w": tritorch.ones(2)}, tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "m.safetensors").st_mode) == 0o644


def _file(path, header, body=b"", raw=None):
    """A safetensors file from a header (or raw header bytes) and a byte area."""
    h = raw if raw is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + body)
    return path


def _f32(b, e, shape=None):
    return {"dtype": "F32", "shape": [(e - b) // 4] if shape is None else shape, "data_offsets": [b, e]}


# (header, byte area, what the error says): each is rejected by the reference safetensors reader too
LAYOUTS = [
    ({"a": _f32(0, 8), "b": _f32(4, 8)}, 8, "tensor 'b' at data_offsets \\[4, 8\\] overlaps the tensor before it"),
    ({"a": _f32(0, 4), "b": _f32(0, 4)}, 4, "tensor '.' at data_offsets \\[0, 4\\] overlaps"),
    ({"a": _f32(0, 4), "b": _f32(8, 12)}, 12, "tensor 'b' .* leaves a gap of 4 bytes before it"),
    ({"a": _f32(4, 8)}, 8, "tensor 'a' at data_offsets \\[4, 8\\] leaves a gap of 4 bytes"),
    ({"a": _f32(0, 4)}, 8, "4 bytes follow the last tensor's data"),
    ({}, 8, "8 bytes follow the last tensor's data"),
]


@pytest.mark.parametrize("header,size,msg", LAYOUTS)
def test_overlapping_gapped_or_padded_data_is_corrupt(tmp_path, header, size, msg):
    path = _file(tmp_path / "alias.safetensors", header, bytes(range(size)))
    with pytest.raises(tritorch.serialization.CorruptFileError, match=f"file .*alias.safetensors is corrupt: {msg}"):
        load(path)
    st = pytest.importorskip("safetensors.numpy")
    with pytest.raises(Exception, match="invalid offset|not fully covered"):
        st.load(path.read_bytes())


def test_tensors_out_of_header_order_tile_the_data(tmp_path):
    body = np.array([1, 2, 3], dtype="<f4").tobytes()
    path = _file(tmp_path / "order.safetensors", {"b": _f32(4, 12), "a": _f32(0, 4)}, body)
    back = load(path)
    assert list(back) == ["a", "b"] and to_np(back["a"]).tolist() == [1] and to_np(back["b"]).tolist() == [2, 3]


MALFORMED = [
    ({"w": {"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}}, "malformed shape \\[1.0\\]"),
    ({"w": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, "malformed shape \\[True\\]"),
    ({"w": {"dtype": "F32", "shape": ["1"], "data_offsets": [0, 4]}}, "malformed shape \\['1'\\]"),
    ({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, "malformed shape \\[-1\\]"),
    ({"w": {"dtype": "F32", "shape": 1, "data_offsets": [0, 4]}}, "malformed shape 1 "),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0.0, 4]}}, "malformed data_offsets \\[0.0, 4\\]"),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}}, "malformed data_offsets \\[-4, 0\\]"),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, "malformed data_offsets \\[4, 0\\]"),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 4]}}, "malformed data_offsets"),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": None}}, "malformed data_offsets None"),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": {"0": 4}}}, "malformed data_offsets"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, "needs 8 bytes, its offsets span 4"),
    ({"w": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}, "unsupported dtype \\['F32'\\]"),
    ({"w": {"dtype": "f32", "shape": [1], "data_offsets": [0, 4]}}, "unsupported dtype 'f32'"),
    ({"w": {"shape": [1], "data_offsets": [0, 4]}}, "tensor 'w' has no 'dtype'"),
    ({"w": {"dtype": "F32", "data_offsets": [0, 4]}}, "tensor 'w' has no 'shape'"),
    ({"w": [1]}, "tensor 'w' has a malformed entry \\[1\\]"),
    ({"w": None}, "tensor 'w' has a malformed entry None"),
    ({"__metadata__": {"a": 1}}, "__metadata__ is not a map of strings to strings"),
    ({"__metadata__": [1]}, "__metadata__ is not a map of strings to strings"),
    ("[1, 2]", "no JSON header after the header length"),
    ('{"w": 1', "the header is not valid JSON"),
    ('{"w": NaN}', "tensor 'w' has a malformed entry nan"),
]


@pytest.mark.parametrize("header,msg", MALFORMED)
def test_malformed_headers_are_corrupt(tmp_path, header, msg):
    raw = header.encode() if isinstance(header, str) else None
    path = _file(tmp_path / "m.safetensors", header, b"\0" * 4, raw=raw)
    with pytest.raises(tritorch.serialization.CorruptFileError, match=f"file .*m.safetensors is corrupt: .*{msg}"):
        load(path)
    st = pytest.importorskip("safetensors.numpy")
    with pytest.raises(Exception):
        st.load(path.read_bytes())


def test_deeply_nested_header_is_corrupt_not_a_recursion_error(tmp_path):
    deep = "[" * 100000 + "]" * 100000
    path = _file(tmp_path / "deep.safetensors", None, raw=('{"a": ' + deep + "}").encode())
    with pytest.raises(tritorch.serialization.CorruptFileError, match="deep.safetensors is corrupt: the header JSON "
                       "is nested too deeply"):
        load(path)
    good = io.BytesIO()
    save({"w": tritorch.ones(2)}, good)
    (n,) = struct.unpack("<Q", good.getvalue()[:8])
    header = json.loads(good.getvalue()[8:8 + n])
    header["__metadata__"]["tritorch.structure"] = deep
    path = _file(tmp_path / "deep2.safetensors", header, good.getvalue()[8 + n:])
    with pytest.raises(tritorch.serialization.CorruptFileError, match="deep2.safetensors is corrupt: its structure "
                       "metadata is nested too deeply"):
        load(path)


@pytest.mark.parametrize("node,msg", [
    (["T", 5, "cpu", ""], "unexpected structure node \\['T', 5"),
    (["T", "w", "nodev", ""], "its device is no device"),
    (["T", "w", "cpu", "x"], "unexpected structure node"),
    (["T", "w"], "unexpected structure node"),
    (["T", "missing", "cpu", ""], "its structure names a missing tensor 'missing'"),
    (["T", "__metadata__", "cpu", ""], "names a missing tensor '__metadata__'"),
    (["f", "abc"], "unexpected structure node \\['f', 'abc'\\]"),
    (["f", 1.5], "unexpected structure node"),
    (["dt", "nope"], "unexpected structure node \\['dt', 'nope'\\]"),
    (["dev", 3], "unexpected structure node"),
    (["d", [[["l", []], 1]]], "unhashable key \\[\\]"),
    (["d", 5], "unexpected structure node"),
    (["d", [[1]]], "unexpected structure node"),
    (["s", ["a"]], "unexpected structure node"),
    (["l"], "unexpected structure node"),
    (["l", {"a": 1}], "unexpected structure node"),
    (["zz", []], "unknown structure tag 'zz'"),
    ({"a": 1}, "unexpected structure node {'a': 1}"),
    ([], "unexpected structure node \\[\\]"),
    ("{", "bad structure metadata"),
])
def test_malformed_structure_metadata_is_corrupt(tmp_path, node, msg):
    good = io.BytesIO()
    save({"w": tritorch.ones(2)}, good)
    (n,) = struct.unpack("<Q", good.getvalue()[:8])
    header = json.loads(good.getvalue()[8:8 + n])
    header["__metadata__"]["tritorch.structure"] = node if isinstance(node, str) else json.dumps(node)
    path = _file(tmp_path / "s.safetensors", header, good.getvalue()[8 + n:])
    with pytest.raises(tritorch.serialization.CorruptFileError, match=f"s.safetensors is corrupt: .*{msg}"):
        load(path)


KILLED_SAVE = """
import os, sys, time
import tritorch
def hang(fd):
    print("writing", flush=True)
    time.sleep(120)
os.fsync = hang
tritorch.save({"w": tritorch.zeros(1000)}, sys.argv[1])
"""


def test_save_killed_mid_write_leaves_a_temp_that_the_next_load_or_save_removes(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    save({"w": tritorch.ones(3)}, path)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_SAVE, str(path)], stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        assert proc.stdout.readline() == "writing\n"
        temps = [n for n in os.listdir(tmp_path) if n != "ckpt.safetensors"]
        assert len(temps) == 1 and temps[0].startswith(f".ckpt.safetensors.tmp-{proc.pid}-")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert sorted(os.listdir(tmp_path)) == sorted(["ckpt.safetensors"] + temps)     # the killed save left it
    assert to_np(load(path)["w"]).tolist() == [1.0, 1.0, 1.0]                       # the old file is intact
    assert sorted(os.listdir(tmp_path)) == ["ckpt.safetensors"]                      # and load removed the temp
    (tmp_path / temps[0]).write_bytes(b"partial")                                    # the same dead writer's temp,
    live = tmp_path / f".ckpt.safetensors.tmp-{os.getpid()}-abc"                     # a live writer's temp,
    other = tmp_path / f".other.safetensors.tmp-{proc.pid}-abc"                      # another target's temp
    live.write_bytes(b"")
    other.write_bytes(b"")
    save({"w": tritorch.zeros(2)}, path)
    assert sorted(os.listdir(tmp_path)) == sorted(["ckpt.safetensors", live.name, other.name])
    assert to_np(load(path)["w"]).tolist() == [0.0, 0.0]


def test_training_checkpoint_with_numpy_arrays_and_optimizer_state(tmp_path):
    tritorch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = tritorch.optim.Adam(model.parameters(), lr=1e-2)
    model(tritorch.randn(4, 3)).sum().backward()
    opt.step()
    ckpt = {"epoch": 7, "model": model.state_dict(), "optimizer": opt.state_dict(),
            "history": [1.5, float("inf"), None, True, "best"], "rng": np.arange(6, dtype=np.int32).reshape(2, 3),
            "extra": (np.float32(2.5), np.zeros((0, 2)), {"nested": [np.array([True, False])]})}
    path = tmp_path / "ckpt.pt"
    save(ckpt, path)
    back = load(path)
    assert back["epoch"] == 7 and back["history"] == [1.5, float("inf"), None, True, "best"]
    assert isinstance(back["rng"], np.ndarray) and back["rng"].dtype == np.int32
    np.testing.assert_array_equal(back["rng"], ckpt["rng"])
    assert back["extra"][1].shape == (0, 2) and back["extra"][2]["nested"][0].dtype == np.bool_
    assert back["extra"][0] == 2.5 and isinstance(back["extra"], tuple)
    opt2 = tritorch.optim.Adam(nn.Linear(3, 2).parameters(), lr=1e-2)
    opt2.load_state_dict(back["optimizer"])
    np.testing.assert_array_equal(to_np(back["optimizer"]["state"][0]["exp_avg"]),
                                  to_np(opt.state_dict()["state"][0]["exp_avg"]))
    with pytest.raises(TypeError, match="NumPy array of dtype"):
        save({"bad": np.array(["a"])}, io.BytesIO())
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[:-3])
    with pytest.raises(tritorch.serialization.CorruptFileError, match="truncated"):
        load(tmp_path / "cut.pt")
