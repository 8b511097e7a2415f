"""Python protobuf/gRPC stubs generated from proto/*.proto into BUILD/py, once
per session (and again only when a .proto changed); the dir goes on sys.path."""
import fcntl
import glob
import os
import sys

from . import TOP


def ensure_stubs(build_dir):
    """Generates <name>_pb2.py / <name>_pb2_grpc.py for every proto/*.proto into
    build_dir/py, adds that directory to sys.path and returns it."""
    from grpc_tools import protoc
    import importlib.resources

    out = os.path.join(os.path.abspath(build_dir), "py")
    os.makedirs(out, exist_ok=True)
    protos = sorted(glob.glob(os.path.join(TOP, "proto", "*.proto")))
    stamp = os.path.join(out, ".stamp")
    with open(os.path.join(out, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        newest = max([os.path.getmtime(p) for p in protos] + [0])
        if not os.path.exists(stamp) or os.path.getmtime(stamp) < newest or \
                open(stamp).read() != "\n".join(protos):
            well_known = str(importlib.resources.files("grpc_tools") / "_proto")
            args = ["protoc", "-I" + os.path.join(TOP, "proto"), "-I" + well_known,
                    "--python_out=" + out, "--grpc_python_out=" + out] + protos
            if protoc.main(args) != 0:
                raise RuntimeError("grpc_tools.protoc failed on %s" % " ".join(protos))
            with open(stamp, "w") as f:
                f.write("\n".join(protos))
    if out not in sys.path:
        sys.path.insert(0, out)
    return out
