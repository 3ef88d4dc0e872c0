"""The package a user installs: a wheel with its extras, typed, importable in a clean
venv; every public name documented; stubs that match the native module.

The wheel is the one in ENTRAFLOW_WHEEL when set (the release checklist's
`maturin build --release` output); otherwise `maturin build` makes one from the
debug artifacts `maturin develop` already compiled, in seconds: the files and
metadata are the same, only the optimisation level differs.
"""

from __future__ import annotations

import ast
import email.parser
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import entraflow
from entraflow import _native

REPO = Path(__file__).resolve().parents[2]
PUBLIC_MODULES = ["entraflow", "entraflow.identity", "entraflow.identity.aio", "entraflow.fsspec",
                  "entraflow.tensorflow", "entraflow.sql"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if os.environ.get("ENTRAFLOW_WHEEL"):
        return Path(os.environ["ENTRAFLOW_WHEEL"])
    out = tmp_path_factory.mktemp("dist")
    maturin = Path(sys.executable).with_name("maturin")
    subprocess.run([str(maturin), "build", "--quiet", "-o", str(out)], cwd=REPO / "python", check=True,
                   capture_output=True, text=True)
    [built] = out.glob("entraflow-*.whl")
    return built


def test_the_wheel_is_abi3_manylinux_typed_and_declares_its_extras(wheel):
    assert "-cp311-abi3-" in wheel.name and "manylinux" in wheel.name, wheel.name
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert {"entraflow/py.typed", "entraflow/_native.pyi", "entraflow/identity/aio/__init__.py"} <= names
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = email.parser.Parser().parsestr(archive.read(metadata).decode())
    assert set(meta.get_all("Provides-Extra")) >= {"azure", "fsspec", "tensorflow", "postgres"}
    requires = meta.get_all("Requires-Dist")
    for extra, package in (("azure", "azure-identity"), ("azure", "azure-core"), ("fsspec", "fsspec"),
                           ("tensorflow", "tensorflow"), ("postgres", "psycopg")):
        assert any(r.startswith(package) and re.search(f"extra == [\"']{extra}[\"']", r) for r in requires), requires
    assert not [r for r in requires if "extra ==" not in r], "the core package needs nothing"


def test_the_wheel_installs_into_a_clean_venv_with_extras_and_imports(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", f"{wheel}[azure,fsspec]"],
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-3000:]
    probe = (
        "import azure.identity, entraflow, entraflow.fsspec, entraflow.identity.aio as aio\n"
        "from entraflow.identity import CredentialUnavailableError\n"
        "assert issubclass(CredentialUnavailableError, azure.identity.CredentialUnavailableError)\n"
        "import fsspec; assert fsspec.get_filesystem_class('entraflow') is entraflow.fsspec.EntraflowFileSystem\n"
        "print(entraflow.__version__, entraflow.__file__)\n"
    )
    run = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    version, location = run.stdout.split()
    assert version == entraflow.__version__ and location.startswith(str(venv)), run.stdout


# Run in a child: importing entraflow.tensorflow registers the plugin and sets
# ENTRAFLOW_TF_SCHEME in the importing process, which later TensorFlow jobs inherit.
DOCUMENTED = """
import importlib, inspect, sys
module = importlib.import_module(sys.argv[1])
assert module.__doc__ and module.__all__, sys.argv[1]
for name in module.__all__:
    value = getattr(module, name)  # an __all__ entry that does not exist fails here
    if inspect.isclass(value) or inspect.isfunction(value):
        assert inspect.getdoc(value), f"{name} has no docstring"
        for attr, member in vars(value).items() if inspect.isclass(value) else ():
            # Through the class, so an override of a documented base method inherits its docstring.
            if not attr.startswith("_") and callable(member):
                assert inspect.getdoc(getattr(value, attr)), f"{name}.{attr} has no docstring"
"""


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_is_exported_and_documented(module_name):
    if module_name == "entraflow.tensorflow":
        pytest.importorskip("tensorflow")
    run = subprocess.run([sys.executable, "-c", DOCUMENTED, module_name], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]


def test_the_stubs_name_exactly_what_the_native_module_exports():
    stub = ast.parse((Path(entraflow.__file__).parent / "_native.pyi").read_text())
    stubbed = {node.name for node in stub.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    stubbed |= {target.id for node in stub.body if isinstance(node, ast.AnnAssign) for target in [node.target]}
    exported = {name for name in dir(_native) if not name.startswith("_")} | {"__version__"}
    assert stubbed - {"StatTuple"} == exported - {"StatTuple"}, (stubbed ^ exported)
    for node in stub.body:  # each stubbed class's methods exist on the native class
        if isinstance(node, ast.ClassDef):
            native = getattr(_native, node.name)
            for member in node.body:
                if isinstance(member, ast.FunctionDef) and member.name != "__init__":
                    assert hasattr(native, member.name), f"{node.name}.{member.name}"
