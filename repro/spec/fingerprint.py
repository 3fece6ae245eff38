"""What a run record was made from, computable without torch: the raw params a run reads (its experiment
without the lists of methods and seeds, its recipe, and the raw option entries of its method: the variant,
the profile's `method_options` for its registered method, the experiment's `options` for it).

It is the one fingerprint of a run's params: the checkpoint key's `params_sha256` and both provenance fields
(`params_sha256`, and `params_raw_sha256`, the field the figure and audit stages check without torch). A changed
option default in code is a code change: the run's code hash (repro.spec.codedeps) and DVC rerun its stages."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

from repro.spec.params import Params


def raw_run_hash(params: Params, experiment: str, method: str) -> str:
    exp = asdict(params.experiment(experiment))
    options = dict(exp.pop("options"))
    for key in ("methods", "seeds", "paper"):
        exp.pop(key)
    exp["features_of"] = method in exp["features_of"]
    exp["predictions_of"] = method in exp["predictions_of"]
    variants = {name: (registered, dict(opts)) for name, (registered, opts) in params.variants}
    registered = variants[method][0] if method in variants else method
    payload = {"experiment": exp, "recipe": asdict(params.recipe(params.experiment(experiment).recipe)),
               "method": method, "variant": variants.get(method),
               "method_options": dict(dict(params.method_options).get(registered, ())),
               "options": dict(options.get(method, ()))}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=list).encode()).hexdigest()
