"""Normalisation layers: batch norm (1-D and 2-D) and local response norm (AlexNet)."""

from typing import ClassVar, Literal

from pydantic import Field, PositiveFloat, PositiveInt

from ..ops.backend import get_array_module
from ..ops import parallel
from ..ops.rows import row_dots, row_sums
from ..registry import LAYERS
from .base import Layer, ParamLayer


class BatchNorm(ParamLayer):
    """y = γ·(x − μ)/√(σ² + ε) + β per channel (axis 0), statistics over every other axis.

    Training uses the batch's mean and biased variance and updates the running
    buffers: r ← (1 − momentum)·r + momentum·stat, with the unbiased variance
    (PyTorch's rule). Evaluation uses the running buffers.
    Parameters weight (γ) and bias (β) of shape (C,); buffers running_mean, running_var.
    """

    eps: PositiveFloat = 1e-5
    momentum: float = Field(0.1, ge=0.0, le=1.0)
    affine: bool = True
    track_running_stats: bool = True
    init: Literal["torch_default"] = "torch_default"

    def has_trainable(self):
        return self.trainable and self.affine

    def separable(self, train):
        return not train and self.track_running_stats  # else it normalises by the batch

    def param_shapes(self, in_shape):
        return {"weight": (in_shape[0],), "bias": (in_shape[0],)} if self.affine else {}

    def buffer_shapes(self, in_shape):
        if not self.track_running_stats:
            return {}
        return {"running_mean": (in_shape[0],), "running_var": (in_shape[0],)}

    def init_state(self, in_shape, rng):
        import numpy as np  # lazily: see backend.py
        state = {name: np.zeros(s) for name, s in self.param_shapes(in_shape).items()}
        if self.affine:
            state["weight"][:] = 1.0
        state.update(self.given_weights(self.param_shapes(in_shape)))
        if self.track_running_stats:
            state["running_mean"] = np.zeros(in_shape[0])
            state["running_var"] = np.ones(in_shape[0])
        return state

    def to_onnx(self, g, x, p, in_shape):
        if not self.track_running_stats:
            raise g.unsupported(self, "without running statistics it normalises by the batch "
                                      "even in evaluation")
        import numpy as np  # lazily: see backend.py
        C = in_shape[0]
        scale = p["weight"] if self.affine else np.ones(C)
        shift = p["bias"] if self.affine else np.zeros(C)
        return g.op("BatchNormalization", x, g.const(scale, "scale"), g.const(shift, "shift"),
                    g.const(p["running_mean"], "mean"), g.const(p["running_var"], "var"),
                    epsilon=self.eps)

    def splittable(self, train):
        return True  # a batch's statistics are sums: the shares add theirs (Context.shares)

    def forward(self, p, x, ctx):
        xp = get_array_module(x)
        C = x.shape[0]
        x2 = x.reshape(C, -1)  # (C, everything else): statistics run along rows
        use_batch = ctx.train or not self.track_running_stats
        across = ctx.shares if use_batch else None  # the batch is cut over processes
        M = x2.shape[1] if across is None else across.count(x2.shape[1])  # the whole batch's
        xc, y = xp.empty_like(x2), xp.empty_like(x2)
        mean, var, inv_std = (xp.empty(C, dtype=x.dtype) for _ in range(3))
        eps = x.dtype.type(self.eps)
        if across is not None:  # the statistics first, over every share, as one process has them
            mean[:] = across.total(row_sums(x2)) / M
            xp.subtract(x2, mean[:, None], out=xc)
            var[:] = across.total(row_dots(xc, xc)) / M

        def part(c):  # channels c: each channel's statistics are its own
            xc_c, y_c = xc[c], y[c]
            if across is None:
                mean[c] = row_sums(x2[c]) / M if use_batch else p["running_mean"][c]
                xp.subtract(x2[c], mean[c][:, None], out=xc_c)
                # biased variance, from the centred values
                var[c] = row_dots(xc_c, xc_c) / M if use_batch else p["running_var"][c]
            s = inv_std[c] = 1.0 / (var[c] + eps) ** 0.5
            # The centred x − μ is kept for the backward pass, not x̂ = (x − μ)·s: scaling
            # it in place and then by γ took two more passes than y = (x − μ)·(s·γ).
            xp.multiply(xc_c, (s * p["weight"][c] if self.affine else s)[:, None], out=y_c)
            if self.affine:
                y_c += p["bias"][c][:, None]
        parallel.by_channels(part, x2)
        if use_batch and ctx.train and self.track_running_stats and not ctx.freeze_stats:
            self._update_running(p, mean, var, M)
        return y.reshape(x.shape), (xc.reshape(x.shape), inv_std, use_batch, across)

    def _update_running(self, p, mean, var, count):
        m = self.momentum
        unbiased = var * (count / max(count - 1, 1))
        p["running_mean"] *= 1 - m
        p["running_mean"] += m * mean
        p["running_var"] *= 1 - m
        p["running_var"] += m * unbiased

    def backward(self, p, cache, gy, need_gx=True):
        xc, inv_std, use_batch, across = cache
        xp = get_array_module(gy)
        C = gy.shape[0]
        g2, c2 = gy.reshape(C, -1), xc.reshape(C, -1)  # (C, everything else)
        M = g2.shape[1] if across is None else across.count(g2.shape[1])
        # Σ gy and Σ gy·(x − μ) per channel are the parameter gradients and, over the
        # whole batch, the two means the input gradient subtracts: one pass each.
        g_bias, g_weight = xp.empty(C, dtype=gy.dtype), xp.empty(C, dtype=gy.dtype)
        # The whole batch's two sums (this share's where the batch is not cut): its
        # parameter gradients stay this share's own, which replicas.sum_gradients adds.
        batch_bias, batch_gxc = g_bias, g_weight
        scale = inv_std * p["weight"] if self.affine else inv_std  # ∂y/∂x̂ · ∂x̂/∂x
        gx = xp.empty_like(g2) if need_gx else None
        if across is not None:
            g_bias[:], g_weight[:] = row_sums(g2), row_dots(g2, c2)
            batch_bias, batch_gxc = xp.split(across.total(xp.concatenate([g_bias, g_weight])), 2)

        def part(c):  # channels c
            if across is None:
                g_bias[c] = row_sums(g2[c])
                g_weight[c] = row_dots(g2[c], c2[c])
            if gx is None:
                return
            gx_c = gx[c]
            if not use_batch:
                xp.multiply(g2[c], scale[c][:, None], out=gx_c)
                return
            # The batch statistics depend on x: subtract the mean gradient and its
            # projection on x̂ = (x − μ)·s (the standard batch-norm backward), as
            # gx = scale·(gy − (x − μ)·s·mean(gy·x̂) − mean(gy)), in place in gx.
            xp.multiply(c2[c], (inv_std[c] ** 2 * batch_gxc[c] / M)[:, None], out=gx_c)
            gx_c += (batch_bias[c] / M)[:, None]
            xp.subtract(g2[c], gx_c, out=gx_c)
            gx_c *= scale[c][:, None]
        parallel.by_channels(part, g2)
        g_weight *= inv_std  # Σ gy·x̂
        grads = {"weight": g_weight, "bias": g_bias} if (self.affine and self.trainable) else {}
        return (None if gx is None else gx.reshape(gy.shape)), grads

    # ---- R-operator -------------------------------------------------------------
    # With batch statistics, x̂ = (x − μ)·s depends on the whole batch:
    # R{x̂} = s·(R{x} − mean R{x} − x̂·mean(x̂·R{x})), and R{s} = −s·mean(x̂·R{x})·s.
    def r_forward(self, p, v, rx, cache, ctx):
        xhat, inv_std, use_batch = _normalised(cache)
        axes = tuple(range(1, rx.ndim))
        col = (slice(None),) + (None,) * (rx.ndim - 1)
        if use_batch:
            proj = (xhat * rx).mean(axis=axes)
            rxhat = (rx - rx.mean(axis=axes)[col] - xhat * proj[col]) * inv_std[col]
            rs_over_s = -proj * inv_std
        else:
            rxhat, rs_over_s = rx * inv_std[col], None
        ry = rxhat * p["weight"][col] if self.affine else rxhat
        if self.affine and "weight" in v:
            ry = ry + xhat * v["weight"][col] + v["bias"][col]
        return ry, (rxhat, rs_over_s)

    def r_backward(self, p, v, cache, rcache, gy, rgy):
        xhat, inv_std, use_batch = _normalised(cache)
        rxhat, rs_over_s = rcache
        axes = tuple(range(1, gy.ndim))
        col = (slice(None),) + (None,) * (gy.ndim - 1)
        gamma = p["weight"][col] if self.affine else 1.0
        gxhat, rgxhat = gy * gamma, rgy * gamma
        if self.affine and "weight" in v:
            rgxhat = rgxhat + gy * v["weight"][col]
        rgrads = {}
        if self.affine and self.trainable:
            rgrads = {"weight": (rgy * xhat + gy * rxhat).sum(axis=axes),
                      "bias": rgy.sum(axis=axes)}
        if not use_batch:
            return rgxhat * inv_std[col], rgrads
        m1, m2 = gxhat.mean(axis=axes), (gxhat * xhat).mean(axis=axes)
        rm1 = rgxhat.mean(axis=axes)
        rm2 = (rgxhat * xhat + gxhat * rxhat).mean(axis=axes)
        inner = gxhat - m1[col] - xhat * m2[col]
        rinner = rgxhat - rm1[col] - rxhat * m2[col] - xhat * rm2[col]
        return (rs_over_s[col] * inner + rinner) * inv_std[col], rgrads


