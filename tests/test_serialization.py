"""tritorch.save / tritorch.load: the safetensors format, nested structures, devices, damage and atomicity."""
import io
import json
import os
import struct
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
