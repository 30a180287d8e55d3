"""The keras-hub plugin (examples/kseg-hub), installed for real: listed, trained, saved, loaded.

The plugin goes into a private folder (pip --target, as test_plugin.py does), so its 13
networks never join `kseg fit --all` or `kseg bench` of the other tests. keras-hub itself
must be installed (`make test` does, through `make hub`); without it every test here is skipped.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("keras_hub") is None,
    reason="keras-hub is not installed (make hub, or pip install keras-hub)",
)

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "kseg-hub"
MODELS = ["hub_deeplabv3_resnet18", "hub_deeplabv3_resnet50", "hub_deeplabv3plus_resnet18",
          "hub_deeplabv3plus_resnet50", *[f"hub_segformer_b{i}" for i in range(6)],
          "hub_unet_resnet18", "hub_unet_resnet34", "hub_unet_resnet50"]
K = 11  # classes of the synthetic scenes (CamVid's, void not counted)


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory):
    """pip-install the plugin into a private folder; that folder, for PYTHONPATH."""
    target = tmp_path_factory.mktemp("site")
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
           "--target", str(target), str(PLUGIN)]
    subprocess.run(cmd, check=True, capture_output=True, cwd=tmp_path_factory.mktemp("build"), timeout=300)
    assert list(target.glob("kseg_hub-*.dist-info/entry_points.txt")), "pip installed no entry points"
    return str(target)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from kseg.data.synth import write_synthetic

    root = tmp_path_factory.mktemp("data")
    write_synthetic(root, n_train=1, n_val=1, n_test=0, size=(64, 64), seed=0)
    return root


# The smallest configuration of each family, and its extra fit arguments.
FITS = {
    "hub_segformer_b0": ["--model-arg", "image_size=64"],  # SegFormer is built for one size: the patch
    "hub_deeplabv3_resnet18": [],
    "hub_unet_resnet18": [],
}

# One process with the plugin on its path runs `kseg models`, then one `kseg fit` of one
# step (one 64 px patch) per network, through the real CLI (click's runner, in process),
# then the local-preset checks (PRESETS). One process, not five: each fresh one pays
# 10-15 s of CPU importing TensorFlow, Keras and keras-hub before it does anything.
SESSION = """
import json
from click.testing import CliRunner
from kseg.cli.main import main

out = {{}}
done = CliRunner().invoke(main, ["models", "hub_*", "--json", "--no-params"])
out["models"] = [done.exit_code, done.output]
out["fits"] = {{}}
for arch, args in {fits!r}.items():
    done = CliRunner().invoke(main, ["fit", arch, *args, "--data", {data!r}, "--epochs", "1", "--batch-size",
                                     "1", "--patch", "64", "--grid", "1x1", "--precision", "float32",
                                     "--runs", {runs!r}])
    out["fits"][arch] = [done.exit_code, done.output + repr(done.exception or "")]
"""

# Presets saved with keras-hub's own save_to_preset, read from disk: a MiT preset (built at
# 64 px) seeds a SegFormer built at 96, a ResNet preset with its image converter seeds the
# U-Net's encoder and its input scaling; hub names never download.
PRESETS = """
import keras_hub, kseg
import numpy as np
from kseg.errors import KsegError
from kseg_hub.build import MIT_COMMON, RESNET_COMMON

def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights(), strict=True))

mit_dir, resnet_dir = {mit!r}, {resnet!r}
mit = keras_hub.models.MiTBackbone(image_shape=(64, 64, 3), hidden_dims=[32, 64, 160, 256],
                                   layerwise_depths=[2, 2, 2, 2], **MIT_COMMON)
mit.save_to_preset(mit_dir)
m = kseg.create_model("hub_segformer_b0", num_classes=3, preset=mit_dir, image_size=96)
presets = [f"segformer {{m.output_shape}} {{same(m.layers[2].layers[1].image_encoder, mit)}}"]
resnet = keras_hub.models.ResNetBackbone(stackwise_num_blocks=[2, 2, 2, 2], block_type="basic_block",
                                         **RESNET_COMMON)
