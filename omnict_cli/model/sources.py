"""Where a pretrained model comes from: a local directory, or a Hugging Face hub id resolved to one.

``resolve_pretrained`` is the one place that turns what a user typed after
``--model``, ``--vision`` or ``--llm`` into a local directory:

- a value that is an existing directory is used as it is;
- otherwise ``org/name`` or ``org/name@revision`` is a hub id, fetched with
  ``huggingface_hub.snapshot_download`` into the user's Hugging Face cache.
  Online it downloads what is missing; offline (``HF_HUB_OFFLINE=1``, or no
  network) it reads the cache alone. Only weights in safetensors, configs,
  tokenizer files and index JSON are fetched: never a pickle (``.bin``,
  ``.pt``, ``.pkl``) and never code (``.py``).

The environment is read at call time, not when ``huggingface_hub`` was
imported, so ``HF_HOME``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` set by a
caller (or a test) after import are honoured.

``resolve_model`` goes one step further for ``--model``: the directory must
be an omnict model, or a checkpoint in the authors' release layout, which is
imported on first use into omnict's cache (``import_cache``). Its weights
files are checked from their headers, so a garbage file is one line.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from omnict_cli.errors import OmnictError

HUB_FILE_PATTERNS = [
    "*.json",  # config.json, generation_config.json, tokenizer files, model.safetensors.index.json
    "*.safetensors",
    "*.txt",  # merges.txt of BPE tokenizers
    "*.model",  # sentencepiece tokenizers
    "*.tiktoken",
    "*.jinja",  # chat templates kept beside the tokenizer
]
# A hub repo id: one "/" between two names of letters, digits, "-", "_", "."; an optional "@revision".
_HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<revision>[\w./-]+))?$")
_TRUE = {"1", "on", "yes", "true"}


class ModelSourceError(OmnictError):
    """A ``--model`` / ``--vision`` / ``--llm`` value that names no usable directory or hub repository."""


@dataclass(frozen=True)
class ResolvedSource:
    """A pretrained model found on disk, and where it came from.

    ``path`` is a local directory; ``hub_id`` and ``commit`` are set when it
    came from the hub (``commit`` is the snapshot's full hash); ``given`` is
    the value as the user typed it.
    """

    path: Path
    hub_id: str | None = None
    commit: str | None = None
    given: str = ""

    @property
    def description(self) -> str:
        """For logs: ``org/name@<commit>`` for a hub snapshot, else the path as given."""
        if self.hub_id:
            return f"{self.hub_id}@{self.commit}" if self.commit else self.hub_id
        return self.given or str(self.path)

    def to_dict(self) -> dict:
        """For records: ``{"hub_id", "commit"}`` or ``{"path"}``."""
        if self.hub_id:
            return {"hub_id": self.hub_id, "commit": self.commit}
        return {"path": self.given or str(self.path)}


def parse_hub_id(value: str) -> tuple[str, str | None] | None:
    """``(repo_id, revision)`` when ``value`` reads as ``org/name[@revision]``, else None."""
    match = _HUB_ID.match(value)
    if match is None or value.startswith((".", "~")) or ".." in match.group("repo"):
        return None
    return match.group("repo"), match.group("revision")


def hub_cache_dir() -> Path:
    """The hub cache in use: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else huggingface_hub's default."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expandvars(os.environ["HF_HUB_CACHE"])).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_offline() -> bool:
    """True when the user turned the hub off (``HF_HUB_OFFLINE`` or the older ``TRANSFORMERS_OFFLINE``)."""
    flag = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return flag.strip().lower() in _TRUE


def resolve_pretrained(value: str | Path) -> ResolvedSource:
    """A local directory for ``value`` (see the module notes); raises ModelSourceError in one line."""
    given = str(value)
    path = Path(given).expanduser()
    if path.is_dir():
        return ResolvedSource(path=path, given=given)
    if isinstance(value, str) and (hub := parse_hub_id(given)) is not None:
        return _from_hub(*hub, given=given)
    if path.exists():
        raise ModelSourceError("is a file, not a model directory", path=given)
    raise ModelSourceError(
        "directory not found, and not a hub id (org/name[@revision])",
        path=given,
        hint="Give a model directory, or a Hugging Face hub id such as Alibaba-DAMO-Academy/OmniCT-3B[@revision]",
    )


def resolve_model(value: str | Path, *, echo=print) -> ResolvedSource:
    """An omnict model directory for ``value``: as it is, or the cached import of a release checkpoint.

    The returned source keeps where it came from (hub id and commit, or the path
    as given) while ``path`` is the directory to load. ``echo`` receives one line
    when a first-use import starts.
    """
    from omnict_cli.model.safetensors_only import require_safetensors
    from omnict_cli.model.weights_files import check_weights_dir

    source = resolve_pretrained(value)
    _check_has_safetensors(source)
    check_weights_dir(source.path)  # a garbage file is named before anything reads it as a model or a release
    if not is_omnict_model_dir(source.path):
        if not _is_release_layout(source.path):
            raise ModelSourceError(
                "neither an omnict model directory (config.json with model_type 'omnict') "
                "nor a checkpoint in the OmniCT authors' release layout",
                path=source.description,
                hint="Build one with `omnict build-model` or `omnict import-weights`, or see docs/weights.md",
            )
        from omnict_cli.model.import_cache import cached_import

        source = replace(source, path=cached_import(source, echo=echo))
    require_safetensors(source.path)  # pickled weights: one line saying how to convert them
    return source


def _check_has_safetensors(source: ResolvedSource) -> None:
    """A folder without ``*.safetensors`` is refused here: its pickles named with how to convert them, if any."""
    from omnict_cli.model.safetensors_only import pickled_weight_files, require_safetensors

    if any(source.path.glob("*.safetensors")):
        return
    if pickled_weight_files(source.path):
        require_safetensors(source.path)  # raises: the one pickle refusal every loader gives
    fetched = " (a hub id fetches *.safetensors only)" if source.hub_id else ""
    raise ModelSourceError(f"no *.safetensors weights{fetched}", path=source.description)


def is_omnict_model_dir(folder: Path) -> bool:
    """True when ``folder/config.json`` says ``model_type: omnict``; a config that is not JSON is one line."""
    config = folder / "config.json"
    if not config.is_file():
        return False
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as error:
        raise ModelSourceError(f"config.json is not a JSON object ({error})", path=config) from error
    return model_type == "omnict"


def _is_release_layout(folder: Path) -> bool:
    from omnict_cli.model.release_import import is_release_layout

    return is_release_layout(folder)


def _from_hub(repo_id: str, revision: str | None, given: str) -> ResolvedSource:
    """Fetch (or, offline, find in the cache) the snapshot of ``repo_id`` at ``revision``."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = hub_offline()
    cache = hub_cache_dir()
    shown = f"{repo_id}@{revision}" if revision else repo_id
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache,
            local_files_only=offline,
            allow_patterns=HUB_FILE_PATTERNS,
        )
    except (RepositoryNotFoundError, RevisionNotFoundError) as error:  # subclasses of HfHubHTTPError: first
        what = "revision" if isinstance(error, RevisionNotFoundError) else "repository"
        raise ModelSourceError(
            f"hub id {shown}: no such {what} on the hub (or it is private or gated)",
            hint="Check the spelling; for a gated repository run `huggingface-cli login` first",
        ) from error
    except LocalEntryNotFoundError as error:
        raise ModelSourceError(_not_cached_message(shown, cache, offline)) from error
    except HFValidationError as error:
        raise ModelSourceError(f"hub id {shown} is not a valid repository id ({error})") from error
    except (HfHubHTTPError, OSError) as error:
        raise ModelSourceError(f"hub id {shown}: download failed ({type(error).__name__}: {error})") from error
    folder = Path(folder)
    return ResolvedSource(path=folder, hub_id=repo_id, commit=folder.name, given=given)


def _not_cached_message(shown: str, cache: Path, offline: bool) -> str:
    if offline:
        return (
            f"hub id {shown} not in the local cache {cache} (HF_HUB_OFFLINE is set); run once online or copy the cache"
        )
    return (
        f"hub id {shown} not in the local cache {cache} and the hub cannot be reached; "
        "connect to the network once, or copy the cache"
    )
