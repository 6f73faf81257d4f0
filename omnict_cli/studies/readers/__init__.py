"""One small reader per file format, all returning a :class:`RawImage`.

``omnict_cli.studies.load`` dispatches to them and turns the raw result into a
canonical :class:`omnict_cli.studies.volume.Volume`.
"""
