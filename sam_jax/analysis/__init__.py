"""The paper's analyses of trained models: Hessian, NTK, neurons, norms, landscape, attention."""
