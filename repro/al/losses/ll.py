"""Learning Loss for Active Learning (Yoo & Kweon, CVPR 2019; "LL4AL"): the loss-prediction objective.

Imports only torch. LL4AL Sec. 3.3: the loss-prediction module is trained with a pairwise margin-ranking
loss instead of a regression on the (scale-changing) target loss; the pairs are formed inside a minibatch.
DAAL (Wang et al., ECCV 2020) Sec. 2 describes the same module: "a loss prediction module was proposed to
estimate the loss of task model for the unlabeled data".
"""

from __future__ import annotations

import torch


def mirrored_pairs(values: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B // 2,) differences v_i - v_{B-1-i}: the batch's first half against its mirrored second half
    (LL4AL Sec. 3.3 "we make B/2 data pairs" of a minibatch of size B; the middle of an odd batch is unpaired)."""
    half = values.shape[0] // 2
    return values[:half] - values.flip(0)[:half]


def loss_prediction_loss(pred: torch.Tensor, target_loss: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """LossPredLoss: the mean over the B/2 mirrored pairs p = (i, j) of
    L_loss(l^_p, l_p) = max(0, -A(l_i, l_j) * (l^_i - l^_j) + xi),  A = +1 if l_i > l_j else -1
    (LL4AL Sec. 3.3, the pair loss, Eq. 2; summed over pairs with weight 2/B in the minibatch objective that
    closes Sec. 3.3, i.e. the mean over pairs; DAAL Sec. 2's "loss prediction module").

    `pred` (B,) predicted losses l^, `target_loss` (B,) true per-sample losses l (detached here: the target
    is not trained through this term), `margin` xi >= 0. Ties l_i == l_j take A = -1 as in the paper (and
    the reference's 2 * sign(clamp(dl, 0)) - 1). A batch of one has no pair: 0 (keeping the graph).
    """
    dp = mirrored_pairs(pred.float())
    dl = mirrored_pairs(target_loss.detach().float())
    if dp.numel() == 0:
        return pred.float().sum() * 0.0
    sign = torch.where(dl > 0, 1.0, -1.0)
    return torch.clamp(margin - sign * dp, min=0.0).mean()


def learning_loss_objective(ce_per_sample: torch.Tensor, pred: torch.Tensor, margin: float = 1.0,
                            weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(total, ranking term) of LL4AL's joint objective L_target(y^, y) + lambda * L_loss(l^, l) (Sec. 3.3,
    Eq. 1), in its minibatch form (the equation that closes Sec. 3.3): (1/B) sum_b CE_b + lambda * (2/B) sum_pairs L_loss, with the
    target losses l = CE_b detached inside the ranking term."""
    rank = loss_prediction_loss(pred, ce_per_sample, margin)
    return ce_per_sample.float().mean() + weight * rank, rank
