"""Tools that inspect and run a trained or untrained network: summary, describe, gradcheck,
hessian, predict, analysis (features, neighbours, maximisation), bench and profile."""
