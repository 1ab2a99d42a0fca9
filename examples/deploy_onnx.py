"""Deploy the main job's CNN with ONNX: train it (``tritorch train --export-onnx``), then run the exported model in
onnxruntime on the test digits and check that it scores the same accuracy as tritorch.

    python examples/deploy_onnx.py                          # train 6 epochs, export, compare
    python examples/deploy_onnx.py --model m.onnx --checkpoint c.safetensors   # an existing export + checkpoint

Needs ``pip install "tritorch[onnx]"`` (onnx and onnxruntime).
"""
import argparse
import os
import tempfile

import numpy as np
import onnxruntime as ort

import tritorch as torch
from tritorch import train

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--model", help="an ONNX file written by `tritorch train --export-onnx` (default: train one)")
parser.add_argument("--checkpoint", help="the checkpoint written with it (`--out`)")
parser.add_argument("--epochs", type=int, default=6)
parser.add_argument("--tiny", action="store_true", help="one short epoch (for tests)")
args = parser.parse_args()
if (args.model is None) != (args.checkpoint is None):
    parser.error("--model and --checkpoint go together")

workdir = tempfile.TemporaryDirectory(prefix="deploy_onnx-")            # removed when the script ends
if args.model is None:
    args.model = os.path.join(workdir.name, "digits-cnn.onnx")
    args.checkpoint = os.path.join(workdir.name, "digits-cnn.safetensors")
    argv = ["--epochs", "1" if args.tiny else str(args.epochs), "--out", args.checkpoint, "--export-onnx", args.model,
            "--quiet", "--device", "cpu"] + (["--limit-batches", "3"] if args.tiny else [])
    if train.main(argv) != 0:
        raise SystemExit("training failed")

# onnxruntime: the exported graph, with the input normalisation stored in its metadata
session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
meta = session.get_modelmeta().custom_metadata_map
mean, std = float(meta["tritorch.mean"]), float(meta["tritorch.std"])
_, _, _, x_test, y_test = train.load_dataset()
images = ((x_test - mean) / std).astype(np.float32)
logits = np.concatenate([session.run(["logits"], {"image": images[i:i + 256]})[0]
                         for i in range(0, len(images), 256)])          # any batch size: the batch axis is dynamic
onnx_accuracy = float((logits.argmax(1) == y_test).mean())

# tritorch: the same weights from the checkpoint
model = train.build_model(x_test.shape[-1])
model.load_state_dict(torch.load(args.checkpoint)["model"])
model.eval()
with torch.no_grad():
    reference = model(torch.tensor(images)).numpy()
tritorch_accuracy = float((reference.argmax(1) == y_test).mean())

print(f"onnxruntime {ort.__version__}: {len(images)} test digits, accuracy {100 * onnx_accuracy:.2f}%")
print(f"tritorch:                 accuracy {100 * tritorch_accuracy:.2f}%")
print(f"same accuracy: {onnx_accuracy == tritorch_accuracy}, largest logit difference "
      f"{np.abs(logits - reference).max():.2e}")
