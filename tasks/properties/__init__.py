"""Property prediction for targets an MLIP cannot give: :mod:`tasks.properties.predictor`."""