def _normalised(cache):
    """The forward's cache with x̂ = (x − μ)·s in place of the centred x − μ."""
    xc, inv_std, use_batch, _ = cache
    col = (slice(None),) + (None,) * (xc.ndim - 1)
    return xc * inv_std[col], inv_std, use_batch


@LAYERS.register("batchnorm2d")
class BatchNorm2d(BatchNorm):
    __doc__ = BatchNorm.__doc__ + "\n    Input and output (C, H, W)."
    type: Literal["batchnorm2d"] = "batchnorm2d"
    ranks: ClassVar = (3,)
    examples: ClassVar = (({}, (3, 4, 5)), ({"affine": False, "momentum": 0.3}, (2, 3, 3)))


@LAYERS.register("batchnorm1d")
class BatchNorm1d(BatchNorm):
    __doc__ = BatchNorm.__doc__ + "\n    Input and output (F,) or (C, L)."
    type: Literal["batchnorm1d"] = "batchnorm1d"
    ranks: ClassVar = (1, 2)
    examples: ClassVar = (({}, (6,)), ({"eps": 1e-3}, (3, 5)))


def channel_window_sum(z, before: int, after: int):
    """s[c] = Σ z[c−before … c+after] along axis 0, zero outside (a loop over offsets)."""
    xp = get_array_module(z)
    C = z.shape[0]
    s = xp.zeros_like(z)
    for off in range(-before, after + 1):
        lo, hi = max(0, -off), min(C, C - off)
        if lo < hi:
            s[lo:hi] += z[lo + off:hi + off]
    return s


