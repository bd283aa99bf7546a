import pytest

from ooo_lightning.scores import d4rl_reference, normalized_score, resolve_reference


@pytest.mark.parametrize(
    "name, expected",
    [
        ("hopper-medium-v2", (-20.272305, 3234.3)),
        ("halfcheetah_medium_expert-v2", (-280.178953, 12135.0)),
        ("antmaze-large-diverse-v2", (0.0, 1.0)),
        ("kitchen-mixed-v0", (0.0, 4.0)),
        ("maze2d-medium-v1", (13.13, 277.39)),
        ("maze2d-large-dense-v1", (30.569041, 303.4857382709002)),
        ("D4RL/door/human-v2", (-56.512833, 2880.5693087298737)),
        ("mujoco/walker2d/medium-v0", (1.629008, 4592.3)),
        ("point_mass_wall", None),
        ("pointmaze_medium_missing_goal", None),
    ],
)
def test_d4rl_names_map_to_their_domain_reference(name, expected):
    assert d4rl_reference(name) == expected


def test_resolution_order_and_explicit_choices():
    assert resolve_reference("auto", "hopper-medium-v2") == (-20.272305, 3234.3)
    # a Minari dataset's own metadata wins over the name
    assert resolve_reference("auto", "hopper-medium-v2", {"ref_min_score": 1, "ref_max_score": 2}) == (1.0, 2.0)
    assert resolve_reference("antmaze-umaze-v2", "my_data") == (0.0, 1.0)
    assert resolve_reference([0, 10], None) == (0.0, 10.0)
    assert resolve_reference(None, "hopper-medium-v2") is None
    assert resolve_reference("none", "hopper-medium-v2") is None
    with pytest.raises(ValueError, match="no D4RL reference returns"):
        resolve_reference("pong-v0", None)
    with pytest.raises(ValueError, match="two different returns"):
        resolve_reference([1, 1], None)


def test_normalized_score_is_zero_for_random_and_100_for_expert():
    ref = (-20.0, 180.0)
    assert normalized_score(-20.0, ref) == 0.0
    assert normalized_score(180.0, ref) == 100.0
    assert normalized_score(80.0, ref) == 50.0
