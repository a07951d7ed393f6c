"""Bring your own model, data and code (docs/byo.md, codedbft.training.byo): import paths and Python
objects on both backends, the same model bit for bit whichever way a source is given, a user's code
decoding exactly under attack, config.json labels and resume, the CLI, and the page's examples."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from codedbft.cli import main
from codedbft.cluster import RunConfig
from codedbft.cluster.trainer import Trainer, make_trainer
from codedbft.examples import custom
from codedbft.training import build_model, load_dataset

MOD = "codedbft.examples.custom"
# six workers, one Byzantine (omniscient c = 10, the same one every step): DRACO groups of three
BASE = dict(backend="local", workers=6, byzantine=1, batch_size=60, steps=12, eval_every=12, seed=3,
            redraw=False)
BLOBS = dict(dataset=f"{MOD}:blobs")


def run(cfg: RunConfig, backend=None, **objects) -> tuple[dict, Trainer]:
    tr = make_trainer(cfg, backend=backend, **objects)
    try:
        return tr.run(), tr
    finally:
        if backend is None:
            tr.close()


def sha(cfg: RunConfig, **objects) -> str:
    return run(cfg, **objects)[0]["model_sha256"]


# -- models --------------------------------------------------------------------------------------------
def test_a_model_by_import_path_equals_the_same_model_given_as_an_object():
    cfg = RunConfig(**BASE, **BLOBS)
    ds = load_dataset(f"{MOD}:blobs", cfg.seed)
    by_path = sha(cfg.replace(model=f"{MOD}:make_net"))
    assert by_path == sha(cfg, model=custom.make_net)  # the factory object
    assert by_path == sha(cfg.replace(model=f"{MOD}:TinyNet"))  # the class: in_features, out by name
    assert by_path == sha(cfg, model=custom.TinyNet)
    # an instance is used as it stands: built the way the runtime builds a factory's, the same model
    assert by_path == sha(cfg, model=build_model(custom.TinyNet, ds, cfg.seed))
    # model_params reach the factory (a different width: a different model)
    summary, tr = run(cfg.replace(model=f"{MOD}:TinyNet", model_params={"hidden": 4}))
    assert summary["model_sha256"] != by_path and tr.core.model.d == 8 * 4 + 4 + 4 * 3 + 3
    assert summary["inexact_steps"] == 0 and summary["flagged_total"] == BASE["steps"]


def test_registered_models_and_datasets_are_untouched_by_the_dispatch():
    ds = load_dataset("digits", 0)
    m = build_model("mlp", ds, 0)
    assert m.codedbft_task == "classification" and ds.name == "digits"
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        RunConfig(model="nope")


# -- datasets ------------------------------------------------------------------------------------------
def test_tensors_torch_datasets_factories_and_import_paths_give_the_same_model():
    cfg = RunConfig(**BASE, model=f"{MOD}:TinyNet")
    tensors = custom.blobs(cfg.seed)
    ref = sha(cfg, dataset=tensors)
    Xtr, ytr, Xte, yte = tensors
    assert ref == sha(cfg.replace(**BLOBS))  # import path of a factory (gets the run's seed by name)
    assert ref == sha(cfg, dataset=custom.blobs)  # the factory object
    assert ref == sha(cfg, dataset=(TensorDataset(Xtr, ytr), TensorDataset(Xte, yte)))
    item_by_item = (custom.BlobsDataset(True, seed=cfg.seed), custom.BlobsDataset(False, seed=cfg.seed))
    assert ref == sha(cfg, dataset=item_by_item)
    assert ref == sha(cfg, dataset=tuple(t.numpy() for t in tensors))  # arrays too
    # dataset_params go to the factory
    assert ref != sha(cfg.replace(**BLOBS, dataset_params={"features": 6}))


def test_conversion_infers_the_task_and_the_classes():
    from codedbft.training.byo import as_dataset

    X = torch.arange(40, dtype=torch.float64).reshape(10, 2, 2)
    ds = as_dataset((X[:8], np.array([0, 1, 2, 1, 0, 1, 2, 1], dtype=np.int32), X[8:], torch.tensor([4, 0])))
    assert ds.task == "classification" and ds.num_classes == 5 and ds.input_shape == (2, 2)
    assert ds.X_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64 and ds.num_train == 8

    class WithClasses(TensorDataset):
        classes = ("a", "b", "c", "d", "e", "f")

    pair = (WithClasses(X[:8], torch.zeros(8, dtype=torch.long)), TensorDataset(X[8:], torch.ones(2, dtype=torch.long)))
    assert as_dataset(pair).num_classes == 6
    reg = as_dataset((X[:8], torch.rand(8, 3), X[8:], torch.rand(2, 3)))
    assert reg.task == "regression" and reg.num_classes is None and reg.output_dim == 3
    for bad, match in [((X[:8], torch.zeros(7, dtype=torch.long), X[8:], torch.zeros(2, dtype=torch.long)), "N = 8"),
                       ((X[:8], -torch.ones(8, dtype=torch.long), X[8:], torch.zeros(2, dtype=torch.long)), ">= 0"),
                       ((X[:8], torch.zeros(8)), "must be a codedbft Dataset"),
                       ((X[:8], torch.zeros(8), X[8:, :1], torch.zeros(2)), "differ in shape")]:
        with pytest.raises(ValueError, match=match):
            as_dataset(bad)


def test_a_regression_dataset_and_model_of_your_own():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(300, 5, generator=g)
    y = X @ torch.arange(1.0, 6.0)  # a scalar target: the model's output must be (b,)

    class Linear(torch.nn.Module):
        def __init__(self, in_features):
            super().__init__()
            self.lin = torch.nn.Linear(in_features, 1, bias=False)

        def forward(self, x):
            return self.lin(x).squeeze(-1)

    summary, tr = run(RunConfig(**{**BASE, "steps": 60, "attack": None}, lr=0.05, momentum=0.0),
                      model=Linear, dataset=(X[:250], y[:250], X[250:], y[250:]))
    assert tr.core.model.loss_name == "mse" and summary["final_test_accuracy"] is None
    assert summary["final_loss"] < 0.05 * float((y**2).mean())


# -- codes ---------------------------------------------------------------------------------------------
def test_your_own_code_decodes_exactly_under_attack_and_equals_the_builtin_scheme():
    from codedbft.encoders import RepetitionCode

    cfg = RunConfig(**BASE, **BLOBS, model=f"{MOD}:TinyNet")
    builtin, _ = run(cfg)  # draco-repetition, r = 3
    mine, tr = run(cfg, scheme=custom.Triplicate(6))  # hand-written code and bitwise-vote decoder
    liar = tr.placement.byzantine_ids(0)
    assert mine["inexact_steps"] == 0 and mine["flagged_total"] == BASE["steps"]
    assert [i for i, c in enumerate(mine["flagged_per_worker"]) if c] == list(liar)
    assert mine["model_sha256"] == builtin["model_sha256"]
    assert tr.config.scheme == f"<object: {MOD}.Triplicate>" and mine["scheme"] == "code"
    assert sha(cfg, scheme=RepetitionCode(6, s=1)) == builtin["model_sha256"]  # a library code object
    # by import path (a factory of n): --scheme code --scheme-param code=pkg.mod:attr
    assert sha(cfg.replace(scheme="code", scheme_params={"code": f"{MOD}:triplicate"})) == builtin["model_sha256"]


def test_a_cyclic_code_object_and_a_non_linear_one_equal_their_builtin_schemes():
    from codedbft.encoders import ByzShieldCode, CyclicMDSCode

    cfg = RunConfig(**{**BASE, "steps": 4}, **BLOBS, model=f"{MOD}:TinyNet")
    cfg5 = cfg.replace(workers=5)  # a real cyclic MDS code needs n odd
    assert sha(cfg5, scheme=CyclicMDSCode(5, 1)) == sha(cfg5.replace(scheme="draco-cyclic"))
    # ByzShield has no B: its workers send stacked (l, d) messages, decoded by the code itself
    byzshield, tr = run(cfg.replace(scheme="byzshield", scheme_params={"r": 2}))  # n = r*l = 2*3, k = 9 files
    assert tr.scheme.stacked and sha(cfg, scheme=ByzShieldCode(3, 2, q=1)) == byzshield["model_sha256"]


def test_a_named_scheme_registered_by_the_user():
    from codedbft.schemes import SCHEMES, register_scheme
    from codedbft.schemes.code import CodeScheme

    register_scheme("my-triplicate", lambda c: CodeScheme(custom.Triplicate(c.workers), c, name="my-triplicate"),
                    params=())
    try:
        cfg = RunConfig(**BASE, **BLOBS, model=f"{MOD}:TinyNet")
        summary, _ = run(cfg.replace(scheme="my-triplicate"))
        assert summary["scheme"] == "my-triplicate" and summary["model_sha256"] == sha(cfg)
    finally:
        SCHEMES.unregister("my-triplicate")


def test_bad_objects_and_paths_are_configuration_errors():
    cfg = RunConfig(**BASE, **BLOBS, model=f"{MOD}:TinyNet")
    cases = [
        (lambda: RunConfig(model="nosuch.module:factory"), "cannot import model 'nosuch.module:factory': "
                                                            "ModuleNotFoundError"),
        (lambda: RunConfig(model=f"{MOD}:nothing"), "has no attribute 'nothing'"),
        (lambda: RunConfig(dataset=f"{MOD}"), "unknown dataset"),
        (lambda: RunConfig(dataset=f"{MOD}:__doc__"), "must name a codedbft Dataset"),
        (lambda: RunConfig(dataset=f"{MOD}:blobs", dataset_params={"rows": 3}), r"unknown dataset parameter \['rows'\]"),
        (lambda: RunConfig(model=f"{MOD}:TinyNet", model_params={"width": 3}), r"unknown model parameter \['width'\]"),
        (lambda: RunConfig(model=f"{MOD}:TinyNet", model_params={"ds": 3}), "supplied by the runtime"),
        (lambda: RunConfig(model=f"{MOD}:BitwiseVote"), r"needs parameters \['n', 'r'\]"),
        (lambda: make_trainer(cfg.replace(model_params={"hidden": 3}), model=custom.TinyNet(8, 3)), "no model_params"),
        (lambda: make_trainer(cfg, model=f"{MOD}:TinyNet"), "takes a Python object"),
        (lambda: make_trainer(cfg, scheme=custom.Triplicate(9)), "n=9 workers but the run has workers=6"),
        (lambda: make_trainer(cfg, scheme=object()), "must be a Scheme or a Code"),
        (lambda: make_trainer(cfg, dataset=[1, 2, 3]), "must be a codedbft Dataset"),
        (lambda: make_trainer(cfg.replace(model="<object: x.Y>")), "pass the same object again"),
        (lambda: make_trainer(cfg.replace(setting="decentralized", nodes=6), scheme=custom.Triplicate(6)),
         "takes no scheme= object"),
        (lambda: make_trainer(cfg.replace(scheme="code")), "needs scheme param code="),
        (lambda: make_trainer(cfg.replace(aggregator="median"), scheme=custom.Triplicate(6)), "no aggregator"),
    ]
    for build, match in cases:
        with pytest.raises(ValueError, match=match):
            build()
    with pytest.raises(ValueError, match="returned int, not an nn.Module"):
        make_trainer(cfg, model=lambda ds: 3)


def test_config_json_records_labels_and_resume_needs_the_same_objects(tmp_path):
    cfg = RunConfig(**{**BASE, "checkpoint_every": 5}, model=f"{MOD}:TinyNet")
    data = custom.blobs(cfg.seed)
    full, _ = run(cfg, dataset=data, scheme=custom.Triplicate(6))
    cut = make_trainer(cfg, run_dir=str(tmp_path), dataset=data, scheme=custom.Triplicate(6))
    for _ in range(7):
        cut.step()
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model"] == f"{MOD}:TinyNet" and saved["dataset"] == "<object: tuple>"
    assert saved["scheme"] == f"<object: {MOD}.Triplicate>" and saved["scheme_info"]["name"] == "code"
    with pytest.raises(ValueError, match="dataset '<object: tuple>' was given as a Python object"):
        Trainer.resume(str(tmp_path), scheme=custom.Triplicate(6))
    with pytest.raises(ValueError, match="this run's scheme was <object: .*Triplicate>, got <object: .*RepetitionCode>"):
        from codedbft.encoders import RepetitionCode

        Trainer.resume(str(tmp_path), dataset=data, scheme=RepetitionCode(6, s=1))
    resumed = Trainer.resume(str(tmp_path), dataset=data, scheme=custom.Triplicate(6))
    assert resumed.step_idx == 5 and resumed.run()["model_sha256"] == full["model_sha256"]
    # codedbft inspect reads the run directory (labels are plain strings)
    assert RunConfig.from_dict({k: v for k, v in saved.items() if k in RunConfig.field_names()}).dataset == "<object: tuple>"


def test_the_other_settings_take_your_model_and_data():
    dec = dict(setting="decentralized", backend="local", nodes=6, byzantine=1, connection=0.8, rule="ubar",
               attack="gaussian", batch_size=120, steps=5, eval_every=5, seed=1)
    srv = dict(setting="byzantine-servers", backend="local", servers=4, byzantine_servers=1, workers=5, byzantine=1,
               batch_size=60, momentum=0.0, steps=4, eval_every=4, attack="gaussian", attack_params={"sigma": 0.05})
    for kw in (dec, srv):
        cfg = RunConfig(**kw, model=f"{MOD}:TinyNet", **BLOBS)
        assert sha(cfg) == sha(cfg.replace(model="mlp", dataset="digits"), model=custom.TinyNet,
                               dataset=custom.blobs), kw["setting"]


# -- the command line ----------------------------------------------------------------------------------
def test_cli_takes_import_paths_and_config_json_records_them(tmp_path, capsys):
    argv = ["train", "--backend", "local", "--model", f"{MOD}:TinyNet", "--model-param", "hidden=8",
            "--dataset", f"{MOD}:blobs", "--scheme", "code", "--scheme-param", f"code={MOD}:triplicate",
            "--workers", "6", "--byzantine", "1", "--batch-size", "60", "--steps", "6", "--seed", "3",
            "--run-dir", str(tmp_path / "run"), "--no-progress"]
    assert main(argv) == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"] == f"{MOD}:TinyNet" and saved["dataset"] == f"{MOD}:blobs"
    assert saved["model_params"] == {"hidden": 8} and saved["scheme_params"]["code"] == f"{MOD}:triplicate"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    cfg = RunConfig(**{**BASE, "steps": 6}, model=f"{MOD}:TinyNet", model_params={"hidden": 8}, **BLOBS)
    assert summary["model_sha256"] == sha(cfg) and summary["inexact_steps"] == 0
    assert main(["train", "--resume", str(tmp_path / "run"), "--steps", "8", "--no-progress"]) == 0  # imports again
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0 and "import path package.module:attribute" in capsys.readouterr().out


@pytest.mark.parametrize("flag,path,match", [
    ("--model", "mypkg.nets:factory", "cannot import model 'mypkg.nets:factory': ModuleNotFoundError: No module named 'mypkg'"),
    ("--dataset", f"{MOD}:missing", f"cannot import dataset '{MOD}:missing'"),
])
def test_cli_bad_import_path_exits_2_naming_it(tmp_path, capsys, flag, path, match):
    with pytest.raises(SystemExit) as e:
        main(["train", "--backend", "local", flag, path, "--run-dir", str(tmp_path), "--no-progress"])
    assert e.value.code == 2 and match in capsys.readouterr().err
    assert not (tmp_path / "config.json").exists()


# -- docs/byo.md -------------------------------------------------------------------------------------
DOC = Path(__file__).resolve().parents[1] / "docs" / "byo.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_docs_python_examples_run(tmp_path, monkeypatch):
    from codedbft.schemes import SCHEMES

    blocks = _blocks("python")
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}
    try:
        for i, code in enumerate(blocks):
            exec(compile(code, f"docs/byo.md[python {i}]", "exec"), namespace)
    finally:
        if "triplicate" in SCHEMES:
            SCHEMES.unregister("triplicate")
    assert namespace["summary"]["inexact_steps"] == 0


def test_the_docs_command_lines_run(tmp_path, monkeypatch):
    lines = [line for block in _blocks("bash") for line in block.replace("\\\n", " ").splitlines()
             if line.startswith("codedbft train")]
    assert len(lines) == 2
    monkeypatch.chdir(tmp_path)
    for i, line in enumerate(lines):
        argv = shlex.split(line)[1:]
        assert main([*argv, "--run-dir", str(tmp_path / f"run{i}"), "--no-progress"]) == 0, line
        assert json.loads((tmp_path / f"run{i}" / "summary.json").read_text())["inexact_steps"] == 0


# -- Ray: the objects shipped to real actors, the same model bit for bit -------------------------------
@pytest.mark.ray
def test_objects_and_import_paths_train_the_same_model_on_ray_and_locally(ray_backend):
    cfg = RunConfig(**{**BASE, "steps": 5, "eval_every": 5}, timeout_s=120.0)
    ds = load_dataset(f"{MOD}:blobs", cfg.seed)
    objects = dict(model=build_model(custom.TinyNet, ds, cfg.seed), dataset=custom.blobs(cfg.seed),
                   scheme=custom.Triplicate(6))  # an nn.Module instance, tensors, a hand-written code
    local, _ = run(cfg, **objects)
    remote, tr = run(cfg.replace(backend="ray"), backend=ray_backend, **objects)
    assert remote["model_sha256"] == local["model_sha256"]
    assert remote["inexact_steps"] == 0 and remote["flagged_total"] == 5 and remote["erasures_total"] == 0
    assert len(ray_backend.actors) >= 1 and remote["backend"] == "ray"
    paths = cfg.replace(model=f"{MOD}:TinyNet", **BLOBS, scheme="code", scheme_params={"code": f"{MOD}:triplicate"})
    by_path, _ = run(paths.replace(backend="ray"), backend=ray_backend)  # each actor imports the paths
    assert by_path["model_sha256"] == local["model_sha256"]


def test_the_readme_bring_your_own_example_runs(tmp_path, monkeypatch):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Bring your own model, data and code", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}
    exec(compile(code, "README.md[bring your own]", "exec"), namespace)
    assert namespace["summary"]["flagged_total"] == 30 and namespace["summary"]["steps"] == 30
