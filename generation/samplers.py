"""Samplers by the names users know from the A1111 web UI, mapped to diffusers schedulers.

The Illustrious report and model card recommend "Euler a" (Euler ancestral), which is the
default here. The mapping follows diffusers' scheduler documentation: "Euler a" is
``EulerAncestralDiscreteScheduler``, "Euler" is ``EulerDiscreteScheduler``, "DPM++ 2M" is
``DPMSolverMultistepScheduler`` (second order, ``dpmsolver++``), its SDE variant uses
``algorithm_type="sde-dpmsolver++"``, and "Karras" is the Karras et al. (2022) sigma spacing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from generation.errors import GenerationError

if TYPE_CHECKING:
    from diffusers import SchedulerMixin

__all__ = ["DEFAULT_SAMPLER", "SAMPLERS", "check_sampler", "make_scheduler"]

DEFAULT_SAMPLER = "Euler a"

# name -> (diffusers scheduler class, config overrides)
SAMPLERS: Mapping[str, tuple[str, Mapping[str, Any]]] = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {"use_karras_sigmas": False}),
    "DPM++ 2M Karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "DPM++ 2M SDE Karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
}


def check_sampler(name: str) -> str:
    """Return ``name`` if it is a known sampler, else raise a one-line ``GenerationError``."""
    if name not in SAMPLERS:
        known = ", ".join(repr(s) for s in SAMPLERS)
        raise GenerationError(f"unknown sampler {name!r}; expected one of {known}")
    return name


def make_scheduler(name: str, base_config: Mapping[str, Any]) -> SchedulerMixin:
    """A fresh scheduler for sampler ``name`` on the checkpoint's noise schedule ``base_config``."""
    import diffusers

    class_name, overrides = SAMPLERS[check_sampler(name)]
    cls = getattr(diffusers, class_name)
    return cls.from_config(dict(base_config), **overrides)
