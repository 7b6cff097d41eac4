"""PyTorch (CPU) training step of a zoo architecture: full update, or a published sparse scheme.

Sparse update is expressed the way a PyTorch user can: ``requires_grad`` only on the
updated tensors (so autograd stops at the earliest one and saves no activation below it),
and for sub-tensor ratios a gradient hook that zeroes the frozen output channels. What
PyTorch cannot avoid: the *full* weight gradient of a partially updated layer is computed
and stored before the hook masks it, the saved input of such a layer is the whole
activation, ReLU6 saves its float input instead of a 1-bit mask, and every activation is fp32.
"""

from __future__ import annotations

import sys
import time

import peer_common as pc


def main() -> int:
    args = pc.runner_args()
    t_import = time.perf_counter()
    import torch
    from torch import nn

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    arch = args.arch_spec

    def conv_layer(c: dict) -> nn.Module:
        conv = nn.Conv2d(c["cin"], c["cout"], c["k"], c["stride"], c["k"] // 2, groups=c["groups"], bias=not args.bn)
        layers = [conv] + ([nn.BatchNorm2d(c["cout"])] if args.bn else []) + ([nn.ReLU6()] if c["relu6"] else [])
        return nn.Sequential(*layers) if len(layers) > 1 else conv

    class Block(nn.Module):
        def __init__(self, spec: dict) -> None:
            super().__init__()
            self.body = nn.Sequential(*[conv_layer(c) for c in spec["convs"]])
            self.residual = spec["residual"]

        def forward(self, x):
            y = self.body(x)
            return x + y if self.residual else y

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.Sequential(*[Block(b) for b in arch["blocks"]])
            self.classifier = nn.Linear(arch["head_in"], arch["num_classes"])

        def forward(self, x):
            return self.classifier(self.blocks(x).mean(dim=(2, 3)))

    model = Net().train()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == len(pc.all_convs(arch))
    weights = pc.load_weights(args.weights)
    if weights is not None:
        with torch.no_grad():
            for i, conv in enumerate(convs):
                conv.weight.copy_(torch.from_numpy(weights[f"w{i}"]))
                if conv.bias is not None:
                    conv.bias.copy_(torch.from_numpy(weights[f"b{i}"]))
    updated = 0
    if args.mode == "sparse":
        plan = pc.scheme_plan(arch, args.scheme)
        for p in model.parameters():
            p.requires_grad_(False)
        for i, conv in enumerate(convs):
            if plan[i]["bias"]:
                conv.bias.requires_grad_(True)
            if plan[i]["weight_ratio"] > 0:
                conv.weight.requires_grad_(True)
                k = plan[i]["weight_channels"]
                if k < conv.out_channels:
                    mask = torch.zeros(conv.out_channels, 1, 1, 1)
                    mask[:k] = 1.0
                    conv.weight.register_hook(lambda g, m=mask: g * m)
        for p in model.classifier.parameters():
            p.requires_grad_(True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    updated = sum(p.numel() for p in trainable)
    opt = torch.optim.SGD(trainable, lr=args.lr, momentum=0.0)
    x_np, label = pc.fixed_input(arch, "NCHW")
    x = torch.from_numpy(x_np)
    y = torch.tensor([label])
    loss_fn = nn.CrossEntropyLoss()
    before = [p.detach().clone() for p in model.parameters()]
    build_s = time.perf_counter() - t_import

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    result = pc.measure_steps(step, args.warmup, args.steps)
    changed = [not torch.equal(b, p.detach()) for b, p in zip(before, model.parameters(), strict=True)]
    grads_flags = [p.requires_grad for p in model.parameters()]
    result.update({
        "framework": "pytorch", "version": torch.__version__, "mode": args.mode, "bn": args.bn,
        "weights": "pretrained (dequantized zoo)" if weights is not None else "random",
        "scheme": args.scheme if args.mode == "sparse" else "", "threads": args.threads,
        "trainable_params": updated, "total_params": sum(p.numel() for p in model.parameters()),
        # Proof that training happened as intended: trained tensors moved, frozen ones did not.
        "trained_tensors_changed": f"{sum(c for c, g in zip(changed, grads_flags, strict=True) if g)}"
                                   f"/{sum(grads_flags)}",
        "frozen_tensors_changed": sum(c for c, g in zip(changed, grads_flags, strict=True) if not g),
        "allocator": "none on CPU (torch.cuda.memory_stats is CUDA-only; the CPU allocator keeps no statistics)",
        "build_s": round(build_s, 2),
    })
    pc.emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