resnet.save_to_preset(resnet_dir)
keras_hub.layers.ImageConverter(scale=0.5, offset=-1.0).save_to_preset(resnet_dir)
u = kseg.create_model("hub_unet_resnet18", num_classes=3, preset=resnet_dir)
scaling = u.get_layer("preprocess").get_config()
presets.append(f"unet {{same(u.get_layer('encoder'), resnet)}} {{scaling['scale']}} {{scaling['offset']}}")
for name, preset in [("hub_segformer_b0", "mit_b0_ade20k_512"), ("hub_unet_resnet50", resnet_dir)]:
    try:
        kseg.create_model(name, preset=preset)
    except KsegError as exc:
        presets.append(f"refused {{exc}}")
out["presets"] = presets
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def session(plugin_path, data, tmp_path_factory, run_python):
    """`(runs, {"models": [code, output], "fits": {arch: [code, output]}, "presets": [lines]})`."""
    runs, presets = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("presets")
    code = (SESSION.format(fits=FITS, data=str(data), runs=str(runs))
            + PRESETS.format(mit=str(presets / "mit"), resnet=str(presets / "resnet")))
    stdout = run_python(code, env={"PYTHONPATH": plugin_path}, timeout=900)
    return runs, json.loads(stdout.strip().splitlines()[-1])


def test_kseg_models_lists_the_keras_hub_networks(session):
    code, output = session[1]["models"]
    assert code == 0, output
    infos = json.loads(output)["models"]
    assert [i["name"] for i in infos] == MODELS
    assert {i["source"] for i in infos} == {"kseg-hub"} and {i["stride"] for i in infos} == {32}
    segformer = next(i for i in infos if i["name"] == "hub_segformer_b0")
    assert segformer["description"].startswith("SegFormer-B0 (keras-hub)")


@pytest.mark.parametrize("arch", list(FITS))
def test_kseg_fit_trains_one_step(session, arch):
    runs, results = session
    returncode, log = results["fits"][arch]
    assert returncode == 0, log
    run = runs / arch
    assert json.loads((run / "config.json").read_text())["arch"] == arch
    assert len((run / "history.csv").read_text().strip().splitlines()) == 2  # header + one epoch
    assert (run / "best.keras").stat().st_size > 0


def test_runs_load_without_the_plugin(session):
    """keras-hub's classes are registered serialisable and Keras imports keras_hub itself:
    each checkpoint loads, and predicts float32 logits at the input size, in this test
    process, where kseg_hub is not on the path (it is installed into a private folder)."""
    import keras
    import numpy as np

    runs, results = session
    if any(code for code, _ in results["fits"].values()):
        pytest.skip("a fit failed (see test_kseg_fit_trains_one_step)")
    assert importlib.util.find_spec("kseg_hub") is None
    for arch in FITS:
        model = keras.saving.load_model(runs / arch / "best.keras", compile=False)
        y = model.predict_on_batch(np.zeros((2, 64, 64, 3), "float32"))
        assert (y.shape, y.dtype) == ((2, 64, 64, K), np.float32), arch
    assert "kseg_hub" not in sys.modules


def test_a_local_preset_gives_its_weights_and_a_hub_name_is_refused(session):
    """See PRESETS: a MiT preset seeds a SegFormer at another size, a ResNet preset and its
    image converter seed the U-Net; a hub name and a preset of the wrong depth are refused."""
    lines = session[1]["presets"]
    assert lines[-4] == "segformer (None, 96, 96, 3) True"
    assert lines[-3] == "unet True 0.5 -1.0"
    assert lines[-2].startswith("refused hub_segformer_b0: preset 'mit_b0_ade20k_512' is not a local")
    assert "kseg never downloads" in lines[-2]
    assert lines[-1].startswith("refused hub_unet_resnet50: the preset's ResNetBackbone has "
                                "stackwise_num_blocks=[2, 2, 2, 2], hub_unet_resnet50 needs [3, 4, 6, 3]")
