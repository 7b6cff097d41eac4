"""MNN (the ``mnn`` PyPI package's Python training API: MNN.nn / MNN.expr / MNN.optim) training step.

Two facts about this API that the benchmark depends on, found by testing mnn 3.6.1 here:
- ``MNN.expr.lazy_eval(True)`` is required: without it ``optim.SGD.step(loss)`` returns
  False and updates nothing.
- ``MNN.expr.reduce_mean`` passes no gradient (every layer before it silently stays
  frozen), so global average pooling is ``avg_pool`` over the whole feature map, and the
  classifier is a 1x1 conv on the pooled map (as MNN's own fine-tuning example does).
- ``Module.load_parameters`` with plain ``const`` Vars freezes those parameters; they must
  be ``fix_as_trainable()`` first.
The runner checks that every parameter tensor moved, so a silently frozen layer shows up
in ``trained_tensors_changed``. MNN's optimizer takes a whole module, so there is no sparse
row (freezing needs a separately loaded module with trainable=False per layer).
"""

from __future__ import annotations

import sys
import time

import peer_common as pc


def main() -> int:
    args = pc.runner_args()
    if args.mode != "full":
        print("MNN runner: only --mode full (MNN.optim.SGD updates every parameter of the module)", file=sys.stderr)
        return 2
    t_import = time.perf_counter()
    import MNN
    import numpy as np

    nn, F = MNN.nn, MNN.expr
    F.lazy_eval(True)
    F.set_thread_number(args.threads)
    arch = args.arch_spec
    weights = pc.load_weights(args.weights)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.convs, self.bns = [], []
            for block in arch["blocks"]:
                for c in block["convs"]:
                    dw = c["groups"] > 1
                    conv = nn.conv(c["cin"], c["cout"], [c["k"], c["k"]], stride=[c["stride"], c["stride"]],
                                   depthwise=dw, bias=True, padding_mode=F.SAME)
                    if weights is not None:
                        w, b = weights[f"w{c['index']}"], weights[f"b{c['index']}"]
                        # load_parameters with plain consts freezes them: fix_as_trainable keeps them learnable.
                        vb, vw = F.const(b, list(b.shape), F.NCHW), F.const(w, list(w.shape), F.NCHW)
                        vb.fix_as_trainable()
                        vw.fix_as_trainable()
                        ok = conv.load_parameters([vb, vw])  # MNN's parameter order: bias, weight
                        if not ok:
                            raise RuntimeError(f"MNN refused the weights of {c['name']} ({w.shape})")
                    setattr(self, f"conv{c['index']}", conv)
                    self.convs.append(conv)
                    if args.bn:
                        bn = nn.batch_norm(c["cout"])
                        setattr(self, f"bn{c['index']}", bn)
                        self.bns.append(bn)
            self.fc = nn.conv(arch["head_in"], arch["num_classes"], [1, 1])

        def forward(self, x):
            i = 0
            for block in arch["blocks"]:
                y = x
                for c in block["convs"]:
                    y = self.convs[i](y)
                    if args.bn:
                        y = self.bns[i](y)
                    if c["relu6"]:
                        y = F.relu6(y)
                    i += 1
                x = x + y if block["residual"] else y
            shape = x.shape  # NC4HW4 [1, C, H, W]
            x = F.avg_pool(x, [shape[2], shape[3]], [1, 1])
            x = F.convert(self.fc(x), F.NCHW)
            return F.softmax(F.reshape(x, [0, -1]), 1)

    model = Net()
    model.train(True)
    opt = MNN.optim.SGD(model, args.lr, 0.0, 0.0)
    x_np, label = pc.fixed_input(arch, "NCHW")
    x = F.convert(F.const(x_np, list(x_np.shape), F.NCHW), F.NC4HW4)
    target = F.one_hot(F.const(np.array([label], np.int32), [1], F.NCHW, F.int), arch["num_classes"], 1.0, 0.0)
    before = [np.array(p.read()).copy() for p in model.parameters]
    build_s = time.perf_counter() - t_import

    def step() -> float:
        loss = nn.loss.cross_entropy(model.forward(x), target)
        if not opt.step(loss):
            raise RuntimeError("MNN optim.SGD.step returned False (no update)")
        return float(np.array(loss.read()))

    result = pc.measure_steps(step, args.warmup, args.steps)
    after = [np.array(p.read()) for p in model.parameters]
    changed = [not np.array_equal(b, a) for b, a in zip(before, after, strict=True)]
    version = MNN.version() if callable(getattr(MNN, "version", None)) else "?"
    result.update({
        "framework": "mnn", "version": version, "mode": "full", "bn": args.bn,
        "weights": "pretrained (dequantized zoo)" if weights is not None else "random",
        "scheme": "", "threads": args.threads,
        "trainable_params": int(sum(a.size for a in after)), "total_params": int(sum(a.size for a in after)),
        "trained_tensors_changed": f"{sum(changed)}/{len(changed)}", "frozen_tensors_changed": 0,
        "allocator": "none exposed by the Python API", "build_s": round(build_s, 2),
    })
    pc.emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
