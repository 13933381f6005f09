"""What several test modules share: layer examples, oracles, PyTorch twins, reference
networks and checks. Imported as ``helpers.*`` (pytest puts tests/ on the path)."""
