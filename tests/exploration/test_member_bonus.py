"""``MemberBonus`` and ``MemberCounts``: K bonuses as one, each exactly its solo bonus (issue 14)."""

import pytest
import torch
from tensordict import TensorDict

from ooo_lightning.config_checks import ConfigError
from ooo_lightning.exploration import CountBonus, RNDBonus
from ooo_lightning.exploration.members import MemberBonus, MemberCounts, member_bonus

OBS, K, B = 3, 3, 40


def _batch(rows: torch.Tensor) -> TensorDict:
    return TensorDict({("next", "observation"): rows}, batch_size=rows.shape[:-1])


@pytest.mark.parametrize("momentum", [None, 0.05])
def test_each_member_scores_and_learns_as_its_solo_bonus(momentum):
    solos = []
    for k in range(K):
        torch.manual_seed(k)
        solos.append(RNDBonus(OBS, hidden_dims=(16,), embedding_dim=8, error_std_momentum=momentum, clip=2.0))
    stack = MemberBonus(solos, [torch.Generator().manual_seed(50 + k) for k in range(K)])
    gens = [torch.Generator().manual_seed(50 + k) for k in range(K)]
    stack_opt = torch.optim.Adam(stack.predictor.parameters(), lr=1e-2)
    solo_opts = [torch.optim.Adam(s.predictor.parameters(), lr=1e-2) for s in solos]
    data = torch.randn(K, 6, B, OBS) * torch.arange(1, K + 1).reshape(K, 1, 1, 1)  # the members see other states
    for step in range(6):
        bonus, loss = stack.compute(_batch(data[:, step]))
        stack_opt.zero_grad()
        loss.backward()
        stack_opt.step()
        for k, solo in enumerate(solos):
            noise = solo.draw_noise(B, data[k, step], gens[k])
            solo_bonus, solo_loss = solo.compute(_batch(data[k, step]), noise=noise)
            solo_opts[k].zero_grad()
            solo_loss.backward()
            solo_opts[k].step()
            torch.testing.assert_close(bonus[k], solo_bonus, msg=f"bonus, member {k}, step {step}")
            torch.testing.assert_close(stack.member_losses[k], solo_loss.detach())
    for k, solo in enumerate(solos):
        member = stack.member(k).state_dict()
        for key, value in solo.state_dict().items():  # predictor, target, running statistics
            torch.testing.assert_close(member[key], value, msg=key)
    scored, none = stack.compute(_batch(data[:, 0]), update=False)
    assert scored.shape == (K, B) and none is None


def test_only_rnd_bonuses_stack():
    with pytest.raises(ConfigError, match="stacks RND bonuses, not CountBonus"):
        MemberBonus([CountBonus(OBS), CountBonus(OBS)])
    with pytest.raises(ConfigError, match="share one class"):
        MemberBonus([RNDBonus(OBS), CountBonus(OBS)])
    with pytest.raises(ConfigError, match="share one class"):
        member_bonus([CountBonus(OBS), RNDBonus(OBS)])


def test_member_counts_count_the_shared_rows_for_all_and_each_members_own_rows_for_it():
    counts = member_bonus([CountBonus(OBS, cell_size=1.0) for _ in range(2)])
    assert isinstance(counts, MemberCounts)

    def rows(*cells):
        obs = torch.tensor([[float(c)] * OBS for c in cells])
        return TensorDict({("next", "observation"): obs}, [len(cells)])

    counts.observe(rows(0, 0))  # shared (offline): both members count them
    counts.observe(torch.stack([rows(1, 1, 1), rows(2, 0, 0)]))  # [members, n]: each its own
    bonus, loss = counts.compute(torch.stack([rows(0, 1, 2), rows(0, 1, 2)]))
    assert loss is None and bonus.shape == (2, 3)
    visits = (1 / bonus**2 - 1).round().long().tolist()
    assert visits == [[2, 3, 0], [4, 0, 1]]
    solo = counts.member(1)
    assert torch.equal(solo.compute(rows(0, 1, 2))[0], bonus[1]) and solo is not counts.members[1]
