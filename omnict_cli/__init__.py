"""omnict: turn folders of CT scans into radiology findings with OmniCT.

The package imports nothing heavy at start-up so that ``omnict --help`` is
instant; the library entry points below load on first use::

    from omnict_cli import discover_studies, load_study, preprocess_volume
"""

__version__ = "0.1.0"

_LAZY_EXPORTS = {
    "Study": "omnict_cli.studies.discover",
    "discover_studies": "omnict_cli.studies.discover",
    "Volume": "omnict_cli.studies.volume",
    "LoadOptions": "omnict_cli.studies.load",
    "load_study": "omnict_cli.studies.load",
    "load_path": "omnict_cli.studies.load",
    "PreprocessConfig": "omnict_cli.studies.preprocess",
    "ModelInput": "omnict_cli.studies.preprocess",
    "preprocess_volume": "omnict_cli.studies.preprocess",
    "load_and_preprocess": "omnict_cli.studies.prepare",
}

__all__ = ["__version__", *_LAZY_EXPORTS]


def __getattr__(name):
    module_name = _LAZY_EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'omnict_cli' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
