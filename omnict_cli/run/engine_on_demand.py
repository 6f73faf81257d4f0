"""The model of a run, loaded only when a study needs it.

Why: loading the model imports torch and transformers and reads the
weights, seconds before anything else happens. A rerun of ``omnict report``
whose records are all written, or a shard with nothing left, needs only the
model's identity (to check the findings file was written by the same
model), and that is a hash of the weights files, no torch needed
(:func:`~omnict_cli.run.engine.model_identity`). :class:`EngineOnDemand`
has that identity at once and loads the :class:`~omnict_cli.run.engine.Engine`
the first time anything else is asked of it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from omnict_cli.run.engine import model_identity


class EngineOnDemand:
    """Stands in for an :class:`~omnict_cli.run.engine.Engine`: identity now, the model on first use.

    ``source`` is where the directory came from (``resolve_model``), for the records;
    ``on_load(engine)`` is called once, right after loading (the command prints the model's one line).
    """

    def __init__(
        self,
        model_dir: str | Path,
        device: str = "auto",
        dtype: str = "auto",
        source=None,
        on_load: Callable | None = None,
    ):
        self.model_dir = Path(model_dir)
        self.identity = model_identity(model_dir, source)
        self._device = device
        self._dtype = dtype
        self._source = source
        self._on_load = on_load
        self._engine = None

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    def engine(self):
        """The loaded Engine (loading it now if nobody asked before); raises ModelError when it cannot load."""
        if self._engine is None:
            from omnict_cli.run.engine import Engine

            self._engine = Engine.load(self.model_dir, self._device, self._dtype, self._source, self.identity)
            if self._on_load is not None:
                self._on_load(self._engine)
        return self._engine

    @property
    def device(self) -> str:
        return self.engine().device

    @property
    def preprocess_config(self):
        return self.engine().preprocess_config

    def describe(self) -> str:
        return self.engine().describe()

    def generate(self, *args, **kwargs) -> list[str]:
        return self.engine().generate(*args, **kwargs)

    @property
    def answers_yes_no(self) -> bool:
        return self.engine().answers_yes_no

    def answer_yes_no(self, *args, **kwargs):
        return self.engine().answer_yes_no(*args, **kwargs)