@LAYERS.register("local_response_norm")
class LocalResponseNorm(Layer):
    """AlexNet's normalisation across channels (PyTorch's formula):

    b_c = a_c / (k + (α/n)·Σ_{c' near c} a_{c'}²)^β, the window of n channels
    running from c − ⌊n/2⌋ to c + ⌊(n−1)/2⌋ (zeros past the edges).
    Input and output (C, H, W) or (C, L). No parameters.
    """

    type: Literal["local_response_norm"] = "local_response_norm"
    size: PositiveInt = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1.0
    ranks: ClassVar = (2, 3)
    examples: ClassVar = (({"size": 3, "alpha": 0.1}, (5, 3, 3)),
                          ({"size": 4, "alpha": 0.5, "beta": 0.6, "k": 2.0}, (6, 4)))

    def to_onnx(self, g, x, p, in_shape):
        if self.size % 2 == 0:
            raise g.unsupported(self, f"an even size ({self.size}) centres the window one "
                                      f"channel differently in ONNX's LRN")
        import numpy as np  # lazily: see backend.py
        flat = len(in_shape) == 2  # ONNX's LRN wants (N, C, H, W): lend (C, L) an axis
        if flat:
            x = g.op("Unsqueeze", x, g.const([3], "axes", np.int64))
        y = g.op("LRN", x, size=self.size, alpha=self.alpha, beta=self.beta, bias=self.k)
        return g.op("Squeeze", y, g.const([3], "axes", np.int64)) if flat else y

    def forward(self, p, x, ctx):
        n = self.size
        s = self.k + (self.alpha / n) * channel_window_sum(x * x, n // 2, (n - 1) // 2)
        y = x * s ** -self.beta
        return y, (x, s, y)

    def backward(self, p, cache, gy, need_gx=True):
        if not need_gx:
            return None, {}
        x, s, y = cache
        n = self.size
        # Unit c enters the windows of c' ∈ [c − ⌊(n−1)/2⌋, c + ⌊n/2⌋]: the adjoint window.
        t = channel_window_sum(gy * y / s, (n - 1) // 2, n // 2)
        gx = gy * s ** -self.beta - (2.0 * self.alpha * self.beta / n) * x * t
        return gx, {}

    def r_forward(self, p, v, rx, cache, ctx):
        """R{s} = (α/n)·W(2x·R{x}), R{y} = R{x}·s^(−β) − β·y·R{s}/s."""
        x, s, y = cache
        n = self.size
        rs = (self.alpha / n) * channel_window_sum(2 * x * rx, n // 2, (n - 1) // 2)
        ry = rx * s ** -self.beta - self.beta * y * rs / s
        return ry, (rx, rs, ry)

    def r_backward(self, p, v, cache, rcache, gy, rgy):
        """R of gx = gy·s^(−β) − c·x·t, with t = Wᵀ(gy·y/s) and c = 2αβ/n."""
        (x, s, y), (rx, rs, ry) = cache, rcache
        n, c = self.size, 2.0 * self.alpha * self.beta / self.size
        t = channel_window_sum(gy * y / s, (n - 1) // 2, n // 2)
        rt = channel_window_sum((rgy * y + gy * ry - gy * y * rs / s) / s, (n - 1) // 2, n // 2)
        rgx = (rgy - self.beta * gy * rs / s) * s ** -self.beta - c * (rx * t + x * rt)
        return rgx, {}
