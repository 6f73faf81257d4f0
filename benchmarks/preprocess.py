"""Load + preprocess speed and peak memory of omnict on a realistic chest CT.

What it measures, all in one run on the same file:

* **omnict**: ``load_and_preprocess(study)`` (``omnict_cli.studies.prepare``, the
  entry point of the report pipeline and training: gzip decoding in a
  worker thread overlapped with resampling of the decoded slices) with the
  default ``PreprocessConfig`` (window [-1000, 1000] HU, 32x384x384,
  anti-aliased), giving units ``float32 [10, 3, 384, 384]``; and, for
  reference, ``preprocess_volume(load_path(path))``, the same two steps one
  after the other (identical output, checked).
* **MONAI** baseline: ``Compose([LoadImage(image_only=True),
  EnsureChannelFirst(), Orientation("RAS"), ScaleIntensityRange(-1000, 1000,
  -1, 1, clip=True), Resize((384, 384, 32), mode="trilinear")])``.
* **SimpleITK** baseline: ``sitk.ReadImage`` -> ``sitk.Clamp(-1000, 1000)``
  -> ``sitk.Resample`` (``sitkLinear``) onto a 384x384x32 grid covering the
  same physical extent (pixel centres aligned, as omnict and MONAI do), then
  to a numpy array scaled to [-1, 1]. Two variants: clamping in the file's
  int16 and resampling straight to float32 (the fast, exact way: the
  target is judged against this one), and casting the whole volume to
  float32 before clamping (the common way, printed for reference).
* the **gzip floor**: decompressing the whole ``.nii.gz`` without parsing
  it, with ``isal.igzip`` (what omnict uses; both streamed through
  ``readinto`` in 8 MiB pieces into one buffer, the fastest way, and as one
  ``igzip.decompress`` call) and with Python's ``gzip.decompress``.

The input is a synthetic but realistic CT written by this script (no
downloads): 512x512 pixels of 0.7 mm, 300 slices of 1.5 mm, int16 HU, a
body with fat/muscle/soft tissue, two lungs with vessels, spine and ribs,
15 HU Gaussian noise and -1024 padding outside the reconstruction circle,
saved by nibabel at gzip level 6 (as pigz/dcm2niix do) with an LAS affine
(the layout dcm2niix writes for axial CT). It is cached in
``benchmarks/_data/`` (git-ignored) and reused.

Times are the best of ``--repeats`` runs (default 5; medians printed too)
after one warm-up, the methods taking turns round by round, in one process
with default threads. On small cloud VMs, touching freshly allocated memory
can be slow and uneven (the host backs pages lazily), so single runs vary
by tens of percent; compare the best times, as the PASS/FAIL lines do.
Peak memory is measured per method in a fresh child process (this script
with ``--child``): the child imports everything and runs the method once
on a tiny volume (so lazy imports and thread pools are set up), then
records its RSS, resets the kernel's high-water mark
(``/proc/self/clear_refs``), runs the method on the big file and reads the
high-water mark (``VmHWM``). ``ru_maxrss`` is only a fallback where
``clear_refs`` is not allowed: it is a lifetime maximum, and on Linux a
child even starts with its parent's, so it can hide the peak.
The increase is expressed as a multiple of the int16 volume
(512*512*300*2 bytes = 150 MiB), and includes the method's output.

Targets (PASS/FAIL printed): omnict at least 5x faster than MONAI, at most
0.6x the SimpleITK time, peak memory at most 3x the int16 volume.

Run from the repository root (about 1-2 minutes; the first run spends
~20 s more writing the test volume)::

    pip install -e ".[bench]"        # adds MONAI; without it that baseline is skipped
    python benchmarks/preprocess.py  # --repeats N, --no-memory, --regenerate

Results are kept in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE / "_data"
VOLUME_FILE = DATA / "ct_chest_512x512x300_int16.nii.gz"
WARMUP_FILE = DATA / "ct_chest_warmup_64x64x40_int16.nii.gz"
SHAPE_XYZ = (512, 512, 300)
PIXEL_MM, SLICE_MM = 0.7, 1.5
VOLUME_BYTES = SHAPE_XYZ[0] * SHAPE_XYZ[1] * SHAPE_XYZ[2] * 2
HU_WINDOW = (-1000.0, 1000.0)
OUT_ZYX = (32, 384, 384)

TARGET_MONAI_SPEEDUP = 5.0
TARGET_SITK_RATIO = 0.6
TARGET_MEMORY = 3.0


# --------------------------------------------------------------------------- the test volume


def make_phantom(
    nx: int = 512,
    ny: int = 512,
    nz: int = 300,
    pixel_mm: float = PIXEL_MM,
    slice_mm: float = SLICE_MM,
    noise_hu: float = 15.0,
    seed: int = 0,
) -> np.ndarray:
    """A chest-like CT in int16 HU, indexed ``[z, y, x]`` (z inferior->superior,
    y posterior->anterior, x right->left), vectorised over the whole volume."""
    rng = np.random.default_rng(seed)
    x = ((np.arange(nx) - (nx - 1) / 2) * pixel_mm).astype(np.float32)[None, None, :]  # + = left
    y = ((np.arange(ny) - (ny - 1) / 2) * pixel_mm).astype(np.float32)[None, :, None]  # + = anterior
    z = (np.arange(nz) * slice_mm).astype(np.float32)[:, None, None]
    height = z / max(float(z[-1, 0, 0]), 1e-6)  # 0 at the bottom slice, 1 at the top

    # body: an ellipse whose size changes slowly along z; skin/fat, muscle, organs
    semi_x = 160.0 + 10.0 * np.sin(np.pi * height)
    semi_y = 110.0 + 8.0 * np.cos(2.0 * np.pi * height)
    body_r = np.sqrt((x / semi_x) ** 2 + (y / semi_y) ** 2)
    vol = np.full((nz, ny, nx), -1000.0, dtype=np.float32)
    vol[np.broadcast_to(body_r < 1.0, vol.shape)] = -100.0  # subcutaneous fat
    vol[np.broadcast_to(body_r < 0.93, vol.shape)] = 45.0  # muscle
    vol[np.broadcast_to(body_r < 0.85, vol.shape)] = 35.0  # mediastinum / abdominal organs

    # two lungs in the upper part, with a branching-looking vessel texture
    lung_extent = np.clip((height - 0.35) / 0.6, 0.0, 1.0)
    lung_scale = np.where(
        (height > 0.35) & (height < 0.95), np.sqrt(np.clip(np.sin(np.pi * lung_extent), 0.0, None)), 0.0
    )
    lung_scale = lung_scale.astype(np.float32) + 1e-3
    lungs = np.zeros(vol.shape, dtype=bool)
    for side in (-1.0, 1.0):
        lungs |= ((x - side * 70.0) / (55.0 * lung_scale)) ** 2 + ((y + 5.0) / (75.0 * lung_scale)) ** 2 < 1.0
    vessels = (np.sin(0.35 * x + 0.21 * y + 0.05 * z) * np.sin(0.30 * y - 0.13 * x + 0.11 * z)) > 0.93
    vol[lungs] = -850.0
    vol[lungs & vessels] = 40.0
    del lungs, vessels

    # ribs: bone segments on a ring just inside the muscle, in the lung range
    angle = np.arctan2(y, x)
    ribs = (np.abs(body_r - 0.885) < 0.025) & (np.cos(14.0 * angle) > 0.2) & (np.sin(0.5 * z) > -0.3)
    ribs &= (height > 0.3) & (height < 0.97)
    vol[ribs] = 600.0
    del ribs, body_r

    # spine: cortical ring around a cancellous vertebral body, posterior midline
    spine_r = np.sqrt((x / 18.0) ** 2 + ((y + 75.0) / 16.0) ** 2)
    vol[np.broadcast_to(spine_r < 1.0, vol.shape)] = 700.0
    vol[np.broadcast_to(spine_r < 0.75, vol.shape)] = 250.0

    vol += rng.standard_normal(vol.shape, dtype=np.float32) * np.float32(noise_hu)
    outside_fov = (x**2 + y**2) > ((min(nx, ny) / 2) * pixel_mm) ** 2  # reconstruction circle
    vol[np.broadcast_to(outside_fov, vol.shape)] = -1024.0
    np.rint(vol, out=vol)
    return vol.astype(np.int16)


def las_affine(nx: int, ny: int, nz: int, pixel_mm: float, slice_mm: float) -> np.ndarray:
    """Voxel (i, j, k) -> RAS mm with i toward the left, j anterior, k superior (LAS)."""
    affine = np.diag([-pixel_mm, pixel_mm, slice_mm, 1.0])
    affine[:3, 3] = [(nx - 1) / 2 * pixel_mm, -(ny - 1) / 2 * pixel_mm, -(nz - 1) / 2 * slice_mm]
    return affine


def write_nifti(path: Path, zyx: np.ndarray, pixel_mm: float, slice_mm: float) -> None:
    """Save a ``[z, y, x]`` phantom (x right->left, y posterior->anterior) as LAS NIfTI."""
    import nibabel as nib

    nz, ny, nx = zyx.shape
    affine = las_affine(nx, ny, nz, pixel_mm, slice_mm)
    image = nib.Nifti1Image(zyx.transpose(2, 1, 0), affine)  # (i, j, k) = (x, y, z): F-contiguous view
    image.header.set_data_dtype(np.int16)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    opener = nib.openers.Opener
    saved_level = opener.default_compresslevel
    opener.default_compresslevel = 6  # gzip's / pigz's default, what dcm2niix files use
    try:
        tmp = path.with_name(path.name + ".partial.nii.gz")
        nib.save(image, tmp)
        tmp.replace(path)
    finally:
        opener.default_compresslevel = saved_level


def ensure_volumes(regenerate: bool = False) -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    if regenerate or not VOLUME_FILE.exists():
        print(f"writing {VOLUME_FILE.relative_to(HERE.parent)} (one time, ~20 s) ...", flush=True)
        start = time.perf_counter()
        phantom = make_phantom(*SHAPE_XYZ)
        made = time.perf_counter()
        write_nifti(VOLUME_FILE, phantom, PIXEL_MM, SLICE_MM)
        print(f"  generated in {made - start:.1f} s, saved in {time.perf_counter() - made:.1f} s", flush=True)
        del phantom
    if regenerate or not WARMUP_FILE.exists():
        small = make_phantom(64, 64, 40, PIXEL_MM * 8, SLICE_MM * 7.5)
        write_nifti(WARMUP_FILE, small, PIXEL_MM * 8, SLICE_MM * 7.5)


# --------------------------------------------------------------------------- the methods


def have_monai() -> bool:
    try:
        import monai  # noqa: F401
    except ImportError:
        return False
    return True


def _quiet():
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("monai").setLevel(logging.ERROR)


def omnict_method():
    """The pipeline's entry point: decode and resample overlapped (omnict_cli.studies.prepare)."""
    from omnict_cli.studies.discover import discover_studies
    from omnict_cli.studies.prepare import load_and_preprocess

    def run(path):
        (study,) = discover_studies(path)
        return load_and_preprocess(study)[1].units

    return run


