"""Reports: the papers' tables and plots rebuilt from the runs in MLflow."""
