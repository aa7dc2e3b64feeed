"""safetensors_np.py: a safetensors reader and writer in plain numpy (the `safetensors` package
is not installed), used to check that cgvlm's checkpoints are standard files.

  safetensors_np.py check-c FILE     reads the file test_checkpoint wrote; asserts its values
  safetensors_np.py write FILE       writes a file for `test_checkpoint --read`
  safetensors_np.py dump FILE        prints metadata and tensor shapes (for people)
"""
import json
import struct
import sys

import numpy as np

DTYPES = {"F32": "<f4", "F64": "<f8", "I64": "<i8", "U64": "<u8", "I32": "<i4", "U8": "u1"}


def load(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0, "header not padded to 8 bytes"
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    data = raw[8 + n :]
    tensors, covered = {}, 0
    for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, e = t["data_offsets"]
        assert b == covered, f"hole before {name}"
        covered = e
        arr = np.frombuffer(data[b:e], dtype=DTYPES[t["dtype"]]).reshape(t["shape"])
        tensors[name] = arr
    assert covered == len(data), "data beyond the last tensor"
    return meta, tensors


def save(path, tensors, meta):
    header, blobs, off = {"__metadata__": meta}, [], 0
    rev = {v: k for k, v in DTYPES.items()}
    for name, arr in tensors.items():
        arr = np.asarray(arr).copy(order="C")  # (ascontiguousarray turns 0-d into 1-d)
        b = arr.tobytes()
        header[name] = {"dtype": rev[arr.dtype.str if arr.dtype.str != "|u1" else "u1"],
                        "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def fill(n):
    return (np.arange(n, dtype=np.float32) * 0.25 - 1).astype("<f4")


def main():
    cmd, path = sys.argv[1], sys.argv[2]
    if cmd == "check-c":
        meta, t = load(path)
        assert meta == {"stage": "align", "step": "17", "note": 'quote " and backslash \\ ok'}, meta
        assert t["lm.wte"].shape == (3, 4) and np.array_equal(t["lm.wte"].ravel(), fill(12))
        assert t["scale"].shape == () and t["scale"] == np.float32(3.5)
        assert list(t["ids"]) == [-7, 1 << 40]
        assert t["train.rng"].dtype == np.uint64 and int(t["train.rng"][1]) == 2**64 - 1
        print("python read the C checkpoint: ok")
    elif cmd == "write":
        save(path, {"x": fill(6).reshape(2, 3), "n": np.array(5, dtype="<i8")}, {"by": "numpy"})
    elif cmd == "dump":
        meta, t = load(path)
        print(json.dumps(meta, indent=1))
        for k, v in t.items():
            print(f"{k:40s} {v.dtype} {list(v.shape)}")
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