def omnict_plain_method():
    """Load, then preprocess: the two library calls one after the other."""
    from omnict_cli.studies.load import load_path
    from omnict_cli.studies.preprocess import preprocess_volume

    def run(path):
        return preprocess_volume(load_path(path)).units

    return run


def monai_method():
    _quiet()
    from monai.transforms import Compose, EnsureChannelFirst, LoadImage, Orientation, Resize, ScaleIntensityRange

    pipeline = Compose(
        [
            LoadImage(image_only=True),
            EnsureChannelFirst(),
            Orientation(axcodes="RAS"),
            ScaleIntensityRange(a_min=HU_WINDOW[0], a_max=HU_WINDOW[1], b_min=-1.0, b_max=1.0, clip=True),
            Resize(spatial_size=(OUT_ZYX[2], OUT_ZYX[1], OUT_ZYX[0]), mode="trilinear"),
        ]
    )

    def run(path):
        return pipeline(str(path))

    return run


def _sitk_grid(image):
    """Output size/origin/spacing: 384x384x32 over the input's physical extent,
    first and last output voxel centres half an output voxel inside its edges."""
    size_in = np.array(image.GetSize(), dtype=float)
    spacing_in = np.array(image.GetSpacing(), dtype=float)
    size_out = [OUT_ZYX[2], OUT_ZYX[1], OUT_ZYX[0]]
    spacing_out = spacing_in * size_in / np.array(size_out)
    origin = image.TransformContinuousIndexToPhysicalPoint((0.5 * spacing_out / spacing_in - 0.5).tolist())
    return size_out, origin, spacing_out.tolist()


