"""TensorFlow (tensorflow-cpu, Keras 3 layers) training step of a zoo architecture.

The step is a ``tf.function`` (graph mode, as a user would write a custom loop) with a
GradientTape. Sparse update: the tape is asked only for the updated variables, so TF prunes
the backward graph to what they need (the same effect as ``trainable=False`` on the frozen
layers, but per variable, since a Keras Conv2D's kernel and bias share one trainable flag);
sub-tensor ratios multiply the full kernel gradient by a channel mask (TF still computes
the full gradient).
"""

from __future__ import annotations

import os
import sys
import time

import peer_common as pc


def main() -> int:
    args = pc.runner_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    t_import = time.perf_counter()
    import numpy as np
    import tensorflow as tf

    keras = tf.keras
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(0)
    arch = args.arch_spec
    weights = pc.load_weights(args.weights)

    convs = []  # (spec, keras layer) in conv index order

    def conv_layer(x, c: dict):
        depthwise = c["groups"] > 1
        if depthwise and not (c["groups"] == c["cin"] == c["cout"]):
            raise ValueError(f"{c['name']}: grouped conv that is not depthwise has no Keras layer here")
        if depthwise:
            layer = keras.layers.DepthwiseConv2D(c["k"], c["stride"], padding="same", use_bias=not args.bn)
        else:
            layer = keras.layers.Conv2D(c["cout"], c["k"], c["stride"], padding="same", use_bias=not args.bn)
        convs.append((c, layer))
        x = layer(x)
        if args.bn:
            x = keras.layers.BatchNormalization()(x)
        if c["relu6"]:
            x = keras.layers.ReLU(max_value=6.0)(x)
        return x

    h, w = arch["input_hw"]
    inp = keras.Input((h, w, arch["channels"]), batch_size=1)
    x = inp
    for block in arch["blocks"]:
        y = x
        for c in block["convs"]:
            y = conv_layer(y, c)
        x = keras.layers.Add()([x, y]) if block["residual"] else y
    x = keras.layers.GlobalAveragePooling2D()(x)
    head = keras.layers.Dense(arch["num_classes"])
    model = keras.Model(inp, head(x))

    if weights is not None:
        for c, layer in convs:
            wt = weights[f"w{c['index']}"]  # OIHW -> HWIO (Conv2D) or HW C 1 (DepthwiseConv2D)
            kernel = wt.transpose(2, 3, 0, 1) if c["groups"] > 1 else wt.transpose(2, 3, 1, 0)
            layer.kernel.assign(kernel)
            if not args.bn:
                layer.bias.assign(weights[f"b{c['index']}"])

    masks = {}
    if args.mode == "sparse":
        plan = pc.scheme_plan(arch, args.scheme)
        var_list = []
        for c, layer in convs:
            p = plan[c["index"]]
            if p["weight_ratio"] > 0:
                var_list.append(layer.kernel)
                if p["weight_channels"] < c["cout"]:
                    m = np.zeros(tuple(layer.kernel.shape), np.float32)  # output channel axis: 3, or 2 for depthwise
                    if c["groups"] > 1:
                        m[:, :, :p["weight_channels"], :] = 1.0
                    else:
                        m[..., :p["weight_channels"]] = 1.0
                    masks[id(layer.kernel)] = tf.constant(m)
            if p["bias"]:
                var_list.append(layer.bias)
        var_list += [head.kernel, head.bias]
    else:
        var_list = list(model.trainable_variables)
    mask_list = [masks.get(id(v)) for v in var_list]
    opt = keras.optimizers.SGD(learning_rate=args.lr, momentum=0.0)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x_np, label = pc.fixed_input(arch, "NHWC")
    xt, yt = tf.constant(x_np), tf.constant([label])

    @tf.function
    def train_step(xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        grads = tape.gradient(loss, var_list)
        grads = [g if m is None else g * m for g, m in zip(grads, mask_list, strict=True)]
        opt.apply_gradients(zip(grads, var_list, strict=True))
        return loss

    all_vars = list(model.trainable_variables)
    trained_ids = {id(v) for v in var_list}
    before = [np.array(v.numpy()) for v in all_vars]
    build_s = time.perf_counter() - t_import

    def step() -> float:
        return float(train_step(xt, yt).numpy())

    result = pc.measure_steps(step, args.warmup, args.steps)
    changed = [not np.array_equal(b, v.numpy()) for b, v in zip(before, all_vars, strict=True)]
    trained = [id(v) in trained_ids for v in all_vars]
    try:
        tf.config.experimental.get_memory_info("CPU:0")
        allocator = "get_memory_info('CPU:0') answered unexpectedly"
    except (ValueError, tf.errors.OpError) as e:
        allocator = f"none on CPU: tf.config.experimental.get_memory_info('CPU:0') -> {type(e).__name__}: {e}"
    result.update({
        "framework": "tensorflow", "version": tf.__version__, "mode": args.mode, "bn": args.bn,
        "weights": "pretrained (dequantized zoo)" if weights is not None else "random",
        "scheme": args.scheme if args.mode == "sparse" else "", "threads": args.threads,
        "trainable_params": int(sum(np.prod(v.shape) for v in var_list)),
        "total_params": int(model.count_params()),
        "trained_tensors_changed": f"{sum(c for c, t in zip(changed, trained, strict=True) if t)}/{sum(trained)}",
        "frozen_tensors_changed": sum(c for c, t in zip(changed, trained, strict=True) if not t),
        "allocator": allocator[:300], "build_s": round(build_s, 2),
    })
    pc.emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
