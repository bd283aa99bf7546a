"""D4RL's normalized score: 100 * (return - random) / (expert - random).

The reference returns are D4RL's published per-domain numbers (they do not depend on which
dataset of the domain was used). They are only meaningful when the policy is evaluated in
the environment the reference was measured in; the gymnasium v5 MuJoCo and
gymnasium-robotics environments differ a little from D4RL's, so the score there is an
approximation, as everywhere D4RL data is used with modern environments.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

#: (random, expert) episode returns per domain.
D4RL_REFERENCE_RETURNS: dict[str, tuple[float, float]] = {
    # locomotion (gym-mujoco v0/v1/v2 datasets)
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
    # adroit (human, cloned, expert)
    "pen": (96.262799, 3076.8331017826877),
    "hammer": (-274.856578, 12794.134825156867),
    "relocate": (-6.425911, 4233.877797728884),
    "door": (-56.512833, 2880.5693087298737),
    # sparse goal tasks
    "antmaze": (0.0, 1.0),
    "kitchen": (0.0, 4.0),
    "maze2d-open": (0.01, 20.66),
    "maze2d-umaze": (23.85, 161.86),
    "maze2d-medium": (13.13, 277.39),
    "maze2d-large": (6.7, 273.99),
    "maze2d-open-dense": (11.17817, 27.166538620695782),
    "maze2d-umaze-dense": (68.537689, 193.66285642381482),
    "maze2d-medium-dense": (44.264742, 297.4552547777125),
    "maze2d-large-dense": (30.569041, 303.4857382709002),
}


def d4rl_reference(name: str) -> tuple[float, float] | None:
    """The (random, expert) returns for a D4RL dataset name, file stem or Minari id.

    Accepts ``hopper-medium-v2``, ``halfcheetah_medium_expert-v2`` (D4RL's file names),
    ``antmaze-large-diverse-v2``, ``maze2d-medium-dense-v1``, ``D4RL/door/human-v2`` and
    ``mujoco/hopper/medium-v0``; None when the domain is not known.
    """
    text = name.lower().replace("_", "-")
    if "/" in text:  # Minari ids: namespace/env/dataset
        pieces = [p for p in text.split("/") if p and p not in ("d4rl", "mujoco")]
        text = "-".join(pieces)
    text = re.sub(r"-v\d+$", "", text)
    tokens = text.split("-")
    if tokens[0] == "maze2d" and len(tokens) > 1:
        key = f"maze2d-{tokens[1]}" + ("-dense" if "dense" in tokens[2:] else "")
        return D4RL_REFERENCE_RETURNS.get(key)
    return D4RL_REFERENCE_RETURNS.get(tokens[0])


def resolve_reference(
    reference: str | Sequence[float] | None, dataset_name: str | None, dataset_meta: dict | None = None
) -> tuple[float, float] | None:
    """What a run normalises with.

    ``reference``: ``"auto"`` (from the dataset's own metadata, then its D4RL name), a
    D4RL name (``maze2d-medium-v1``), an explicit ``[random, expert]`` pair, or
    None / ``"none"`` for no normalized score.
    """
    if reference is None or (isinstance(reference, str) and reference.lower() == "none"):
        return None
    if isinstance(reference, str) and reference.lower() != "auto":
        found = d4rl_reference(reference)
        if found is None:
            known = ", ".join(sorted(D4RL_REFERENCE_RETURNS))
            raise ValueError(
                f"data.score_reference={reference!r}: no D4RL reference returns for that name (known domains: "
                f"{known}); give [random_return, expert_return] or null."
            )
        return found
    if not isinstance(reference, str):
        values = [float(v) for v in reference]
        if len(values) != 2 or values[0] == values[1]:
            raise ValueError(f"data.score_reference={list(reference)}: give two different returns [random, expert]")
        return values[0], values[1]
    meta = dataset_meta or {}
    if meta.get("ref_min_score") is not None and meta.get("ref_max_score") is not None:
        return float(meta["ref_min_score"]), float(meta["ref_max_score"])
    return d4rl_reference(dataset_name) if dataset_name else None


def normalized_score(episode_return: float, reference: tuple[float, float]) -> float:
    low, high = reference
    return 100.0 * (episode_return - low) / (high - low)