def sitk_method(cast_first: bool = False):
    import SimpleITK as sitk

    low, high = HU_WINDOW

    def run(path):
        image = sitk.ReadImage(str(path))
        if cast_first:
            clamped = sitk.Clamp(sitk.Cast(image, sitk.sitkFloat32), sitk.sitkFloat32, low, high)
        else:  # the window fits int16, so clamp in the file's type and let Resample write float32
            clamped = sitk.Clamp(image, image.GetPixelID(), int(low), int(high))
        size, origin, spacing = _sitk_grid(image)
        resampled = sitk.Resample(
            clamped,
            size,
            sitk.Transform(),
            sitk.sitkLinear,
            origin,
            spacing,
            image.GetDirection(),
            low,
            sitk.sitkFloat32,
        )
        array = sitk.GetArrayFromImage(resampled)  # [k, j, i]
        array *= np.float32(2.0 / (high - low))
        return {
            "array": array,
            "direction": resampled.GetDirection(),
            "spacing": resampled.GetSpacing(),
            "origin": resampled.GetOrigin(),
        }

    return run


def isal_decode(path):
    """One call: ``igzip.decompress(file bytes)``."""
    from isal import igzip

    return len(igzip.decompress(Path(path).read_bytes()))


_STREAM_BUFFER = {}


