"""Cellpose's published models by name (`cellpose:cyto3`), resolved as Cellpose resolves
them: the file in Cellpose's own model cache ($CELLPOSE_LOCAL_MODELS_PATH, else
~/.cellpose/models, under the file names Cellpose gives them), so a machine that ran
Cellpose needs no download; else downloaded once from Cellpose's model address
($BIOMODELS_CELLPOSE_MODELS_URL overrides it) into that cache, under a temporary name
renamed when whole. The Keras conversion is kept beside the checkpoint (keyed on its
size and modification time), so the second use does not convert again.

Only CPnet models are served: every name of Cellpose 3.1's list but its transformers.
"""

import logging
import os
import urllib.error
import urllib.request

from biomodels.errors import ConfigError, InputError

log = logging.getLogger("biomodels")

PREFIX = "cellpose:"
#: where Cellpose 3.1's models.py downloads its models from
CELLPOSE_MODELS_URL = "https://www.cellpose.org/models"
URL_VARIABLE = "BIOMODELS_CELLPOSE_MODELS_URL"
#: Cellpose 3.1's model names whose network is a CPnet
CPNET_MODELS = (
    "cyto3", "nuclei", "cyto2_cp3", "tissuenet_cp3", "livecell_cp3", "yeast_PhC_cp3", "yeast_BF_cp3",
    "bact_phase_cp3", "bact_fluor_cp3", "deepbacs_cp3", "cyto2", "cyto", "CPx", "neurips_cellpose_default",
    "neurips_grayscale_cyto2", "CP", "TN1", "TN2", "TN3", "LC1", "LC2", "LC3", "LC4",
)
#: names of Cellpose models whose network is not a CPnet (a transformer)
OTHER_NETWORKS = ("transformer_cp3", "neurips_cellpose_transformer", "cpsam")


def is_named(source):
    return str(source).startswith(PREFIX)


def cache_folder():
    """Cellpose's model cache: $CELLPOSE_LOCAL_MODELS_PATH, else ~/.cellpose/models."""
    return os.environ.get("CELLPOSE_LOCAL_MODELS_PATH") or os.path.join(os.path.expanduser("~"), ".cellpose", "models")


def file_name(name):
    """The file Cellpose keeps a model in: cyto, cyto2 and nuclei as NAMEtorch_0, the
    others under their name."""
    return f"{name}torch_0" if name in ("cyto", "cyto2", "nuclei") else name


def size_file_name(name):
    """The file of a model's size model, for the models Cellpose publishes one for."""
    if name == "cyto3":
        return "size_cyto3.npy"
    return f"size_{name}torch_0.npy" if name in ("cyto", "cyto2", "nuclei") else None


def size_model(source, show_progress=True):
    """The size model of `source` ("cellpose:NAME"; sizes.read_size_model's dict) from
    Cellpose's cache, downloaded there if missing; None for a model Cellpose publishes
    none for."""
    from biomodels.tasks.cellular.sizes import read_size_model

    checkpoint_path(source, show_progress)  # the name checked
    name = size_file_name(str(source)[len(PREFIX):])
    if name is None:
        return None
    path = os.path.join(cache_folder(), name)
    if not os.path.isfile(path):
        download(model_url(name), path, source, show_progress)
    return read_size_model(path)


def checkpoint_path(source, show_progress=True):
    """The local checkpoint of `source` ("cellpose:NAME"), downloaded into Cellpose's
    cache if it is not there."""
    name = str(source)[len(PREFIX):]
    if name in OTHER_NETWORKS:
        raise ConfigError(f"{source}: its network is a transformer, not Cellpose's CPnet; biomodels converts CPnet "
                          "models only")
    if name not in CPNET_MODELS:
        raise ConfigError(f"{source}: not a model Cellpose publishes; choose one of {', '.join(CPNET_MODELS)}")
    path = os.path.join(cache_folder(), file_name(name))
    if not os.path.isfile(path):
        download(model_url(file_name(name)), path, source, show_progress)
    return path


def model_url(file):
    """Where Cellpose publishes `file` ($BIOMODELS_CELLPOSE_MODELS_URL instead, if set)."""
    return f"{os.environ.get(URL_VARIABLE, CELLPOSE_MODELS_URL).rstrip('/')}/{file}"


def download(url, path, source, show_progress=True):
    """`url` into `path`, under a temporary name renamed when every announced byte came;
    one line naming `source` and the problem otherwise."""
    from biomodels.report import progress_bar

    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.download-{os.getpid()}")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            expected = int(response.headers.get("Content-Length") or 0)
            bar = progress_bar(max(1, expected // 2 ** 20), f"downloading {url}") if show_progress and expected else None
            received = 0
            while chunk := response.read(2 ** 20):
                out.write(chunk)
                received += len(chunk)
                if bar:
                    bar.update(min(received // 2 ** 20, expected // 2 ** 20))
        if expected and received != expected:
            raise InputError(source, f"the download from {url} was cut short ({received} of {expected} bytes)")
        os.replace(partial, path)
    except urllib.error.HTTPError as error:
        raise InputError(source, f"cannot download {url} (HTTP {error.code} {error.reason})") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise InputError(source, f"cannot download {url} ({reason}); without a network, put Cellpose's file "
                                 f"{os.path.basename(path)} in {os.path.dirname(path)}") from None
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return path


def converted_model(source, show_progress=True):
    """The CellposeNet of `source` ("cellpose:NAME"): read from its conversion beside the
    checkpoint when that is of this very file, else converted and kept."""
    import keras

    import biomodels.models  # noqa: F401  registers the custom classes for deserialisation
    from biomodels.atomic import atomic_path
    from biomodels.pipelines.torch_checkpoint import read_cellpose_net

    path = checkpoint_path(source, show_progress)
    status = os.stat(path)
    kept = f"{path}.biomodels-{status.st_size}-{status.st_mtime_ns}.keras"
    if os.path.isfile(kept):
        try:
            return keras.saving.load_model(kept, safe_mode=True)
        except Exception:  # a damaged conversion: convert again
            os.remove(kept)
    try:
        model = read_cellpose_net(path)
    except InputError as error:
        raise InputError(source, f"{error.problem} (the file {path}; remove it to download it again)") from None
    try:
        with atomic_path(kept) as tmp:
            model.save(tmp)
    except OSError as error:  # a read-only cache: the conversion is not kept
        log.info("could not keep the conversion of %s beside it (%s)", path, error)
    return model
