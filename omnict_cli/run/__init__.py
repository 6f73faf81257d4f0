"""The engine behind ``omnict report`` and ``omnict ask``.

``pipeline`` drives studies through prefetch workers (load, preprocess,
segment) into batched generation (``engine``: model resolution, identity,
``generate``) and writes one record per study (``records``: the findings
JSONL, resumable). ``study_inputs`` builds a study's model inputs,
``sharding`` splits a run over processes, ``questions`` reads question
files, ``answers`` shapes answers (yes/no, a phrase), ``engine_on_demand``
loads the model only when a study needs it, ``demo_notice`` marks the
bundled demo model's output, ``repeats`` cuts loops from generated text,
``interrupts`` turns Ctrl-C into a clean stop. Nothing here knows of the command line.
"""
