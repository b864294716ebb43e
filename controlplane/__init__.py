"""The control plane: the `trailpay` CLI, the embedded stack and the ops tools.

The top layer: it may import every other package, and nothing imports it."""
