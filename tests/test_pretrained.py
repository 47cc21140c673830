"""Cellpose's published models by name (biomodels.tasks.cellular.pretrained), against a
server on 127.0.0.1 standing in for Cellpose's model address and a checkpoint written
by Cellpose 3.1.1.2 itself (random weights): downloaded once into a cache laid out as
Cellpose lays it out, the conversion kept, the second use without a request; a cut
download, a 404, a name Cellpose does not publish, a transformer, a server that is down
and a damaged file are each one line."""

import http.server
import os
import shutil
import threading

import numpy as np
import pytest
import tifffile

from biomodels.errors import ConfigError, InputError
from conftest import run_cli, run_reference_script


class ModelServer(http.server.ThreadingHTTPServer):
    """Serves the files of `folder`; a file named in `cut` announces more bytes than it
    sends. Counts the requests."""

    def __init__(self, folder, cut=()):
        self.folder, self.cut, self.requests = folder, set(cut), []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(handler):
                name = handler.path.rsplit("/", 1)[-1]
                self.requests.append(name)
                path = os.path.join(self.folder, name)
                if not os.path.isfile(path):
                    handler.send_error(404, "Not Found")
                    return
                body = open(path, "rb").read()
                handler.send_response(200)
                handler.send_header("Content-Length", str(len(body) + (1000 if name in self.cut else 0)))
                handler.end_headers()
                handler.wfile.write(body)

            def log_message(handler, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/models"


@pytest.fixture(scope="module")
def cellpose_files(tmp_path_factory):
    """A CPnet checkpoint that Cellpose wrote (and a state dict of another network)."""
    folder = tmp_path_factory.mktemp("cellpose_written")
    run_reference_script("cpnet_outputs.py", folder, "2,4,8,16,32", 32, 7)
    return folder


@pytest.fixture
def server(cellpose_files, tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(cellpose_files / "cpnet.pth", served / "cyto3")
    shutil.copy(cellpose_files / "cpnet.pth", served / "nucleitorch_0")
    shutil.copy(cellpose_files / "other.pth", served / "livecell_cp3")
    model_server = ModelServer(str(served), cut={"nucleitorch_0"})
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(tmp_path / "cache"))
    monkeypatch.setenv("BIOMODELS_CELLPOSE_MODELS_URL", model_server.url)
    yield model_server
    model_server.shutdown()


def test_a_model_by_name_is_downloaded_once_and_converted_once(server, cellpose_files, tmp_path, monkeypatch):
    import biomodels
    from biomodels.pipelines import torch_checkpoint
    from biomodels.tasks.cellular import pretrained

    model = biomodels.load("cellpose:cyto3")
    assert server.requests == ["cyto3"]
    assert (tmp_path / "cache" / "cyto3").read_bytes() == (cellpose_files / "cpnet.pth").read_bytes()
    kept = [name for name in os.listdir(tmp_path / "cache") if name.endswith(".keras")]
    assert len(kept) == 1 and kept[0].startswith("cyto3.biomodels-")
    assert not [name for name in os.listdir(tmp_path / "cache") if name.startswith(".")]
    # the network answers as Cellpose's own did
    images = np.load(cellpose_files / "images.npy").transpose(0, 2, 3, 1)
    expected = np.load(cellpose_files / "maps.npy").transpose(0, 2, 3, 1)
    keras_model = pretrained.converted_model("cellpose:cyto3")
    assert np.abs(np.asarray(keras_model(images, training=False)) - expected).max() < 1e-4
    # the second use: no request, no conversion
    monkeypatch.setattr(torch_checkpoint, "read_cellpose_net", lambda *args: pytest.fail("converted again"))
    again = biomodels.load("cellpose:cyto3")
    assert server.requests == ["cyto3"] and again.config.nbase == model.config.nbase == (4, 8, 16, 32)
    image = np.random.default_rng(0).integers(0, 4000, (48, 40)).astype(np.uint16)
    np.testing.assert_array_equal(again.predict(image, diameter=30).masks, model.predict(image, diameter=30).masks)


def test_what_cannot_be_had_is_one_line_naming_the_model(server, tmp_path, monkeypatch):
    from biomodels.tasks.cellular import pretrained

    with pytest.raises(InputError, match=r"^cellpose:nuclei: the download from .*/nucleitorch_0 was cut short"):
        pretrained.checkpoint_path("cellpose:nuclei")
    with pytest.raises(InputError, match=r"^cellpose:cyto2: cannot download .*/cyto2torch_0 \(HTTP 404 Not Found\)"):
        pretrained.checkpoint_path("cellpose:cyto2")
    with pytest.raises(ConfigError, match="cellpose:cyto9: not a model Cellpose publishes"):
        pretrained.checkpoint_path("cellpose:cyto9")
    with pytest.raises(ConfigError, match="cellpose:cpsam: its network is a transformer"):
        pretrained.checkpoint_path("cellpose:cpsam")
    with pytest.raises(InputError, match=r"^cellpose:livecell_cp3: .*not a Cellpose CPnet.*remove it to download"):
        pretrained.converted_model("cellpose:livecell_cp3")
    assert sorted(os.listdir(tmp_path / "cache")) == ["livecell_cp3"]  # nothing half-downloaded
    monkeypatch.setenv("BIOMODELS_CELLPOSE_MODELS_URL", "http://127.0.0.1:9/models")  # nothing listens
    with pytest.raises(InputError, match=r"cellpose:bact_phase_cp3: cannot download .* without a network, put "):
        pretrained.checkpoint_path("cellpose:bact_phase_cp3")


def test_a_cache_laid_out_as_cellposes_needs_no_server(cellpose_files, tmp_path, monkeypatch):
    """predict --model=cellpose:cyto3, and train --init_from=cellpose:cyto3 checking the
    checkpoint against the configuration, with the file where Cellpose keeps it and no
    server at all."""
    cache = tmp_path / "cellpose_models"
    cache.mkdir()
    shutil.copy(cellpose_files / "cpnet.pth", cache / "cyto3")
    tifffile.imwrite(tmp_path / "cells.tif", np.random.default_rng(1).integers(0, 4000, (48, 40), np.uint16))
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(cache))
    monkeypatch.setenv("BIOMODELS_CELLPOSE_MODELS_URL", "http://127.0.0.1:9/models")  # nothing listens
    result = run_cli("biomodels.predict", "--task=cellular", "--model=cellpose:cyto3", f"--input={tmp_path / 'cells.tif'}",
                     f"--output={tmp_path / 'out'}", "--diameter=30")
    assert result.returncode == 0, result.stderr
    assert tifffile.imread(tmp_path / "out" / "cells_cp_masks.tif").shape == (48, 40)
    wrong = run_cli("biomodels.train", "--task=cellular", f"--model_dir={tmp_path / 'run'}", "--epochs=1",
                    "--init_from=cellpose:cyto3", "--set=nbase=8,16,32,64")
    assert wrong.returncode == 2 and "widths [4, 8, 16, 32]" in wrong.stderr and "Traceback" not in wrong.stderr
    assert not (tmp_path / "run").exists()


