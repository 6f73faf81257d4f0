"""``omnict import-weights``: turn the authors' released OmniCT checkpoint into an omnict model directory.

The release (``Alibaba-DAMO-Academy/OmniCT-3B``/``-7B``) is a LLaVA-style
safetensors checkpoint whose tensor names and config keys are not public.
:func:`import_release` finds them from the checkpoint itself
(:mod:`~omnict_cli.model.release_keys` for names and the projector's shapes,
:mod:`~omnict_cli.model.release_config` for sizes), takes the vision tower from
the source or from ``--vision`` (stock SigLIP-so400m by default, as the
authors' inference does), and writes config.json, weights and tokenizer
tensor by tensor (:mod:`~omnict_cli.model.safetensors_writer`), so peak memory
stays near one tensor. It refuses, naming every tensor, when a tensor has no
place, a parameter stays unfilled, two tensors claim one place or shapes
disagree. The model is built in ``.<out>.partial-<pid>`` beside ``out``,
verified (:mod:`~omnict_cli.model.release_verify`) and renamed into place
only then: a killed import leaves no model at ``out``, and its partial
folder is removed by the next import.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from omnict_cli.atomic import apply_umask, check_destination
from omnict_cli.errors import OmnictError
from omnict_cli.model import release_config, release_keys
from omnict_cli.model.checkpoint_files import CheckpointFiles
from omnict_cli.model.safetensors_writer import TensorToWrite, write_model_files

DEFAULT_VISION = "google/siglip-so400m-patch14-384"
LLM_TARGET = "language_model."
VISION_TARGET = "spatial_encoder.vision_tower."
PROJECTOR_TARGET = "spatial_encoder.multi_modal_projector."
_TORCH_TO_SAFETENSORS = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}
_SAFETENSORS_TO_TORCH = {code: name for name, code in _TORCH_TO_SAFETENSORS.items()}


class ImportRefused(OmnictError):
    """The checkpoint cannot be imported as it is; ``reasons`` names every offending tensor."""

    def __init__(self, reasons: list[str], *, path=None, hint: str = ""):
        self.reasons = list(reasons)
        super().__init__("; ".join(self.reasons), path=path, hint=hint)


KEY_MAP_HINT = "Rename or drop tensors with --key-map FILE (JSON regex renames; see docs/model.md)"


@dataclass(frozen=True)
class PlacementRow:
    """One line of the placement table: source tensor -> omnict parameter (``""`` when dropped)."""

    source: str
    target: str
    shape: tuple[int, ...]
    dtype: str
    note: str = ""


@dataclass
class ImportReport:
    """What :func:`import_release` found and did."""

    source: Path
    out: Path
    rows: list[PlacementRow]
    inferred: dict[str, object]
    assumptions: list[str]
    warnings: list[str] = field(default_factory=list)
    checks: list = field(default_factory=list)
    """:class:`~omnict_cli.model.release_verify.Check` results (empty with ``verify=False`` or ``dry_run``)"""
    dry_run: bool = False


def is_release_layout(path) -> bool:
    """True for a directory in the release layout: config.json and safetensors whose names put Qwen2 tensors
    under a LLaVA-style prefix and/or hold other (projector) tensors; False for an omnict model directory."""
    folder = Path(path)
    if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
        return False
    config, _ = release_config.read_json_config(folder)
    if config.get("model_type") == "omnict":
        return False
    try:
        names = list(CheckpointFiles(folder).entries)
    except OmnictError:
        return False
    found = release_keys.sort_names(names)
    if not found.llm:
        return False
    prefixed = any(source != target for target, sources in found.llm.items() for source in sources)
    return prefixed or bool(found.others)


def import_release(
    source, out, *, vision=None, key_map=None, dry_run=False, verify=True, echo=print, extra_checks=()
) -> ImportReport:
    """Import the release-style checkpoint ``source`` into the omnict model directory ``out``.

    Args:
        source: the release directory (or a hub id, resolved with ``omnict_cli.model.sources``).
        out: the directory to create; it must not exist.
        vision: SigLIP directory or hub id, used when ``source`` has no vision tensors
            (default ``google/siglip-so400m-patch14-384``); its config also describes source vision tensors.
        key_map: path of a JSON file of regex renames applied to the source names first.
        dry_run: find the placement and print it; write nothing.
        verify: compare with stock Qwen2/SigLIP built from the same tensors before publishing ``out``.
        echo: where the table and notes go, one line per call.
        extra_checks: callables ``check(model_dir) -> Check`` run on the finished staging folder
            (the command line adds one ``ask`` on a bundled example this way).

    Raises:
        ImportRefused: the placement, the verification or a check failed (``out`` is not created).
    """
    source_dir, out = _local_dir(source, "SOURCE"), Path(out)
    if not dry_run:
        _check_out(out)
    plan = _plan(source_dir, vision, key_map)
    report = ImportReport(source_dir, out, plan.rows, plan.inferred, plan.assumptions, plan.warnings, dry_run=dry_run)
    for line in plan.warnings:
        echo(f"warning: {line}")
    for line in format_table(plan.rows):
        echo(line)
    for key, value in plan.inferred.items():
        echo(f"inferred {key}: {value}")
    if dry_run:
        return report
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    remove_stale_partials(out)
    try:
        _write(plan, staging)
        if verify:
            report.checks = _verify(plan, staging, extra_checks, echo)
        _publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for line in report.assumptions:
        echo(f"not verifiable without the authors' code: {line}")
    echo(f"wrote {out}")
    return report


def format_table(rows: list[PlacementRow]) -> list[str]:
    """The placement table as text lines: source -> omnict name, shape, dtype, note."""
    width = max((len(row.source) for row in rows), default=10)
    lines = [f"{'source tensor':<{width}}  ->  omnict parameter  shape  dtype"]
    for row in rows:
        target = row.target or "(not imported)"
        note = f"  ({row.note})" if row.note else ""
        lines.append(f"{row.source:<{width}}  ->  {target}  {list(row.shape)}  {row.dtype}{note}")
    return lines


# ---- planning: every source tensor to its place ---------------------------------------------------


@dataclass
class _Plan:
    """Everything the writer and the verification need, found before any byte is written."""

    config: object  # OmniCTConfig
    tokenizer: object
    dtype: object  # torch.dtype
    text_config: object
    vision_config: object
    vision_feature_layer: int
    targets: dict  # omnict parameter -> (CheckpointFiles, source name)
    source_dir: Path
    zero_biases: dict = field(default_factory=dict)  # projector bias -> shape, for bias-free release layers
    rows: list[PlacementRow] = field(default_factory=list)
    inferred: dict = field(default_factory=dict)
    assumptions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _plan(source_dir: Path, vision, key_map) -> _Plan:
    """Place every tensor and infer every size, or raise ImportRefused with all the reasons found."""
    release, warnings = release_config.read_json_config(source_dir)
    if release.get("model_type") == "omnict":
        raise ImportRefused(["already an omnict model directory"], path=source_dir, hint="Pass it to --model as it is")
    files = _read(source_dir)
    found = release_keys.sort_names(files.entries, _key_map(key_map))
    reasons = []
    llm = _claims(found.llm, files, reasons)
    vision_files, vision_found, vision_given = _vision_source(files, found, release, vision, reasons, warnings)
    vision_tensors = _claims(vision_found.vision, vision_files, reasons)
    if "model.embed_tokens.weight" not in llm:
        reasons += release_keys.unknown_llm_prefix_hint(found.others)
    plan = _sized_plan(source_dir, release, llm, vision_tensors, vision_given, reasons)
    projector_shapes = {name: files.entries[name].shape for name in found.others}
    projector, projector_reasons = release_keys.match_projector(
        projector_shapes, plan.text_config.hidden_size, plan.vision_config.hidden_size
    )
    if projector is None:
        raise ImportRefused(reasons + projector_reasons, path=source_dir, hint=KEY_MAP_HINT)
    plan.warnings = warnings
    plan.targets.update({LLM_TARGET + name: (files, entry.name) for name, entry in llm.items()})
    plan.targets.update({VISION_TARGET + name: (vision_files, e.name) for name, e in vision_tensors.items()})
    plan.targets.update({PROJECTOR_TARGET + name: (files, src) for name, src in projector.sources.items()})
    no_place = [f"{name} {list(files.entries[name].shape)} has no place" for name in projector.unplaced]
    reasons += _configure(plan, release, projector)
    reasons += _check_targets(plan, no_place) if plan.config is not None else _capped(no_place)
    if reasons:
        raise ImportRefused(reasons, path=source_dir, hint=KEY_MAP_HINT)
    plan.rows = _rows(plan, files, found, vision_files, vision_found)
    return plan


def _sized_plan(source_dir: Path, release: dict, llm: dict, vision_tensors: dict, vision_given, reasons) -> _Plan:
    """A plan with the LLM and vision configs; refused here when their sizes cannot be found."""
    text, text_inferred, text_reasons = release_config.text_config(
        release, {name: entry.shape for name, entry in llm.items()}
    )
    visual, visual_inferred, visual_reasons = release_config.vision_config(
        vision_given, {name: entry.shape for name, entry in vision_tensors.items()}
    )
    reasons += text_reasons + visual_reasons
    if text is None or visual is None:
        raise ImportRefused(reasons, path=source_dir, hint=KEY_MAP_HINT)
    return _Plan(
        config=None,
        tokenizer=None,
        dtype=_torch_dtype(llm["model.embed_tokens.weight"].dtype),
        text_config=text,
        vision_config=visual,
        vision_feature_layer=int(release.get("mm_vision_select_layer", -2)),
        targets={},
        source_dir=source_dir,
        inferred={**text_inferred, **visual_inferred},
    )


def _key_map(path) -> list:
    try:
        return release_keys.load_key_map(path)
    except OmnictError as error:
        raise ImportRefused([error.message], path=error.path, hint=error.hint) from error


def _read(folder: Path) -> CheckpointFiles:
    try:
        return CheckpointFiles(folder)
    except OmnictError as error:
        raise ImportRefused([error.message], path=error.path, hint=error.hint) from error


def _claims(claims: dict[str, list[str]], files: CheckpointFiles, reasons: list[str]) -> dict:
    """Place -> the one source entry claiming it; two claimants for one place become a reason each."""
    placed = {}
    for target, sources in claims.items():
        if len(sources) > 1:
            reasons.append(f"{len(sources)} tensors could fill {target}: {', '.join(sources)}")
        placed[target] = files.entries[sources[0]]
    return placed


def _vision_source(files, found, release: dict, vision, reasons: list[str], warnings: list[str]):
    """``(files, sorted names, vision config dict or None)``: the source's vision tower, else ``--vision``'s."""
    given = release.get("vision_config") if isinstance(release.get("vision_config"), dict) else None
    if found.vision and (given is not None or vision is None):
        if vision is not None:
            warnings.append(f"the source has its own vision tower and config; --vision {vision} is not used")
        return files, found, given
    vision_dir = _local_dir(vision or DEFAULT_VISION, "--vision")
    vision_config, _ = release_config.read_json_config(vision_dir)
    vision_config = vision_config.get("vision_config", vision_config)
    if found.vision:  # the source's tensors, described by --vision's config
        return files, found, vision_config
    vision_files = _read(vision_dir)
    vision_found = release_keys.sort_names(vision_files.entries, vision_only=True)
    reasons += [f"{vision_dir}: {name} has no place in a SigLIP vision model" for name in vision_found.others]
    return vision_files, vision_found, vision_config


def _configure(plan: _Plan, release: dict, projector) -> list[str]:
    """Build the OmniCTConfig and the tokenizer; returns refusal reasons."""
    from omnict_cli.model.configuration_omnict import OmniCTConfig

    positional_width = projector.slice_input - plan.vision_config.hidden_size
    split = release_config.split_positional_width(positional_width)
    if split is None:
        return [
            f"positional width {positional_width} (W_s input {projector.slice_input} - vision width "
            f"{plan.vision_config.hidden_size}) is odd; Eq. 2's sinusoid codes come in sine/cosine pairs"
        ]
    plan.inferred.update(
        {
            "volume unshuffle m": f"{projector.volume_unshuffle} (W_v input = W_s input x {projector.volume_unshuffle**2})",
            "positional width d_z + d_y + d_x": f"{positional_width} = {' + '.join(map(str, split))}",
            "projector hidden width": projector.hidden_size,
            "weights dtype": str(plan.dtype).removeprefix("torch."),
        }
    )
    token_ids, reasons = _tokenizer(plan)
    if reasons:
        return reasons
    side = plan.vision_config.image_size
    try:
        plan.config = OmniCTConfig(
            vision_config=plan.vision_config.to_dict(),
            text_config=plan.text_config.to_dict(),
            vision_feature_layer=plan.vision_feature_layer,
            tpe_depth_dim=split[0],
            tpe_row_dim=split[1],
            tpe_col_dim=split[2],
            slice_unshuffle=1,
            volume_unshuffle=projector.volume_unshuffle,
            projector_hidden_size=projector.hidden_size,
            projector_hidden_act=_activation(release, plan.warnings),
            volume_size=(OmniCTConfig.volume_size[0], side, side),
            slice_size=(side, side),
            **token_ids,
        )
    except ValueError as error:
        return [f"the inferred sizes do not make an OmniCT: {error}"]
    plan.config.architectures = ["OmniCTForConditionalGeneration"]
    from omnict_cli.model.release_verify import unverifiable

    plan.assumptions = unverifiable(plan.config)
    return []


def _activation(release: dict, warnings: list[str]) -> str:
    """Eq. 4's sigma: config.json's ``projector_hidden_act`` when transformers knows it, else GELU (the paper's)."""
    from transformers.activations import ACT2FN

    name = release.get("projector_hidden_act", "gelu")
    if isinstance(name, str) and name in ACT2FN:
        return name
    warnings.append(f"unknown projector_hidden_act {name!r} in config.json; using gelu (Eq. 4)")
    return "gelu"


def _tokenizer(plan: _Plan) -> tuple[dict, list[str]]:
    """The source's tokenizer with the prompt tokens' ids; a token beyond the embedding rows is refused."""
    from transformers import AutoTokenizer

    from omnict_cli.model.processing_omnict import add_special_tokens, special_tokens
    from omnict_cli.model.release_verify import quiet_transformers

    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(plan.source_dir, local_files_only=True)
    except (OSError, ValueError, KeyError) as error:
        return {}, [f"cannot read the tokenizer ({error}); the release's tokenizer files must be in the folder"]
    missing = [token for token in special_tokens() if token not in tokenizer.get_vocab()]
    token_ids = add_special_tokens(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows = plan.text_config.vocab_size
    beyond = [token for token in missing if tokenizer.convert_tokens_to_ids(token) >= rows]
    if beyond:
        return {}, [f"the tokenizer lacks the prompt tokens {', '.join(beyond)} and the embedding has no rows for them"]
    if missing:
        plan.warnings.append(f"the tokenizer lacked {', '.join(missing)}; added on spare embedding rows never trained")
    plan.tokenizer = tokenizer
    plan.inferred["prompt token ids"] = ", ".join(f"{name} {value}" for name, value in token_ids.items())
    return token_ids, []


def _capped(lines: list[str]) -> list[str]:
    """At most ``LISTED`` lines of one kind; a wrong prefix would otherwise name every tensor of a 3B model."""
    if len(lines) <= release_keys.LISTED:
        return lines
    return lines[: release_keys.LISTED] + [f"... and {len(lines) - release_keys.LISTED} more like these"]


def _check_targets(plan: _Plan, no_place: list[str]) -> list[str]:
    """Every omnict parameter filled once with the right shape, and nothing placed where omnict has no parameter."""
    import torch

    from omnict_cli.model.modeling_omnict import OmniCTForConditionalGeneration

    with torch.device("meta"):
        expected = {
            name: tuple(t.shape) for name, t in OmniCTForConditionalGeneration(plan.config).state_dict().items()
        }
    if plan.text_config.tie_word_embeddings:
        expected.pop(LLM_TARGET + "lm_head.weight", None)
    misplaced, unfilled = list(no_place), []
    for target, (files, source) in plan.targets.items():
        shape = files.entries[source].shape
        if target not in expected:
            misplaced.append(f"{source} {list(shape)} has no place (omnict has no {target})")
        elif expected[target] != shape:
            misplaced.append(f"{source} is {list(shape)} but {target} needs {list(expected[target])}")
    for target in expected:
        if _bias_free(plan, target):
            plan.zero_biases[target] = expected[target]
        elif target not in plan.targets:
            unfilled.append(f"{target} {list(expected[target])} stays unfilled: no source tensor for it")
    return _capped(misplaced) + _capped(unfilled)


def _bias_free(plan: _Plan, target: str) -> bool:
    """A projector layer placed without a bias: a zero bias computes exactly what the bias-free layer did."""
    weight = target.removesuffix(".bias") + ".weight"
    return target not in plan.targets and target.startswith(PROJECTOR_TARGET) and weight in plan.targets


def _rows(plan: _Plan, files, found, vision_files, vision_found) -> list[PlacementRow]:
    """The placement table: every placed tensor, then every dropped one with why."""
    dtype = str(plan.dtype).removeprefix("torch.")
    rows = []
    for target, (owner, source) in plan.targets.items():
        entry = owner.entries[source]
        notes = [f"renamed to {found.renamed[source]} by the key map"] if source in found.renamed else []
        notes += [f"from {owner.folder}"] if owner is not files else []
        notes += [f"cast to {dtype}"] if entry.dtype_name != dtype else []
        rows.append(PlacementRow(source, target, entry.shape, entry.dtype_name, "; ".join(notes)))
    for target, shape in plan.zero_biases.items():
        rows.append(PlacementRow("(none)", target, shape, dtype, "the release's layer has no bias: zeros, exactly"))
    sorted_sources = [(files, found)] + ([(vision_files, vision_found)] if vision_found is not found else [])
    for owner, names in sorted_sources:
        for source, why in names.dropped.items():
            entry = owner.entries[source]
            rows.append(PlacementRow(source, "", entry.shape, entry.dtype_name, why))
    return rows


# ---- writing, verifying, publishing ---------------------------------------------------------------


def _write(plan: _Plan, staging: Path) -> None:
    """Weights tensor by tensor, then config, generation config and tokenizer, all fsynced."""
    staging.mkdir(parents=True)
    code = _TORCH_TO_SAFETENSORS[str(plan.dtype).removeprefix("torch.")]
    tensors = []
    for target, (files, source) in plan.targets.items():
        entry = files.entries[source]
        write = _copier(files, source) if entry.dtype == code else _caster(files, source, plan.dtype)
        nbytes = entry.nbytes // _element_size(entry.dtype) * _element_size(code)
        tensors.append(TensorToWrite(target, code, entry.shape, nbytes, write))
    for target, shape in plan.zero_biases.items():
        nbytes = math.prod(shape) * _element_size(code)
        tensors.append(TensorToWrite(target, code, shape, nbytes, _zeros(nbytes)))
    write_model_files(staging, tensors)
    plan.config.dtype = str(plan.dtype).removeprefix("torch.")
    plan.config.save_pretrained(staging)
    _generation_config(plan).save_pretrained(staging)
    plan.tokenizer.save_pretrained(staging)
    apply_umask(staging)
    _fsync_tree(staging)


def _copier(files: CheckpointFiles, source: str):
    return lambda stream: files.copy_bytes(source, stream)


def _zeros(nbytes: int):
    return lambda stream: stream.write(bytes(nbytes))


def _caster(files: CheckpointFiles, source: str, dtype):
    def write(stream):
        import torch

        tensor = files.read(source).to(dtype).contiguous()
        stream.write(tensor.reshape(-1).view(torch.uint8).numpy().data)

    return write


def _element_size(code: str) -> int:
    from omnict_cli.model.weights_files import DTYPE_BYTES

    return DTYPE_BYTES[code]


def _torch_dtype(code: str):
    import torch

    name = _SAFETENSORS_TO_TORCH.get(code)
    if name is None:
        raise ImportRefused([f"LLM weights of dtype {code}: omnict imports float32, bfloat16 or float16"])
    return getattr(torch, name)


def _generation_config(plan: _Plan):
    """The release's generation_config.json when it has one (stop tokens, sampling), else the LLM config's."""
    from transformers import GenerationConfig

    try:
        config = GenerationConfig.from_pretrained(plan.source_dir, local_files_only=True)
    except (OSError, ValueError):
        config = GenerationConfig.from_model_config(plan.text_config)
    config.pad_token_id = plan.tokenizer.pad_token_id
    return config


def _verify(plan: _Plan, staging: Path, extra_checks, echo) -> list:
    from omnict_cli.model.release_verify import verify_import

    def stock_tensors(prefix: str) -> dict:
        return {
            target[len(prefix) :]: files.read(source).to(plan.dtype)
            for target, (files, source) in plan.targets.items()
            if target.startswith(prefix)
        }

    checks = verify_import(
        staging, plan.tokenizer, plan, lambda: stock_tensors(LLM_TARGET), lambda: stock_tensors(VISION_TARGET)
    )
    checks += [check(staging) for check in extra_checks]
    for check in checks:
        echo(f"verify {'ok' if check.passed else 'FAILED'}: {check.name}: {check.detail}")
    failed = [f"verification failed: {c.name}: {c.detail}" for c in checks if not c.passed]
    if failed:
        raise ImportRefused(
            failed, path=plan.source_dir, hint="Nothing was written; this checkpoint needs a closer look"
        )
    return checks


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as stream:
                os.fsync(stream.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _publish(staging: Path, out: Path) -> None:
    if out.exists():
        raise ImportRefused(["appeared while importing; left as it is"], path=out, hint="Choose another --out")
    os.replace(staging, out)
    _fsync_dir(out.parent)


def _check_out(out: Path) -> None:
    if out.exists():
        raise ImportRefused(["already exists"], path=out, hint="Choose another --out, or remove it first")
    try:
        check_destination(out, folder=True)
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ImportRefused([f"cannot be created ({error.strerror or error})"], path=out) from error
    except OmnictError as error:
        raise ImportRefused([error.message], path=out, hint=error.hint) from error


def remove_stale_partials(out: Path) -> list[Path]:
    """Remove ``.<out>.partial-<pid>`` folders of imports whose process is gone; returns those removed."""
    removed = []
    for partial in Path(out).parent.glob(f".{Path(out).name}.partial-*"):
        pid = partial.name.rsplit("-", 1)[-1]
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            shutil.rmtree(partial, ignore_errors=True)
            removed.append(partial)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _local_dir(value, what: str) -> Path:
    """A local directory for a path or a hub id (hub ids through ``omnict_cli.model.sources`` when present)."""
    path = Path(str(value)).expanduser()
    if path.is_dir():
        return path
    try:
        from omnict_cli.model.sources import resolve_pretrained
    except ImportError:
        raise ImportRefused(
            [f"{what} {value}: no such directory"],
            hint="Give a local directory (hub ids need omnict_cli.model.sources)",
        ) from None
    try:
        return Path(resolve_pretrained(value).path)
    except OmnictError as error:
        raise ImportRefused([f"{what}: {error.message}"], path=error.path, hint=error.hint) from error
