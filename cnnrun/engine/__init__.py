"""The engine: a network bound to its input shape (model), its state tree, the losses, and
the passes cut over processes (parallel/). It imports layers and ops, never train, tools or cli."""