def isal_stream_decode(path, piece: int = 8 * 2**20):
    """Stream the file through ``igzip.open(...).readinto`` in 8 MiB pieces into one
    preallocated buffer (touched once beforehand): the fastest way to get the raw bytes."""
    from isal import igzip

    with igzip.open(path, "rb") as stream:
        size = _STREAM_BUFFER.get("size") or VOLUME_BYTES + 352
        buffer = _STREAM_BUFFER.get("buffer")
        if buffer is None or len(buffer) < size:
            buffer = _STREAM_BUFFER["buffer"] = np.zeros(size + piece, dtype=np.uint8)
        view, done = memoryview(buffer), 0
        while True:
            got = stream.readinto(view[done : done + piece])
            if not got:
                break
            done += got
            if done + piece > len(buffer):
                buffer = np.concatenate([buffer, np.zeros(len(buffer), dtype=np.uint8)])
                _STREAM_BUFFER["buffer"], view = buffer, memoryview(buffer)
    _STREAM_BUFFER["size"] = done
    return done


def zlib_decode(path):
    return len(gzip.decompress(Path(path).read_bytes()))


def make_method(name: str):
    if name == "omnict":
        return omnict_method()
    if name == "omnict_plain":
        return omnict_plain_method()
    if name == "monai":
        return monai_method()
    if name == "sitk":
        return sitk_method(cast_first=False)
    if name == "sitk_float":
        return sitk_method(cast_first=True)
    if name == "isal":
        return isal_decode
    if name == "isal_stream":
        return isal_stream_decode
    if name == "omnict_load":
        from omnict_cli.studies.load import load_path

        return load_path
    if name == "gzip":
        return zlib_decode
    raise ValueError(name)


LABELS = {
    "isal_stream": "gzip floor: isal stream, 8 MiB readinto",
    "isal": "gzip floor: isal.igzip.decompress",
    "gzip": "gzip floor: Python gzip.decompress",
    "omnict_load": "omnict load_path only",
    "omnict": "omnict load_and_preprocess (overlapped)",
    "omnict_plain": "omnict load_path, then preprocess_volume",
    "sitk": "SimpleITK read+clamp(int16)+resample",
    "sitk_float": "SimpleITK read+cast f32+clamp+resample",
    "monai": "MONAI LoadImage..Resize",
}


