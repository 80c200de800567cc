"""Layer-wise relevance propagation with the paper's two rule sets (Table 2), through zennit."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..classify import CellClassifier
from ..classify.preprocess import input_bounds
from .methods import ExplainError


def max_pool_as_avg_pool_hook():
    """A zennit hook redistributing relevance through a max-pool as if it were an average pool.

    The paper replaces max-pooling by average pooling for LRP (Table 2): relevance then flows to
    every input of a window in proportion to its activation instead of only to the winner.
    (Built in a function so zennit is imported only when LRP is used.)
    """
    from zennit.core import Hook, stabilize

    class MaxPoolAsAvgPool(Hook):
        def forward(self, module, input, output):  # noqa: A002 - zennit's Hook signature
            self.stored_tensors["input"] = input

        def backward(self, module, grad_input, grad_output):
            x = self.stored_tensors["input"][0].detach().clone().requires_grad_()
            with torch.enable_grad():
                z = F.avg_pool2d(x, module.kernel_size, module.stride, module.padding, ceil_mode=module.ceil_mode)
                (g,) = torch.autograd.grad(z, x, grad_outputs=grad_output[0] / stabilize(z))
            return (x.detach() * g,)

    return MaxPoolAsAvgPool()


def lrp_composite(model: CellClassifier, ruleset: str, input_shape, gamma: float = 0.25,
                  epsilon: float = 0.25):
    """A zennit composite for the paper's rule sets (Table 2), mapped onto any plain conv stack.

    Ruleset1: first conv z^B (box = normalised input range); convolutions of the lower ~60 % of the
    conv blocks LRP-gamma; the upper blocks LRP-epsilon; dense layers LRP-0.
    Ruleset2: first conv z^B; every other layer LRP-gamma.
    BatchNorm is merged into the preceding convolution by zennit's canonizer; max-pools are
    treated as average pools; average pools use zennit's Norm rule; ReLU passes relevance.
    """
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.core import Composite
    from zennit.rules import Epsilon, Gamma, Norm, ZBox

    net = model.net
    conv_names = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    if not conv_names:
        raise ExplainError("LRP needs a convolutional network")
    # group convolutions by their top-level block (prefix up to the last dotted component)
    blocks = []
    for n in conv_names:
        b = n.rsplit(".", 1)[0]
        if b not in blocks:
            blocks.append(b)
    n_gamma_blocks = int(np.ceil(0.6 * len(blocks)))
    low, high = input_bounds(model.preprocess)
    device = model.device
    low, high = low.to(device), high.to(device)
    first = conv_names[0]

    def rule_for(name, module):
        if name == first:
            return ZBox(low=low.expand(*input_shape), high=high.expand(*input_shape))
        if isinstance(module, nn.Conv2d):
            block_idx = blocks.index(name.rsplit(".", 1)[0])
            if ruleset == "lrp-ruleset1" and block_idx >= n_gamma_blocks:
                return Epsilon(epsilon=epsilon)
            return Gamma(gamma=gamma)
        if isinstance(module, nn.Linear):
            return Epsilon(epsilon=1e-6) if ruleset == "lrp-ruleset1" else Gamma(gamma=gamma)
        if isinstance(module, nn.MaxPool2d):
            return max_pool_as_avg_pool_hook()
        if isinstance(module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            return Norm()
        return None

    def module_map(ctx, name, module):
        return rule_for(name, module)

    return Composite(module_map=module_map, canonizers=[SequentialMergeBatchNorm()])


def lrp_relevance(model: CellClassifier, x: torch.Tensor, ruleset: str, target: int | None = None):
    """Per-pixel relevance (N, S, S) summed over colour channels, and class probabilities."""

    if not model.lrp_applicable:
        raise ExplainError(
            f"LRP is not available for the {model.name!r} model (it has layers without LRP rules);"
            " use a CAM method such as 'gradcam++'"
        )
    net = model.net
    with torch.no_grad():
        probs = torch.softmax(net(x), 1)
    idx = probs.argmax(1) if target is None else torch.full((x.shape[0],), target, device=x.device)
    from ..classify.networks import CompactEnsemble

    if isinstance(net, CompactEnsemble):
        # the rule sets map each member's plain stack; the ensemble's relevance is their mean for the
        # ensemble's class (the relevance of the members' mean target logit)
        from dataclasses import replace

        maps = [_relevance(replace(model, net=net.member(i)), x, ruleset, idx, probs.shape[1])
                for i in range(len(net.heads))]
        return torch.stack(maps).mean(0), probs, idx
    return _relevance(model, x, ruleset, idx, probs.shape[1]), probs, idx


def _relevance(model: CellClassifier, x: torch.Tensor, ruleset: str, idx: torch.Tensor, n_classes: int):
    from zennit.attribution import Gradient

    net = model.net
    composite = lrp_composite(model, ruleset, tuple(x.shape))
    onehot = torch.eye(n_classes, device=x.device)[idx]
    # start from the target logit itself (not 1) so that conserving rules sum to the logit
    with Gradient(model=net, composite=composite) as attributor:
        _, attribution = attributor(x.detach(), lambda out: out * onehot)
    return attribution.sum(1).detach()