def disc_image(shape, radius, spacing, seed):
    """Bright discs of `radius` on a jittered grid, on a dim noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    image = rng.normal(200, 20, shape)
    for y in range(radius + 2, shape[0] - radius, spacing):
        for x in range(radius + 2, shape[1] - radius, spacing):
            cy, cx = y + rng.integers(-2, 3), x + rng.integers(-2, 3)
            image[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2] += 2000
    return image.astype(np.float32)


def test_size_estimation_follows_cellposes_size_model(tmp_path, monkeypatch):
    """The same CPnet and size model (both written by Cellpose 3.1.1.2, random weights) on
    discs at three scales and on an image of several tiles: the diameter from the style
    alone equals Cellpose's SizeModel.eval's to 1e-4 (Cellpose's tiles and padding); the
    refined one is within 2 % (with random weights neither finds cells, so both fall back
    to the size model's diam_mean: this part checks the fallback only). --diameter=0 on
    the command line with cellpose:cyto3 reports each image's estimate."""
    import json

    import biomodels
    from biomodels.tasks.cellular import data, sizes
    from biomodels.tasks.cellular.inference import estimate_diameter, resolve_settings
    from biomodels.tasks.base import option_values

    folder = tmp_path / "sizes"
    folder.mkdir()
    run_reference_script("cpnet_outputs.py", folder, "2,32,64,128,256", 32, 7)  # Cellpose's widths: its models load only those
    images = {"small": disc_image((160, 150), 5, 16, 0), "medium": disc_image((160, 150), 10, 26, 1),
              "large": disc_image((170, 160), 18, 44, 2), "tiled": disc_image((300, 260), 10, 26, 3)}
    for name, image in images.items():
        np.save(folder / f"image_{name}.npy", image)
    expected = json.loads(run_reference_script("size_estimate.py", folder, 5).strip().splitlines()[-1])
    size_model = sizes.read_size_model(str(folder / "size_cpnet.npy"))
    model = biomodels.load(str(folder / "cpnet.pth"))
    task = model.task
    settings = resolve_settings(model.predictor, model.config, option_values(task.predict_options, {}))
    settings = type(settings)(**{**settings.__dict__, "gray": True, "size_model": size_model})
    network = lambda tiles: model.predictor("normalised", images=np.ascontiguousarray(tiles, np.float32))  # noqa: E731
    for name, image in images.items():
        normalised = data.normalise(data.cell_channels(image, (0, 1), gray=True))
        diameter, by_style = estimate_diameter(network, normalised, settings)
        cellpose_diameter, cellpose_by_style = expected[name]
        assert by_style == pytest.approx(cellpose_by_style, rel=1e-4), name
        assert diameter == pytest.approx(cellpose_diameter, rel=0.02), name
    # the command line, the model by name with its size model in Cellpose's cache
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(folder / "cpnet.pth", cache / "cyto3")
    shutil.copy(folder / "size_cpnet.npy", cache / "size_cyto3.npy")
    tifffile.imwrite(tmp_path / "discs.tif", images["medium"].astype(np.uint16))
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(cache))
    monkeypatch.setenv("BIOMODELS_CELLPOSE_MODELS_URL", "http://127.0.0.1:9/models")
    result = run_cli("biomodels.predict", "--task=cellular", "--model=cellpose:cyto3", f"--input={tmp_path / 'discs.tif'}",
                     f"--output={tmp_path / 'out'}", "--diameter=0")
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("discs.tif: cell diameter"))
    assert float(line.split()[3]) == pytest.approx(expected["medium"][0], rel=0.02) and "(estimated)" in line
    with pytest.raises(ConfigError, match="has none"):
        model.predict(images["small"], diameter=0)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros(3))
    with pytest.raises(InputError, match="not a Cellpose size model"):
        sizes.read_size_model(str(bad))


def test_the_size_regression_recovers_a_known_relation():
    """Styles that hold the log-diameter along one direction: Cellpose's regression finds
    it, and the estimate answers each style's diameter."""
    from biomodels.tasks.cellular import sizes

    rng = np.random.default_rng(0)
    diameters = rng.uniform(10, 60, 200)
    direction = rng.normal(size=16)
    direction /= np.linalg.norm(direction)
    styles = np.outer(np.log(diameters / 30.0), direction) * 5 + rng.normal(0, 0.01, (200, 16))
    model = sizes.regression(styles, np.log(diameters / 30.0), diam_mean=30.0)
    estimates = [sizes.style_diameter(style, model) for style in styles]
    np.testing.assert_allclose(estimates, diameters, rtol=0.05)
    assert sizes.median_diameter(np.array([[1, 1, 0], [1, 1, 0], [0, 0, 2]])) == pytest.approx(
        np.median([2.0, 1.0]) / (np.pi ** 0.5 / 2))