# --------------------------------------------------------------------------- memory (child process)


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets the RSS high-water mark (VmHWM) of this process
        return True
    except OSError:
        return False


def child_main(method_name: str, path: str) -> None:
    """Run one method once in this fresh process and print its peak RSS increase as JSON."""
    import torch  # noqa: F401  imported by every child alike, so the baselines compare

    run = make_method(method_name)
    run(WARMUP_FILE)  # lazy imports, thread pools, first-call allocations
    gc.collect()
    rss_base = _status_kib("VmRSS")
    maxrss_base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux; lifetime max
    reset = _reset_peak()
    result = run(path)
    hwm = _status_kib("VmHWM")
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del result
    if reset and hwm is not None and rss_base is not None:
        increase_kib, how = hwm - rss_base, "VmHWM after clear_refs"
    else:
        # ru_maxrss is a lifetime maximum (on Linux it even starts at the parent's peak, inherited
        # through fork/exec): it only shows this run's peak if that exceeds everything before it.
        increase_kib = maxrss - (rss_base or maxrss_base)
        how = "ru_maxrss" if maxrss > maxrss_base else "ru_maxrss, UNRELIABLE (never exceeded the start-up max)"
    print(
        json.dumps(
            {
                "method": method_name,
                "increase_bytes": increase_kib * 1024,
                "how": how,
                "rss_base_kib": rss_base,
                "maxrss_base_kib": maxrss_base,
                "hwm_kib": hwm,
                "maxrss_kib": maxrss,
            }
        )
    )


def measure_memory(method_name: str) -> dict | None:
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", method_name, str(VOLUME_FILE)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        print(f"  memory child for {method_name} failed (rc {proc.returncode}): {proc.stderr.strip()[-500:]}")
        return None
    return json.loads(lines[-1])


# --------------------------------------------------------------------------- correctness


def to_canonical(array_ijk: np.ndarray, affine_ras: np.ndarray) -> np.ndarray:
    """Reorient an array indexed like ``affine_ras`` to omnict's [z, y, x] = (S, P, L)."""
    from nibabel import orientations as nio

    transform = nio.ornt_transform(nio.io_orientation(affine_ras), nio.axcodes2ornt(("S", "P", "L")))
    return np.asarray(nio.apply_orientation(array_ijk, transform))


def sitk_canonical(result: dict) -> np.ndarray:
    direction = np.array(result["direction"]).reshape(3, 3)
    affine_lps = np.eye(4)
    affine_lps[:3, :3] = direction * np.array(result["spacing"])[None, :]
    affine_lps[:3, 3] = result["origin"]
    affine_ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps
    return to_canonical(result["array"].transpose(2, 1, 0), affine_ras)


def monai_canonical(result) -> np.ndarray:
    affine = np.asarray(result.affine, dtype=float)
    return to_canonical(np.asarray(result)[0], affine)


# --------------------------------------------------------------------------- timing


def time_methods(names: list[str], repeats: int) -> tuple[dict, dict]:
    runs = {name: make_method(name) for name in names}
    times = {name: [] for name in names}
    outputs = {}
    for name in names:  # warm-up
        outputs[name] = runs[name](VOLUME_FILE)
    for _ in range(repeats):
        for name in names:
            outputs.pop(name, None)
            gc.collect()
            start = time.perf_counter()
            outputs[name] = runs[name](VOLUME_FILE)
            times[name].append(time.perf_counter() - start)
    return times, outputs


