"""Regenerate mimc_rx/protocol/_pb from mimc_rx/protocol/proto/*.proto.

Run ``python scripts/gen_protos.py`` after editing a .proto file (needs the ``dev`` extra:
grpcio-tools and mypy-protobuf). ``python scripts/gen_protos.py --check`` exits 1 when the
committed modules differ from what the .proto files produce; a test runs it.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "mimc_rx" / "protocol" / "proto"
OUT_DIR = ROOT / "mimc_rx" / "protocol" / "_pb"
INIT = '"""Generated protobuf modules; regenerate with scripts/gen_protos.py. Do not edit."""\n'


def generate(out: Path) -> None:
    """Run protoc (from grpcio-tools) and mypy-protobuf into ``out``."""
    protos = sorted(p.name for p in PROTO_DIR.glob("*.proto"))
    plugin = shutil.which("protoc-gen-mypy", path=str(Path(sys.executable).parent))
    if plugin is None:
        sys.exit("protoc-gen-mypy not found: pip install -e '.[dev]'")
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"--python_out={out}",
        f"--plugin=protoc-gen-mypy={plugin}",
        f"--mypy_out={out}",
        *protos,
    ]
    subprocess.run(cmd, check=True, cwd=PROTO_DIR)
    # protoc writes top-level imports ("import push_config_pb2"); make them package-relative.
    for path in [*out.glob("*_pb2.py"), *out.glob("*_pb2.pyi")]:
        text = path.read_text()
        text = re.sub(r"^import (\w+_pb2)\b", r"from . import \1", text, flags=re.M)
        path.write_text(text)
    (out / "__init__.py").write_text(INIT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        produced = {p.name: p.read_text() for p in fresh.iterdir() if p.is_file()}
    if args.check:
        committed = {p.name: p.read_text() for p in OUT_DIR.iterdir() if p.is_file()}
        stale = sorted(
            n for n in produced.keys() | committed.keys() if produced.get(n) != committed.get(n)
        )
        if stale:
            print("out of date: " + ", ".join(stale))
            return 1
        return 0
    OUT_DIR.mkdir(exist_ok=True)
    for stale in OUT_DIR.iterdir():
        if stale.is_file():
            stale.unlink()
    for name, text in produced.items():
        (OUT_DIR / name).write_text(text)
    print(f"wrote {len(produced)} files to {OUT_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