def best_of(function, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        result = None
        gc.collect()
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def omnict_breakdown(repeats: int) -> list[tuple[str, float]]:
    """Time omnict's stages separately (public functions only)."""
    from omnict_cli.studies.load import volume_from_raw
    from omnict_cli.studies.preprocess import PreprocessConfig, compose_units, resample_linear, scale_to_unit_range
    from omnict_cli.studies.readers.base import LoadOptions
    from omnict_cli.studies.readers.nifti import read_nifti
    from omnict_cli.studies.volume import CANONICAL_AXCODES, canonicalize

    config = PreprocessConfig()
    t_read, raw = best_of(lambda: read_nifti(VOLUME_FILE, LoadOptions()), repeats)
    t_canon, _ = best_of(lambda: canonicalize(raw.array, raw.affine, CANONICAL_AXCODES), repeats)
    t_raw, volume = best_of(lambda: volume_from_raw(raw, VOLUME_FILE), repeats)
    t_slice_axis, stacked = best_of(
        lambda: resample_linear(volume.voxels, (OUT_ZYX[0],) + volume.shape[1:], clip=HU_WINDOW, antialias=True),
        repeats,
    )
    import torch
    import torch.nn.functional as F

    planes = torch.from_numpy(stacked)[:, None]
    t_inplane, _ = best_of(
        lambda: F.interpolate(planes, size=OUT_ZYX[1:], mode="bilinear", antialias=True, align_corners=False), repeats
    )
    t_resample, _ = best_of(lambda: resample_linear(volume.voxels, OUT_ZYX, clip=HU_WINDOW, antialias=True), repeats)
    t_intens, grid = best_of(
        lambda: scale_to_unit_range(
            resample_linear(volume.voxels, OUT_ZYX, clip=HU_WINDOW, antialias=True), volume, config
        ),
        repeats,
    )
    t_compose, _ = best_of(lambda: compose_units(grid, config.slices_per_unit), repeats)
    t_plain, _ = best_of(lambda: resample_linear(volume.voxels, OUT_ZYX, clip=HU_WINDOW, antialias=False), repeats)
    return [
        ("read_nifti (isal decode + nibabel header/array)", t_read),
        ("volume_from_raw (checks + canonicalize + HU check)", t_raw),
        ("  of which canonicalize (flip/transpose views)", t_canon),
        ("resample_linear 300->32 slice axis only", t_slice_axis),
        ("resample_linear full (slice axis + 512->384 in-plane)", t_resample),
        ("  in-plane pass alone (torch bilinear antialias, 512->384)", t_inplane),
        ("resample + scale to [-1,1]", t_intens),
        ("compose_units", t_compose),
        ("(for reference) resample_linear full, antialias=False", t_plain),
    ]


# --------------------------------------------------------------------------- report


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per method after one warm-up")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    parser.add_argument("--regenerate", action="store_true", help="rewrite the cached test volume")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(*args.child)
        return

    import SimpleITK as sitk
    import torch

    import omnict_cli
    from omnict_cli.studies.load import load_path

    wall = time.perf_counter()
    print("== omnict preprocessing benchmark ==")
    print(
        f"platform: {platform.platform()} | {platform.machine()} | {platform.processor() or '?'} | "
        f"Python {platform.python_version()}"
    )
    mem_total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(
        f"cpus: os.cpu_count()={os.cpu_count()}, torch.get_num_threads()={torch.get_num_threads()}, "
        f"SimpleITK threads={sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()}, RAM {mem_total:.1f} GiB"
    )
    monai_ok = have_monai()
    versions = [
        f"omnict {omnict_cli.__version__}",
        f"torch {torch.__version__}",
        f"SimpleITK {sitk.__version__}",
        f"numpy {np.__version__}",
    ]
    import isal
    import nibabel

    versions += [f"nibabel {nibabel.__version__}", f"isal {isal.__version__}"]
    if monai_ok:
        import monai

        versions.append(f"monai {monai.__version__}")
    print("versions: " + ", ".join(versions))
    ensure_volumes(args.regenerate)
    compressed = VOLUME_FILE.stat().st_size
    print(
        f"input: {VOLUME_FILE.relative_to(HERE.parent)}  {SHAPE_XYZ[0]}x{SHAPE_XYZ[1]}x{SHAPE_XYZ[2]} int16, "
        f"{PIXEL_MM} mm pixels, {SLICE_MM} mm slices, LAS"
    )
    print(
        f"  raw {VOLUME_BYTES / 2**20:.1f} MiB, .nii.gz {compressed / 2**20:.1f} MiB "
        f"-> compressed to {100 * compressed / VOLUME_BYTES:.1f}% of raw (real CT: ~35-55%)"
    )
    volume = load_path(VOLUME_FILE)
    print(
        f"  omnict sees shape {volume.shape} (z, y, x), spacing {tuple(round(s, 3) for s in volume.spacing)}, "
        f"source axcodes {volume.source_axcodes}, warnings {volume.warnings or 'none'}"
    )
    del volume

    names = ["isal_stream", "isal", "gzip", "omnict", "omnict_plain", "sitk", "sitk_float"] + (
        ["monai"] if monai_ok else []
    )
    if not monai_ok:
        print('MONAI is not installed: the MONAI baseline is SKIPPED (pip install -e ".[bench]")')
    print(f"\n-- time: best of {args.repeats} after 1 warm-up, methods taking turns --", flush=True)
    times, outputs = time_methods(names, args.repeats)
    best = {name: min(values) for name, values in times.items()}
    for name in names:
        values = times[name]
        print(
            f"  {LABELS[name]:<42} best {best[name]:7.3f} s   median {statistics.median(values):7.3f} s   "
            f"(runs: {', '.join(f'{v:.3f}' for v in values)})"
        )

    print(f"\n-- where omnict's time goes (best of {args.repeats} each) --", flush=True)
    for label, seconds in omnict_breakdown(args.repeats):
        print(f"  {label:<56} {seconds * 1000:7.0f} ms")
    print(
        f"  {'gzip floor: isal one-shot / streamed (above)':<56} {best['isal'] * 1000:7.0f} ms / "
        f"{best['isal_stream'] * 1000:.0f} ms"
    )

    print("\n-- agreement (canonical [z, y, x], values in [-1, 1]; 30 slices in units) --")
    from omnict_cli.studies.load import load_path as _load
    from omnict_cli.studies.preprocess import PreprocessConfig, preprocess_volume

    ours = outputs["omnict"].reshape(-1, OUT_ZYX[1], OUT_ZYX[2])
    same = np.array_equal(ours, outputs["omnict_plain"].reshape(ours.shape))
    print(f"  omnict overlapped vs load-then-preprocess: {'identical' if same else 'DIFFERENT'}")
    plain = preprocess_volume(_load(VOLUME_FILE), PreprocessConfig(antialias=False)).units.reshape(ours.shape)
    n = ours.shape[0]
    sitk_grid = sitk_canonical(outputs["sitk"])[:n]
    sitk_float_grid = sitk_canonical(outputs["sitk_float"])[:n]
    agreement = [
        ("omnict vs SimpleITK", ours, sitk_grid),
        ("omnict antialias=False vs SimpleITK", plain, sitk_grid),
        ("SimpleITK int16 clamp vs float32 cast", sitk_float_grid, sitk_grid),
    ]
    if monai_ok:
        monai_grid = monai_canonical(outputs["monai"])[:n]
        agreement += [("omnict vs MONAI", ours, monai_grid), ("omnict antialias=False vs MONAI", plain, monai_grid)]
    mad = {}
    for label, a, b in agreement:
        diff = np.abs(a.astype(np.float64) - b)
        mad[label] = float(diff.mean())
        print(f"  {label:<40} mean |diff| {diff.mean():.5f} ({diff.mean() * 1000:.1f} HU)   max {diff.max():.3f}")
    print(
        "  (omnict anti-aliases the 300->32 slice axis and 512->384 in-plane; the others do not,"
        " so only the antialias=False rows should be ~0)"
    )
    del outputs, ours, plain

    memory = {}
    if not args.no_memory:
        print("\n-- peak memory: fresh child process per method, increase over RSS after imports --", flush=True)
        for name in ["omnict", "omnict_plain", "omnict_load"] + [
            n for n in names if n not in ("isal", "isal_stream", "gzip", "omnict", "omnict_plain")
        ]:
            result = measure_memory(name)
            if result is None:
                continue
            memory[name] = result
            multiple = result["increase_bytes"] / VOLUME_BYTES
            print(
                f"  {LABELS[name]:<42} +{result['increase_bytes'] / 2**20:6.0f} MiB = {multiple:4.2f}x the int16 "
                f"volume  [{result['how']}; RSS after imports+warm-up {result['rss_base_kib'] / 1024:.0f} MiB]",
                flush=True,
            )

    # ---------------------------------------------------------------- summary
    print("\n================ SUMMARY ================")
    print(
        f"input 512x512x300 int16 .nii.gz ({100 * compressed / VOLUME_BYTES:.0f}% of raw), "
        f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}"
    )
    floor = min(best["isal"], best["isal_stream"])
    print(
        f"gzip floor: isal {best['isal_stream']:.3f} s streamed / {best['isal']:.3f} s one-shot, "
        f"Python gzip {best['gzip']:.3f} s"
    )
    print(
        f"omnict       {best['omnict']:.3f} s  ({best['omnict'] / floor:.2f}x the isal decode floor); "
        f"load then preprocess {best['omnict_plain']:.3f} s"
    )
    print(f"SimpleITK    {best['sitk']:.3f} s  (float32-cast variant {best['sitk_float']:.3f} s)")
    if monai_ok:
        print(f"MONAI        {best['monai']:.3f} s")
    rows = []
    if monai_ok:
        speedup = best["monai"] / best["omnict"]
        median_speedup = statistics.median(times["monai"]) / statistics.median(times["omnict"])
        rows.append(
            (
                f"speed vs MONAI: {speedup:.2f}x faster (medians {median_speedup:.2f}x)",
                f">= {TARGET_MONAI_SPEEDUP:g}x",
                verdict(speedup >= TARGET_MONAI_SPEEDUP),
            )
        )
    else:
        rows.append(("speed vs MONAI: not measured (monai missing)", f">= {TARGET_MONAI_SPEEDUP:g}x", "SKIP"))
    ratio = best["omnict"] / best["sitk"]
    median_ratio = statistics.median(times["omnict"]) / statistics.median(times["sitk"])
    rows.append(
        (
            f"time / SimpleITK (int16 clamp): {ratio:.2f}x (medians {median_ratio:.2f}x)",
            f"<= {TARGET_SITK_RATIO:g}x",
            verdict(ratio <= TARGET_SITK_RATIO),
        )
    )
    ratio_float = best["omnict"] / best["sitk_float"]
    rows.append(
        (
            f"time / SimpleITK (float32 cast, reference): {ratio_float:.2f}x",
            f"<= {TARGET_SITK_RATIO:g}x",
            verdict(ratio_float <= TARGET_SITK_RATIO) + " (info)",
        )
    )
    plain_ratio = best["omnict_plain"] / best["sitk"]
    plain_median = statistics.median(times["omnict_plain"]) / statistics.median(times["sitk"])
    rows.append(
        (f"  (load, then preprocess, not overlapped: {plain_ratio:.2f}x, medians {plain_median:.2f}x)", "", "info")
    )
    if "omnict" in memory:
        multiple = memory["omnict"]["increase_bytes"] / VOLUME_BYTES
        rows.append(
            (
                f"omnict peak memory: {multiple:.2f}x the int16 volume",
                f"<= {TARGET_MEMORY:g}x",
                verdict(multiple <= TARGET_MEMORY),
            )
        )
        for name in ("omnict_plain", "omnict_load", "sitk", "sitk_float", "monai"):
            if name in memory:
                m = memory[name]["increase_bytes"] / VOLUME_BYTES
                rows.append((f"  ({LABELS[name]} peak memory: {m:.2f}x)", "", "info"))
    else:
        rows.append(("omnict peak memory: not measured", f"<= {TARGET_MEMORY:g}x", "SKIP"))
    for text, target, result in rows:
        print(f"  {text:<64} {target:<8} {result}")
    print(f"(benchmark wall time {time.perf_counter() - wall:.0f} s)")


if __name__ == "__main__":
    main()
